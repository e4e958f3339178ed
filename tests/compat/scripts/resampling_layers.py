"""Padding, resizing and channel dropout as tutorials use them: a small image model with
ReflectionPad2d, Upsample and Dropout2d trained for a few steps past the point where nbgrad
would fuse the loop, then eval; F.pad in each mode; an image resized as torchvision's Resize
does (bilinear, antialias); the super-resolution example's sub-pixel convolution (a
convolution to r * r channels, then nn.PixelShuffle(r)) trained a few steps, and image
patches taken apart and put back (F.unfold, F.fold, nn.PixelUnshuffle). Starting weights
come from a formula or the seed, so that every run prints the same numbers."""
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
model = nn.Sequential(nn.ReflectionPad2d(1), nn.Upsample(scale_factor=2, mode="bilinear"),
                      nn.Dropout2d(0.25), nn.Flatten(), nn.Linear(2 * 8 * 10, 3))
with torch.no_grad():
    model[-1].weight.copy_(torch.linspace(-0.1, 0.1, 480).reshape(3, 160))
    model[-1].bias.zero_()
print(model)

optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for step in range(20):
    x = torch.linspace(-1.0, 1.0, 4 * 2 * 2 * 3).reshape(4, 2, 2, 3) * (1 + 0.1 * step)
    loss = F.cross_entropy(model(x), torch.arange(4) % 3)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 5 == 4:
        print(f"step {step}: loss {loss.item():.5f}")
model.eval()
with torch.no_grad():
    print("eval", model(torch.ones(1, 2, 2, 3)))

image = torch.arange(24.0).reshape(1, 2, 3, 4)
for mode in ("constant", "reflect", "replicate", "circular"):
    print(mode, F.pad(image, (1, 2, 1, 0), mode=mode)[0, 0])
print(F.pad(image, (1, 1), value=-1.0).shape)
resized = F.interpolate(torch.linspace(0.0, 1.0, 3 * 9 * 11).reshape(1, 3, 9, 11), size=(4, 5),
                        mode="bilinear", antialias=True)
print(resized[0, 0])
print(F.interpolate(image, scale_factor=1.5)[0, 1])

upscaler = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 9, 3, padding=1),
                         nn.PixelShuffle(3))
print(upscaler)
optimizer = torch.optim.Adam(upscaler.parameters(), lr=0.01)
target = torch.rand(4, 1, 12, 12)
low_resolution = F.avg_pool2d(target, 3)
for iteration in range(1, 5):
    optimizer.zero_grad()
    out = upscaler(low_resolution)
    loss = F.mse_loss(out, target)
    loss.backward()
    optimizer.step()
    print(f"===> Iteration {iteration}: Loss: {loss.item():.6f}")
print(out.shape, out.grad_fn)

image = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(1, 2, 4, 6).requires_grad_()
patches = F.unfold(image, kernel_size=2, stride=2)
print(patches.shape, patches.grad_fn)
print(patches[0, :, :3])
overlapping = nn.Unfold(kernel_size=(2, 3), padding=1, stride=(1, 2))(image)
counts = F.fold(torch.ones_like(overlapping), (4, 6), (2, 3), padding=1, stride=(1, 2))
restored = nn.Fold((4, 6), (2, 3), padding=1, stride=(1, 2))(overlapping) / counts
print(restored.grad_fn, torch.allclose(restored, image))
unshuffled = nn.PixelUnshuffle(2)(image)
print(unshuffled.shape, unshuffled.grad_fn)
(restored.sum() + (unshuffled * torch.linspace(0, 1, 48).reshape(1, 8, 2, 3)).sum()).backward()
print(image.grad)
print(torch.equal(F.pixel_shuffle(unshuffled, 2), image))
