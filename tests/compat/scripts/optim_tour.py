"""Every optimizer and scheduler a course meets, on one small model, plus the data tools."""
import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, IterableDataset, Subset, TensorDataset

features = torch.linspace(-1, 1, 48).reshape(12, 4)
targets = (features.sum(1) > 0).long()


def model_and_loss():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    return model, nn.CrossEntropyLoss()


for make, schedule in [
        (lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
         lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[2, 4], gamma=0.5)),
        (lambda ps: torch.optim.RMSprop(ps, lr=0.01, momentum=0.5, centered=True),
         lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda epoch: 0.9 ** epoch)),
        (lambda ps: torch.optim.Adagrad(ps, lr=0.1), lambda o: torch.optim.lr_scheduler.LinearLR(o)),
        (lambda ps: torch.optim.Adamax(ps, lr=0.02), lambda o: torch.optim.lr_scheduler.OneCycleLR(
            o, max_lr=0.05, total_steps=6)),
        (lambda ps: torch.optim.NAdam(ps, lr=0.02), lambda o: torch.optim.lr_scheduler.SequentialLR(
            o, [torch.optim.lr_scheduler.ConstantLR(o, factor=0.5, total_iters=2),
                torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9)], milestones=[2])),
        (lambda ps: torch.optim.RAdam(ps, lr=0.02), lambda o: torch.optim.lr_scheduler.StepLR(o, 2)),
        (lambda ps: torch.optim.AdamW(ps, lr=0.02), lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 6)),
]:
    model, loss_fn = model_and_loss()
    optimizer = make(model.parameters())
    scheduler = schedule(optimizer)
    for step in range(6):
        optimizer.zero_grad()
        loss = loss_fn(model(features), targets)
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 0.5)
        optimizer.step()
        scheduler.step()
    print(type(optimizer).__name__, round(loss.item(), 4), [round(lr, 6) for lr in scheduler.get_last_lr()])

model, loss_fn = model_and_loss()
optimizer = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=5)
plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(torch.optim.SGD(model.parameters(), lr=1.0), patience=0)


def closure():
    optimizer.zero_grad()
    loss = loss_fn(model(features), targets)
    loss.backward()
    return loss


for step in range(3):
    loss = optimizer.step(closure)
    plateau.step(1.0)
    print("LBFGS", round(loss.item(), 4), plateau.get_last_lr())
vector = torch.nn.utils.parameters_to_vector(model.parameters())
torch.nn.utils.vector_to_parameters(vector * 2, model.parameters())
print(vector.shape, round(torch.nn.utils.parameters_to_vector(model.parameters()).sum().item(), 4))


class Squares(Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return {"x": float(i), "y": [i, i * i]}


class Counter(IterableDataset):
    def __iter__(self):
        return iter(range(4))


g = torch.Generator().manual_seed(7)
print(list(DataLoader(Squares(), batch_size=2)))
print(list(DataLoader(Counter(), batch_size=3)))
print([batch for batch in DataLoader(ConcatDataset([Subset(TensorDataset(features, targets), [0, 5]),
                                                    TensorDataset(features[:2], targets[:2])]),
                                     batch_size=4, shuffle=True, generator=g)])
print(list(DataLoader(TensorDataset(features[:4]), batch_size=2, num_workers=2)))
