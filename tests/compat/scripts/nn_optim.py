"""PyTorch's "learning by examples" (nn, optim, a custom Module, control flow) and the
"build the model" and "optimization" basics, with data made here and starting weights set
from a formula, so that every run prints the same numbers."""
import math
import random

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, random_split


def set_weights(model):
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.linspace(-0.5, 0.5, p.numel()).reshape(p.shape))


x = torch.linspace(-math.pi, math.pi, 2000)
y = torch.sin(x)
p = torch.tensor([1, 2, 3])
xx = x.unsqueeze(-1).pow(p)
model = torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Flatten(0, 1))
set_weights(model)
loss_fn = torch.nn.MSELoss(reduction='sum')
learning_rate = 1e-6
for t in range(200):
    y_pred = model(xx)
    loss = loss_fn(y_pred, y)
    if t % 100 == 99:
        print(t, round(loss.item(), 2))
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for param in model.parameters():
            param -= learning_rate * param.grad
linear_layer = model[0]
print(f'Result: y = {linear_layer.bias.item():.4f} + {linear_layer.weight[:, 0].item():.4f} x')

set_weights(model)
optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3)
for t in range(200):
    loss = loss_fn(model(xx), y)
    if t % 100 == 99:
        print(t, round(loss.item(), 2))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


class Polynomial3(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.1))
        self.b = torch.nn.Parameter(torch.tensor(-0.2))
        self.c = torch.nn.Parameter(torch.tensor(0.3))
        self.d = torch.nn.Parameter(torch.tensor(0.05))

    def forward(self, x):
        return self.a + self.b * x + self.c * x ** 2 + self.d * x ** 3

    def string(self):
        return f'y = {self.a.item():.4f} + {self.b.item():.4f} x + {self.c.item():.4f} x^2 + {self.d.item():.4f} x^3'


class DynamicNet(Polynomial3):
    def __init__(self):
        super().__init__()
        self.e = torch.nn.Parameter(torch.tensor(0.01))

    def forward(self, x):
        y = self.a + self.b * x + self.c * x ** 2 + self.d * x ** 3
        for exp in range(4, random.randint(4, 6)):
            y = y + self.e * x ** exp
        return y


random.seed(0)
for net, opt in ((Polynomial3, torch.optim.SGD), (DynamicNet, torch.optim.SGD)):
    model = net()
    optimizer = opt(model.parameters(), lr=1e-8, momentum=0.9)
    for t in range(100):
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f'Result: {model.string()}', round(loss.item(), 1))


class NeuralNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(8 * 8, 32), nn.GELU(), nn.Linear(32, 32), nn.LeakyReLU(0.1),
            nn.Dropout(0.0), nn.Linear(32, 10))
        self.extra = nn.ModuleList([nn.Linear(10, 10), nn.SiLU()])
        self.heads = nn.ModuleDict({"tanh": nn.Hardtanh(), "elu": nn.ELU()})

    def forward(self, x):
        logits = self.linear_relu_stack(self.flatten(x))
        for layer in self.extra:
            logits = layer(logits)
        return self.heads["elu"](logits) + self.heads["tanh"](logits)


device = torch.accelerator.current_accelerator().type if torch.accelerator.is_available() else "cpu"
model = NeuralNetwork().to(device)
set_weights(model)
print(model)
for name, param in model.named_parameters():
    print(f"Layer: {name} | Size: {param.size()} | Values : {param.flatten()[:2]}")
X = torch.linspace(0, 1, 64).reshape(1, 8, 8)
logits = model(X)
pred_probab = nn.Softmax(dim=1)(logits)
print(f"Predicted class: {pred_probab.argmax(1)}")

rng = np.random.default_rng(0)
features = torch.from_numpy(rng.standard_normal((96, 8, 8)).astype(np.float32))
labels = torch.from_numpy((features.numpy().sum(axis=(1, 2)) > 0).astype(np.int64))
train_set, test_set = random_split(TensorDataset(features, labels), [64, 32],
                                   generator=torch.Generator().manual_seed(42))
train_loader = DataLoader(train_set, batch_size=16)
test_loader = DataLoader(test_set, batch_size=16)
print(len(train_loader.dataset), len(test_loader))
loss_fn = nn.CrossEntropyLoss()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.9)


def train_loop(dataloader, model, loss_fn, optimizer):
    model.train()
    for batch, (X, y) in enumerate(dataloader):
        loss = loss_fn(model(X), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
        optimizer.zero_grad()
    return loss.item()


def test_loop(dataloader, model, loss_fn):
    model.eval()
    size = len(dataloader.dataset)
    test_loss, correct = 0, 0
    with torch.no_grad():
        for X, y in dataloader:
            pred = model(X)
            test_loss += loss_fn(pred, y).item()
            correct += (pred.argmax(1) == y).type(torch.float).sum().item()
    return test_loss / len(dataloader), correct / size


for t in range(3):
    last = train_loop(train_loader, model, loss_fn, optimizer)
    scheduler.step()
    print(t, round(last, 3), [round(v, 3) for v in test_loop(test_loader, model, loss_fn)],
          scheduler.get_last_lr())
