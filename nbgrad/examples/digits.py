"""Train a small MLP on scikit-learn's 8x8 digits with nbgrad, PyTorch style.

    python -m nbgrad.examples.digits [--epochs 10] [--batch-size 64] [--lr 0.01] [--hidden 128]

The training loop below is plain PyTorch code with `import nbgrad as torch`.
"""
import argparse
import time

import nbgrad as torch
from nbgrad import nn, optim
from nbgrad.data import DataLoader, TensorDataset, load_digits


def make_model(hidden=128):
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        correct = (model(x).argmax(dim=1) == y).float().mean().item()
    model.train()
    return correct


def train(epochs=10, batch_size=64, lr=1e-2, hidden=128, seed=0, progress=True, log=print):
    """Train and return (model, test accuracy, seconds per training step after the first).

    The first step is timed apart: it includes compiling (or loading cached) kernels.
    """
    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = load_digits()
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=batch_size, shuffle=True)
    model = make_model(hidden)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = optim.Adam(model.parameters(), lr=lr)
    if progress:
        from tqdm import tqdm
    steps, first_step, started = 0, None, time.perf_counter()
    for epoch in range(epochs):
        batches = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", leave=False) if progress else loader
        total = 0.0
        for x, y in batches:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(y)
            steps += 1
            if first_step is None:
                first_step = time.perf_counter() - started
                started = time.perf_counter()
        log(f"epoch {epoch + 1:3d}  loss {total / len(y_train):.4f}")
    per_step = (time.perf_counter() - started) / max(steps - 1, 1)
    test_accuracy = accuracy(model, x_test, y_test)
    log(f"test accuracy {test_accuracy:.2%}")
    log(f"time per training step {per_step * 1e6:.0f} us "
        f"(first step, with kernel compilation or cache load: {first_step:.2f} s)")
    return model, test_accuracy, per_step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--hidden", type=int, default=128)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    train(args.epochs, args.batch_size, args.lr, args.hidden)
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
