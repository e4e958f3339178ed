"""A character-level language model of the kind recurrent-network tutorials start with: an
embedding, a two-layer LSTM and a linear head, trained a few steps on one sentence with Adam,
then sampled greedily one character at a time, the LSTM's state carried between calls; and
the shapes a GRU gives on a batch of sequences of different lengths, padded and packed."""
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence

torch.manual_seed(0)
text = "the quick brown fox jumps over the lazy dog. the dog sleeps."
chars = sorted(set(text))
stoi = {ch: i for i, ch in enumerate(chars)}
itos = {i: ch for ch, i in stoi.items()}
data = torch.tensor([stoi[ch] for ch in text], dtype=torch.long)
print(len(chars), "characters,", len(data), "in the text")


class CharLSTM(nn.Module):
    def __init__(self, vocab_size, embed_dim=8, hidden_size=16, num_layers=2):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_size, num_layers, batch_first=True, dropout=0.1)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, x, state=None):
        out, state = self.lstm(self.embed(x), state)
        return self.head(out), state


model = CharLSTM(len(chars))
print(model)
for name, p in model.named_parameters():
    print(name, tuple(p.shape))
print("parameters:", sum(p.numel() for p in model.parameters()))

seq_len, batch_size = 8, 4
starts = torch.arange(0, batch_size * 12, 12)
x = torch.stack([data[s:s + seq_len] for s in starts])
y = torch.stack([data[s + 1:s + seq_len + 1] for s in starts])
print("batch", tuple(x.shape), tuple(y.shape))

optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
criterion = nn.CrossEntropyLoss()
for step in range(12):
    logits, _ = model(x)
    loss = criterion(logits.reshape(-1, len(chars)), y.reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    if step % 3 == 2:
        print(f"step {step + 1}: loss {loss.item():.4f}")

model.eval()
with torch.no_grad():
    out, (h, c) = model.lstm(model.embed(x[:1]))
    print("output", tuple(out.shape), "h_n", tuple(h.shape), "c_n", tuple(c.shape))
    idx = torch.tensor([[stoi["t"]]])
    state = None
    sample = "t"
    for _ in range(20):
        logits, state = model(idx, state)
        idx = logits[:, -1].argmax(dim=-1, keepdim=True)
        sample += itos[idx.item()]
    print(repr(sample))

words = [torch.tensor([stoi[ch] for ch in w]) for w in ["the", "lazy", "dog."]]
padded = pad_sequence(words, batch_first=True, padding_value=stoi[" "])
print(padded)
gru = nn.GRU(8, 6, bidirectional=True, batch_first=True)
out, h_n = gru(model.embed(padded))
print(gru, tuple(out.shape), tuple(h_n.shape), out.grad_fn.name(), h_n.grad_fn.name())
lengths = torch.tensor([len(w) for w in words])
packed = pack_padded_sequence(model.embed(padded), lengths, batch_first=True, enforce_sorted=False)
print(packed.batch_sizes, packed.sorted_indices)
out, h_n = gru(packed)
out, out_lengths = pad_packed_sequence(out, batch_first=True)
print(tuple(out.shape), out_lengths, tuple(h_n.shape))
print(out[0, -1].abs().sum().item() == 0, round(h_n.abs().sum().item(), 4))
cell = nn.LSTMCell(8, 6)
h, c = cell(model.embed(padded[:, 0]))
print(cell, tuple(h.shape), tuple(c.shape))
