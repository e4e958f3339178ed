"""A DCGAN as the PyTorch tutorial builds it, made small: a generator of ConvTranspose2d,
BatchNorm2d, ReLU and Tanh, a discriminator of Conv2d, LeakyReLU and Sigmoid, BCELoss, and
the tutorial's alternating Adam steps (detach for the discriminator's step on fakes), past the
point where nbgrad fuses the loop. Starting weights come from a formula, so that every run
prints the same numbers."""
import torch
import torch.nn as nn

nz, ngf, ndf = 4, 4, 4


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 2, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, 1, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, input):
        return self.main(input)


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(1, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(ndf * 2, 1, 4, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, input):
        return self.main(input)


netG, netD = Generator(), Discriminator()
for net in (netG, netD):
    with torch.no_grad():
        for i, p in enumerate(net.parameters()):
            p.copy_(0.02 * torch.sin(torch.arange(p.numel(), dtype=torch.float32) * (0.3 + 0.1 * i))
                    .reshape(p.shape) + (1.0 if p.ndim == 1 else 0.0))
print(netG)
print({key: tuple(value.shape) for key, value in netG.state_dict().items()})

criterion = nn.BCELoss()
optimizerD = torch.optim.Adam(netD.parameters(), lr=0.0002, betas=(0.5, 0.999))
optimizerG = torch.optim.Adam(netG.parameters(), lr=0.0002, betas=(0.5, 0.999))
real_label, fake_label = 1.0, 0.0
for step in range(12):
    real = torch.cos(torch.arange(4 * 256, dtype=torch.float32) * (0.05 + 0.01 * step)).reshape(4, 1, 16, 16)
    noise = torch.sin(torch.arange(4 * nz, dtype=torch.float32) * (1.0 + 0.1 * step)).reshape(4, nz, 1, 1)
    netD.zero_grad()
    label = torch.full((4,), real_label, dtype=torch.float)
    errD_real = criterion(netD(real).view(-1), label)
    errD_real.backward()
    fake = netG(noise)
    label.fill_(fake_label)
    errD_fake = criterion(netD(fake.detach()).view(-1), label)
    errD_fake.backward()
    optimizerD.step()
    netG.zero_grad()
    label.fill_(real_label)
    errG = criterion(netD(fake).view(-1), label)
    errG.backward()
    optimizerG.step()
    if step % 4 == 3:
        print(f"step {step}: Loss_D {(errD_real + errD_fake).item():.4f} Loss_G {errG.item():.4f}")
print(fake.shape, fake.grad_fn)
print(nn.ConvTranspose2d(4, 2, 3, stride=2)(torch.ones(1, 4, 3, 3), output_size=[8, 8]).shape)
