"""PyTorch's "Spatial Transformer Networks" tutorial on made-up 1x28x28 images: its Net (a
localization conv net whose fc_loc starts at the identity transform, stn() through
F.affine_grid and F.grid_sample with their default align_corners, then the classifier),
trained with SGD for a few steps past the point where nbgrad would fuse the loop, then its
test loop; F.affine_grid and F.grid_sample in their other modes. Starting weights come from
a formula, so that every run prints the same numbers."""
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

        # Spatial transformer localization-network
        self.localization = nn.Sequential(
            nn.Conv2d(1, 8, kernel_size=7),
            nn.MaxPool2d(2, stride=2),
            nn.ReLU(True),
            nn.Conv2d(8, 10, kernel_size=5),
            nn.MaxPool2d(2, stride=2),
            nn.ReLU(True)
        )

        # Regressor for the 3 * 2 affine matrix
        self.fc_loc = nn.Sequential(
            nn.Linear(10 * 3 * 3, 32),
            nn.ReLU(True),
            nn.Linear(32, 3 * 2)
        )

        # Initialize the weights/bias with identity transformation
        self.fc_loc[2].weight.data.zero_()
        self.fc_loc[2].bias.data.copy_(torch.tensor([1, 0, 0, 0, 1, 0], dtype=torch.float))

    # Spatial transformer network forward function
    def stn(self, x):
        xs = self.localization(x)
        xs = xs.view(-1, 10 * 3 * 3)
        theta = self.fc_loc(xs)
        theta = theta.view(-1, 2, 3)

        grid = F.affine_grid(theta, x.size())
        x = F.grid_sample(x, grid)
        return x

    def forward(self, x):
        # transform the input
        x = self.stn(x)

        # Perform the usual forward pass
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.view(-1, 320)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


torch.manual_seed(0)
model = Net()
with torch.no_grad():
    for i, (name, p) in enumerate(model.named_parameters()):
        if not name.startswith("fc_loc.2"):  # (the identity transform stays)
            p.copy_(torch.cos(torch.arange(p.numel(), dtype=torch.float32) * (0.3 + 0.07 * i))
                    .reshape(p.shape) * 0.5 / p[0].numel() ** 0.5)
print(model)


def images(batch, step):
    """Made-up images: waves whose frequencies change with the label."""
    rows = torch.arange(28, dtype=torch.float32).reshape(1, 1, 28, 1)
    cols = torch.arange(28, dtype=torch.float32).reshape(1, 1, 1, 28)
    labels = (torch.arange(batch) + step) % 10
    k = labels.float().reshape(-1, 1, 1, 1) + 1
    data = torch.sin(0.11 * k * rows + 0.07 * cols + 0.3 * step) * torch.cos(0.05 * k * cols - 0.13 * rows)
    return data - 0.1307, labels


optimizer = optim.SGD(model.parameters(), lr=0.01)
model.train()
for batch_idx in range(20):
    data, target = images(8, batch_idx)
    optimizer.zero_grad()
    output = model(data)
    loss = F.nll_loss(output, target)
    loss.backward()
    optimizer.step()
    if batch_idx % 5 == 4:
        print('Train Epoch: {} [{}/{} ({:.0f}%)]\tLoss: {:.6f}'.format(
            1, batch_idx * len(data), 160, 100. * batch_idx / 20, loss.item()))

with torch.no_grad():
    model.eval()
    test_loss = 0
    correct = 0
    for step in range(3):
        data, target = images(10, 3 * step)
        output = model(data)
        test_loss += F.nll_loss(output, target, reduction='sum').item()
        pred = output.max(1, keepdim=True)[1]
        correct += pred.eq(target.view_as(pred)).sum().item()
    test_loss /= 30
    print('\nTest set: Average loss: {:.4f}, Accuracy: {}/{} ({:.0f}%)\n'
          .format(test_loss, correct, 30, 100. * correct / 30))
    theta = model.fc_loc(model.localization(data).view(-1, 10 * 3 * 3)).view(-1, 2, 3)
    print("theta", theta[0])
    print("transformed", model.stn(data)[0, 0, 12:15, 12:16])

image = torch.arange(12.0).reshape(1, 1, 3, 4)
theta = torch.tensor([[[0.8, -0.3, 0.1], [0.4, 1.1, -0.2]]], requires_grad=True)
grid = F.affine_grid(theta, (1, 1, 2, 3), align_corners=True)
print(grid)
for mode, padding, scale in (("bilinear", "border", 1.5), ("nearest", "reflection", 1.5),
                             ("bilinear", "zeros", 0.6)):
    out = F.grid_sample(image, grid * scale, mode=mode, padding_mode=padding, align_corners=False)
    print(mode, padding, out)
out.sum().backward()
print(theta.grad)
