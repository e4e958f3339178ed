"""PyTorch's "Tensors" basics, as a tutorial writes them, plus devices and dtypes."""
import numpy as np
import torch

device = "cuda" if torch.cuda.is_available() else "cpu"
print(device, torch.cuda.is_available(), torch.backends.mps.is_available(), torch.device(device))
data = [[1, 2], [3, 4]]
x_data = torch.tensor(data)
x_np = torch.from_numpy(np.array(data))
x_ones = torch.ones_like(x_data)
print(f"Ones Tensor: \n {x_ones} \n")
print(x_np.dtype, x_data.dtype, torch.tensor([1.5]).dtype)
shape = (2, 3,)
print(torch.zeros(shape), torch.ones(shape, device=device))
tensor = torch.ones(4, 4)
print(f"Shape of tensor: {tensor.shape}")
print(f"Datatype of tensor: {tensor.dtype}")
print(f"Device tensor is stored on: {tensor.device}")
if torch.accelerator.is_available():
    tensor = tensor.to(torch.accelerator.current_accelerator())
tensor = tensor.to(device).cpu()
print(f"First row: {tensor[0]}")
print(f"First column: {tensor[:, 0]}")
print(f"Last column: {tensor[..., -1]}")
tensor[:, 1] = 0
print(tensor)
print(torch.cat([tensor, tensor, tensor], dim=1))
y1 = tensor @ tensor.T
y2 = tensor.matmul(tensor.T)
y3 = torch.rand_like(y1)
torch.matmul(tensor, tensor.T, out=y3)
print(y1, torch.equal(y1, y2), torch.equal(y1, y3))
z1 = tensor * tensor
z3 = torch.rand_like(tensor)
torch.mul(tensor, tensor, out=z3)
print(z1, tensor.mul(tensor), z3)
agg = tensor.sum()
agg_item = agg.item()
print(agg_item, type(agg_item))
tensor.add_(5)
print(tensor)
t = torch.ones(5)
n = t.numpy()
t.add_(1)
print(f"t: {t}")
print(f"n: {n}")
n = np.ones(5)
t = torch.from_numpy(n)
np.add(n, 1, out=n)
print(f"t: {t}")

# dtypes: small integers, promotion, casts, half storage
N = torch.zeros((3, 3), dtype=torch.int32)
N[0, 1] += 1
N[2, 2] += 5
print(N, N.dtype, N.sum(), N.sum().dtype, N.float().dtype, N[0].float())
b = torch.tensor([250, 3], dtype=torch.uint8) + torch.tensor([10, 4], dtype=torch.uint8)
print(b, (torch.tensor([1], dtype=torch.int8) + torch.tensor([1], dtype=torch.uint8)).dtype)
print(torch.promote_types(torch.int32, torch.float16), torch.finfo(torch.float32).eps, torch.iinfo(torch.int16).max)
h = torch.tensor([1.0, 2.5, 1e-3]).half()
print(h, h.dtype, h.float(), torch.tensor([3.14159]).bfloat16().float())
print(x_data.is_floating_point(), torch.is_floating_point(h), x_data.to(torch.float64))
x = torch.arange(12).reshape(3, 4)
print(x.sum(1, keepdims=True), x.float().mean(axis=0), torch.sum(x, dim=0, keepdim=True))
