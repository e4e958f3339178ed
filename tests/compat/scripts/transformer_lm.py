"""A tiny language model as PyTorch's "language modeling with nn.Transformer" tutorial builds
it: Embedding, a PositionalEncoding buffer, a causal TransformerEncoder and a Linear decoder,
trained for a few steps on a toy sequence, with starting weights set from a formula so that
every run prints the same numbers. Then nn.MultiheadAttention's weights and
F.scaled_dot_product_attention on a few values."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
NTOKENS, D_MODEL, NHEAD, D_HID, NLAYERS, BPTT = 12, 16, 2, 32, 2, 8


class PositionalEncoding(nn.Module):
    def __init__(self, d_model, dropout=0.1, max_len=64):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        position = torch.arange(max_len).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, 1, d_model)
        pe[:, 0, 0::2] = torch.sin(position * div_term)
        pe[:, 0, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe)

    def forward(self, x):
        x = x + self.pe[:x.size(0)]
        return self.dropout(x)


class TransformerModel(nn.Module):
    def __init__(self, ntoken, d_model, nhead, d_hid, nlayers, dropout=0.5):
        super().__init__()
        self.model_type = "Transformer"
        self.pos_encoder = PositionalEncoding(d_model, dropout)
        encoder_layers = nn.TransformerEncoderLayer(d_model, nhead, d_hid, dropout)
        self.transformer_encoder = nn.TransformerEncoder(encoder_layers, nlayers)
        self.embedding = nn.Embedding(ntoken, d_model)
        self.d_model = d_model
        self.linear = nn.Linear(d_model, ntoken)

    def forward(self, src, src_mask=None):
        src = self.embedding(src) * math.sqrt(self.d_model)
        src = self.pos_encoder(src)
        output = self.transformer_encoder(src, src_mask)
        return self.linear(output)


# dropout=0.0: dropout draws random numbers, which differ between libraries.
model = TransformerModel(NTOKENS, D_MODEL, NHEAD, D_HID, NLAYERS, dropout=0.0)
with torch.no_grad():
    for p in model.parameters():
        p.copy_(torch.linspace(-0.5, 0.5, p.numel()).reshape(p.shape).sin() * 0.8)
print(model)
print([name for name, _ in model.named_parameters()][:8])
print(list(model.state_dict())[:3], model.pos_encoder.pe.shape)

data = torch.tensor([i % NTOKENS for i in range(0, 3 * 40, 3)]).view(-1, 2)  # (seq, batch)
src_mask = nn.Transformer.generate_square_subsequent_mask(BPTT)
print(src_mask[:3, :4])
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
model.train()
for step, i in enumerate(range(0, data.size(0) - 1, BPTT)):
    seq_len = min(BPTT, len(data) - 1 - i)
    inputs, targets = data[i:i + seq_len], data[i + 1:i + 1 + seq_len].reshape(-1)
    output = model(inputs, src_mask[:seq_len, :seq_len])
    loss = criterion(output.view(-1, NTOKENS), targets)
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
    optimizer.step()
    print(f"step {step}: loss {loss.item():.4f} ppl {math.exp(loss.item()):.3f}")

model.eval()
with torch.no_grad():
    logits = model(data[:BPTT], src_mask)
print(logits.argmax(-1)[:, 0], logits[-1, 0, :4])

attention = nn.MultiheadAttention(4, 2, batch_first=True)
with torch.no_grad():
    for p in attention.parameters():
        p.copy_(torch.linspace(-1, 1, p.numel()).reshape(p.shape).cos())
x = torch.linspace(-1, 1, 2 * 3 * 4).reshape(2, 3, 4)
padding = torch.tensor([[False, False, True], [False, False, False]])
out, weights = attention(x, x, x, key_padding_mask=padding)
print(out[0], weights[0], weights.grad_fn is not None)
q = torch.linspace(-1, 1, 24).reshape(1, 2, 3, 4)
print(F.scaled_dot_product_attention(q, q.flip(-1), q.cos(), is_causal=True)[0, 1])
print(F.scaled_dot_product_attention(q, q, q, attn_mask=torch.tensor([[True, False, True]])))
