"""Losses and distances as tutorials use them: a regression trained with SmoothL1Loss past the
point where nbgrad fuses the loop, knowledge distillation with KLDivLoss ('batchmean') on
temperature-softened log-probabilities, a triplet loss, and an embedding search by cosine
similarity, normalize and cdist. Values come from formulas, so every run prints the same."""
import torch
import torch.nn as nn
import torch.nn.functional as F

model = nn.Linear(3, 2)
with torch.no_grad():
    model.weight.copy_(torch.linspace(-0.5, 0.5, 6).reshape(2, 3))
    model.bias.fill_(0.1)
criterion = nn.SmoothL1Loss(beta=0.5)
print(criterion, nn.HuberLoss(delta=2.0), nn.KLDivLoss(reduction="batchmean"))
optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
x = torch.linspace(-1.0, 1.0, 24).reshape(8, 3)
y = torch.stack([x.sum(1), x[:, 0] - 2 * x[:, 2]], 1)
for step in range(20):
    loss = criterion(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 5 == 4:
        print(f"step {step}: smooth L1 {loss.item():.5f}, huber "
              f"{F.huber_loss(model(x), y, delta=0.3).item():.5f}")

teacher = torch.linspace(-2.0, 2.0, 12).reshape(3, 4)
student = torch.linspace(1.0, -1.0, 12).reshape(3, 4).requires_grad_()
T = 2.0
distill = nn.KLDivLoss(reduction="batchmean")(F.log_softmax(student / T, dim=1),
                                               F.softmax(teacher / T, dim=1)) * T * T
distill.backward()
print(f"distillation {distill.item():.5f}", type(distill.grad_fn).__name__)
print("student grad", student.grad)

anchor, positive, negative = teacher, teacher + 0.1, teacher.flip(0)
print("triplet", nn.TripletMarginLoss(margin=1.0)(anchor, positive, negative))
print("cosine embedding", nn.CosineEmbeddingLoss()(anchor, negative, torch.tensor([1.0, -1.0, 1.0])))

embeddings = F.normalize(torch.linspace(-1.0, 2.0, 15).reshape(5, 3) ** 2 - 1.0, dim=1)
query = torch.tensor([[0.2, -0.4, 1.0]])
scores = F.cosine_similarity(query, embeddings)
print("scores", scores, "best", scores.argmax().item())
print("distances", torch.cdist(query, embeddings))
print("pairwise", nn.PairwiseDistance()(embeddings[:2], embeddings[2:4]))
