"""The text-classification tutorial's model (an EmbeddingBag of the tokens of each text, by
offsets, then a Linear layer), trained as the tutorial trains it (SGD, StepLR, gradient
clipping, accuracy per epoch) on made-up token ids instead of AG_NEWS."""
import torch
from torch import nn
from torch.utils.data import DataLoader

torch.manual_seed(0)
VOCAB, NUM_CLASS, EMSIZE = 50, 4, 64
# Each text is 3 to 8 ids; its label is the id range most of its tokens come from.
dataset = []
for _ in range(64):
    label = int(torch.randint(NUM_CLASS, (1,)))
    length = int(torch.randint(3, 9, (1,)))
    tokens = torch.randint(label * 12, label * 12 + 14, (length,))
    dataset.append((label, tokens.tolist()))


def collate_batch(batch):
    label_list, text_list, offsets = [], [], [0]
    for _label, _text in batch:
        label_list.append(_label)
        processed_text = torch.tensor(_text, dtype=torch.int64)
        text_list.append(processed_text)
        offsets.append(processed_text.size(0))
    label_list = torch.tensor(label_list, dtype=torch.int64)
    offsets = torch.tensor(offsets[:-1]).cumsum(dim=0)
    text_list = torch.cat(text_list)
    return label_list, text_list, offsets


class TextClassificationModel(nn.Module):
    def __init__(self, vocab_size, embed_dim, num_class):
        super(TextClassificationModel, self).__init__()
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, sparse=False)
        self.fc = nn.Linear(embed_dim, num_class)
        self.init_weights()

    def init_weights(self):
        initrange = 0.5
        self.embedding.weight.data.uniform_(-initrange, initrange)
        self.fc.weight.data.uniform_(-initrange, initrange)
        self.fc.bias.data.zero_()

    def forward(self, text, offsets):
        embedded = self.embedding(text, offsets)
        return self.fc(embedded)


model = TextClassificationModel(VOCAB, EMSIZE, NUM_CLASS)
print(model)
criterion = torch.nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=5)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1.0, gamma=0.1)
train_dataloader = DataLoader(dataset[:48], batch_size=8, shuffle=True, collate_fn=collate_batch)
valid_dataloader = DataLoader(dataset[48:], batch_size=8, shuffle=False, collate_fn=collate_batch)


def train(dataloader):
    model.train()
    total_acc, total_count = 0, 0
    for idx, (label, text, offsets) in enumerate(dataloader):
        optimizer.zero_grad()
        predicted_label = model(text, offsets)
        loss = criterion(predicted_label, label)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        optimizer.step()
        total_acc += (predicted_label.argmax(1) == label).sum().item()
        total_count += label.size(0)
    return total_acc / total_count, loss.item()


def evaluate(dataloader):
    model.eval()
    total_acc, total_count = 0, 0
    with torch.no_grad():
        for idx, (label, text, offsets) in enumerate(dataloader):
            predicted_label = model(text, offsets)
            total_acc += (predicted_label.argmax(1) == label).sum().item()
            total_count += label.size(0)
    return total_acc / total_count


for epoch in range(1, 5):
    accuracy, last_loss = train(train_dataloader)
    accu_val = evaluate(valid_dataloader)
    scheduler.step()
    print(f"| end of epoch {epoch:3d} | train accuracy {accuracy:8.3f} | last loss {last_loss:8.4f} "
          f"| valid accuracy {accu_val:8.3f} | lr {scheduler.get_last_lr()[0]}")

label, text, offsets = collate_batch(dataset[:3])
print(text, offsets)
output = model(text, offsets)
print(output.grad_fn, model.embedding(text, offsets).grad_fn)
print(output.argmax(1), label)
print(model.embedding.weight.grad.abs().sum(1)[:12])
