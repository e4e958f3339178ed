"""A short printed tour of nbgrad's autograd, written with the PyTorch API.

Run it with ``python -m nbgrad.examples.tour`` (or ``make demo``). Every line below
would run unchanged with ``import torch`` in place of ``import nbgrad as torch``.
"""

import time

import nbgrad as torch


def section(title):
    print()
    print(f"== {title} ==")


def main():
    start = time.perf_counter()
    print("nbgrad tour: reverse-mode autograd with a PyTorch API and Numba kernels")

    section("1. Gradient of a scalar function")
    # f(x) = sum(x * x * 3 + x), so df/dx = 6x + 1
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    f = (x * x * 3 + x).sum()
    print("x         =", x)
    print("f         =", f)
    print("f.grad_fn =", type(f.grad_fn).__name__)
    f.backward()
    print("df/dx     =", x.grad, " (analytic: 6x + 1 = [7, 13, 19])")

    section("2. Vector-Jacobian product: backward(gradient=v)")
    # y = x * x is a vector; y.backward(v) computes v^T J = v * 2x
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * x
    v = torch.tensor([1.0, 0.1, 0.01])
    y.backward(gradient=v)
    print("y         =", y)
    print("v         =", v)
    print("v^T dy/dx =", x.grad, " (analytic: v * 2x = [2, 0.4, 0.06])")

    section("3. Gradients accumulate until you zero them")
    w = torch.tensor([2.0], requires_grad=True)
    (w * 3).sum().backward()
    print("after 1st backward: w.grad =", w.grad)
    (w * 3).sum().backward()
    print("after 2nd backward: w.grad =", w.grad, " (3 + 3)")
    w.grad.zero_()
    print("after w.grad.zero_():  w.grad =", w.grad)

    section("4. no_grad and detach stop the recording")
    with torch.no_grad():
        y = w * 3
    print("under no_grad:  y.requires_grad =", y.requires_grad)
    d = w.detach()
    print("w.detach():     d.requires_grad =", d.requires_grad, "(same values, no history)")

    section("5. Fitting y = w * x with gradient descent")
    xs = torch.tensor([1.0, 2.0, 3.0, 4.0])
    ys = torch.tensor([2.0, 4.0, 6.0, 8.0])  # true w = 2
    w = torch.tensor([0.0], requires_grad=True)
    lr = 0.01
    for step in range(41):
        loss = ((w * xs - ys) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            w -= lr * w.grad
        w.grad.zero_()
        if step % 10 == 0:
            print(f"step {step:2d}  loss = {loss.item():9.6f}  w = {w.item():.6f}")
    print(f"learned w = {w.item():.4f} (true value 2)")

    print()
    print(f"tour finished in {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
