"""Train a small MLP or CNN on scikit-learn's 8x8 digits with nbgrad, eagerly and fused, PyTorch style.

    python -m nbgrad.examples.digits [--model mlp|cnn] [--epochs 10] [--batch-size 64] [--lr 0.01]
                                     [--hidden 128] [--mode both|eager|fused]

`--model mlp` (the default) is Linear(64, hidden)-ReLU-Linear(hidden, 10); `--model cnn` sees
each image as 1x8x8: Conv2d(1, 16, 3, padding=1)-ReLU-MaxPool2d(2)-Conv2d(16, 32, 3,
padding=1)-ReLU-MaxPool2d(2)-Flatten-Linear(128, 10).

The training loop below is plain PyTorch code with `import nbgrad as torch`. With
`--mode both` (the default) the same model, from the same initial weights and over the same
shuffled batches, is trained twice: eagerly, then with the whole step fused by
`step = torch.compile(train_step)` (one generated Numba function per step: forward, backward
and the Adam update). Eager mode records the ops of each step and, once it has seen the same
graph 16 times, runs its forward and backward as one fused kernel of its own
(nbgrad.fuse.deferred); the Adam update stays one kernel call per parameter. The losses
per epoch agree to float rounding; the report gives the time per step of each mode and the
speed-up.
"""
import argparse
import statistics
import time
from dataclasses import dataclass, field

import nbgrad as torch
from nbgrad import nn, optim
from nbgrad.data import DataLoader, TensorDataset, load_digits

MODES = ("eager", "fused")
MODELS = ("mlp", "cnn")


def make_model(hidden=128, kind="mlp"):
    """The network: an MLP with `hidden` units, or a small CNN (which ignores `hidden`)."""
    if kind == "mlp":
        return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    if kind == "cnn":
        # The loader gives flat rows of 64 pixels: the first layer makes them 1x8x8 images.
        return nn.Sequential(nn.Unflatten(1, (1, 8, 8)),
                             nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(32 * 2 * 2, 10))
    raise ValueError(f"model must be one of {MODELS}, got {kind!r}")


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        correct = (model(x).argmax(dim=1) == y).float().mean().item()
    model.train()
    return correct


@dataclass
class Run:
    """What one training run measured."""

    mode: str
    model: object
    losses: list            # mean training loss of each epoch
    test_accuracy: float
    per_step: float         # median seconds per step call, calls that traced/compiled left out
    per_epoch: float        # median seconds per epoch (step calls only), the first epoch left out
    timed_steps: int
    first_step: float       # seconds of the first step call (compiling or loading kernels)
    compiled: object = None  # the nbgrad.compile'd step in fused mode
    stats: dict = field(default_factory=dict)


def run_training(mode="eager", epochs=10, batch_size=64, lr=1e-2, hidden=128, seed=0,
                 drop_last=False, progress=True, log=print, model="mlp"):
    """Train the `model` ("mlp" or "cnn") in `mode` ("eager" or "fused") and return a `Run`.

    Each mode seeds nbgrad's generator the same way before building the model and the loader,
    so both start from the same weights and see the same batches in the same order. Only
    the step call is timed (not the loader, `loss.item()` or the progress bar). The time per
    step is the median step call: the calls that trace and compile (the first, and in fused
    mode the smaller last batch's first) are reported apart, and the median also keeps a
    kernel that a later step compiles or loads from the cache out of the figure.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = load_digits()
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=batch_size, shuffle=True,
                        drop_last=drop_last)
    kind, model = model, make_model(hidden, model)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = optim.Adam(model.parameters(), lr=lr)

    def train_step(x, y):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    step = torch.compile(train_step) if mode == "fused" else train_step
    if progress:
        from tqdm import tqdm
    losses, first_step, times, epoch_times = [], None, [], []
    seen = len(y_train) - (len(y_train) % batch_size if drop_last else 0)
    for epoch in range(epochs):
        batches = loader
        if progress:
            batches = tqdm(loader, desc=f"{mode} epoch {epoch + 1}/{epochs}", leave=False)
        total, epoch_time = 0.0, 0.0
        for x, y in batches:
            before = _compiles(step)
            started = time.perf_counter()
            loss = step(x, y)
            elapsed = time.perf_counter() - started
            epoch_time += elapsed
            if first_step is None:
                first_step = elapsed
            elif _compiles(step) == before:  # not a call that traced and compiled
                times.append(elapsed)
            total += loss.item() * len(y)
        losses.append(total / seen)
        epoch_times.append(epoch_time)
        log(f"[{mode}] epoch {epoch + 1:3d}  loss {losses[-1]:.4f}")
    test_accuracy = accuracy(model, x_test, y_test)
    per_step = statistics.median(times) if times else float("nan")
    per_epoch = statistics.median(epoch_times[1:]) if epochs > 1 else float("nan")
    log(f"[{mode}] {kind} test accuracy {test_accuracy:.2%}")
    log(f"[{mode}] time per training step {per_step * 1e6:.0f} us (median of {len(times)} "
        f"steps; first step, with kernel compilation or cache load: {first_step:.2f} s)")
    compiled = step if mode == "fused" else None
    return Run(mode, model, losses, test_accuracy, per_step, per_epoch, len(times), first_step,
               compiled, dict(compiled.stats) if compiled is not None else {})


def _compiles(step):
    """How many times a compiled step has traced and compiled or broken (0 for a function)."""
    stats = getattr(step, "stats", None)
    return 0 if stats is None else stats["specializations"] + len(step.breaks)


def train(epochs=10, batch_size=64, lr=1e-2, hidden=128, seed=0, progress=True, log=print,
          mode="eager", drop_last=False, model="mlp"):
    """Train and return (model, test accuracy, median seconds per training step)."""
    run = run_training(mode, epochs, batch_size, lr, hidden, seed, drop_last, progress, log,
                       model)
    return run.model, run.test_accuracy, run.per_step


def report(eager, fused, log=print):
    """Side by side summary of an eager and a fused run of the same training."""
    stats = fused.stats
    log("")
    log(f"{'':28s}{'eager':>12s}{'fused':>12s}")
    log(f"{'final epoch loss':28s}{eager.losses[-1]:12.4f}{fused.losses[-1]:12.4f}")
    log(f"{'test accuracy':28s}{eager.test_accuracy:12.2%}{fused.test_accuracy:12.2%}")
    log(f"{'time per step (median)':28s}{eager.per_step * 1e6:9.0f} us"
        f"{fused.per_step * 1e6:9.0f} us")
    log(f"{'time per epoch (median)':28s}{eager.per_epoch * 1e3:9.0f} ms"
        f"{fused.per_epoch * 1e3:9.0f} ms")
    log(f"{'first step':28s}{eager.first_step:10.2f} s{fused.first_step:10.2f} s")
    log(f"fused step: compile time {stats['compile_time_s']:.2f} s over "
        f"{stats['specializations']} specialization(s) (first call {fused.first_step:.2f} s; "
        f"cache hits {stats['cache_hits']}, misses {stats['cache_misses']}), "
        f"{stats['fused_calls']} fused call(s), {stats['eager_calls']} eager")
    if stats["eager_calls"] > stats["specializations"]:
        log("fused step ran eagerly on some calls:\n" + fused.compiled.explain())
    difference = max(abs(a - b) for a, b in zip(eager.losses, fused.losses))
    log(f"largest difference between the epoch losses of the two modes: {difference:.2e}")
    log(f"speed-up (eager time per step / fused time per step): "
        f"{eager.per_step / fused.per_step:.1f}x")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=MODELS, default="mlp",
                        help="the network: an MLP (default) or a small CNN")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--mode", choices=("both",) + MODES, default="both",
                        help="train eagerly, fused (nbgrad.compile), or both (default)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    runs = {}
    for mode in MODES if args.mode == "both" else (args.mode,):
        runs[mode] = run_training(mode, args.epochs, args.batch_size, args.lr, args.hidden,
                                  model=args.model)
        if args.mode == "fused":
            s = runs[mode].stats
            print(f"[fused] compile time {s['compile_time_s']:.2f} s, "
                  f"{s['specializations']} specialization(s)")
    if len(runs) == 2:
        report(runs["eager"], runs["fused"])
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
