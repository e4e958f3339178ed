"""torch.distributions as tutorials use it: PyTorch's REINFORCE example (a policy network,
`Categorical(probs)`, `m.sample()`, `-m.log_prob(action) * return`) on a made-up corridor
environment, then a VAE's step (`Normal(mu, std).rsample()`, `kl_divergence` to the prior)."""
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.distributions import Categorical
from torch.distributions.kl import kl_divergence
from torch.distributions.normal import Normal

torch.manual_seed(543)


class Corridor:
    """Cells 0..5; start in cell 1; action 0 steps left, 1 steps right; reaching cell 5 pays
    1 and ends the episode, every other step costs 0.05; at most 12 steps."""

    def reset(self):
        self.position, self.steps = 1, 0
        return self.observation()

    def observation(self):
        return F.one_hot(torch.tensor(self.position), 6).float()

    def step(self, action):
        self.position = max(0, self.position + (1 if action == 1 else -1))
        self.steps += 1
        done = self.position == 5 or self.steps == 12
        reward = 1.0 if self.position == 5 else -0.05
        return self.observation(), reward, done


class Policy(nn.Module):
    def __init__(self):
        super().__init__()
        self.affine1 = nn.Linear(6, 16)
        self.affine2 = nn.Linear(16, 2)
        self.saved_log_probs = []
        self.rewards = []

    def forward(self, x):
        x = F.relu(self.affine1(x))
        return F.softmax(self.affine2(x), dim=-1)


policy = Policy()
optimizer = optim.Adam(policy.parameters(), lr=1e-2)
env = Corridor()
gamma = 0.9


def select_action(state):
    probs = policy(state.unsqueeze(0))
    m = Categorical(probs)
    action = m.sample()
    policy.saved_log_probs.append(m.log_prob(action))
    return action.item()


def finish_episode():
    R, returns = 0, []
    for r in policy.rewards[::-1]:
        R = r + gamma * R
        returns.insert(0, R)
    returns = torch.tensor(returns)
    returns = (returns - returns.mean()) / (returns.std() + 1e-6)
    policy_loss = [-log_prob * R for log_prob, R in zip(policy.saved_log_probs, returns)]
    optimizer.zero_grad()
    policy_loss = torch.cat(policy_loss).sum()
    policy_loss.backward()
    optimizer.step()
    del policy.rewards[:], policy.saved_log_probs[:]
    return policy_loss.item()


for episode in range(8):
    state, actions = env.reset(), []
    for t in range(12):
        action = select_action(state)
        actions.append(action)
        state, reward, done = env.step(action)
        policy.rewards.append(reward)
        if done:
            break
    total = sum(policy.rewards)
    loss = finish_episode()
    print(f"episode {episode}: actions {actions} return {total:.2f} loss {loss:.4f}")

m = Categorical(logits=torch.tensor([0.5, -1.0, 2.0]))
print(m, m.probs, m.entropy(), m.sample((6,)), m.log_prob(torch.tensor([0, 2])))

# A VAE's step: encoder -> (mu, log variance) -> reparameterized z -> decoder, ELBO loss.
encoder, decoder = nn.Linear(8, 4), nn.Linear(2, 8)
vae_optimizer = optim.SGD(list(encoder.parameters()) + list(decoder.parameters()), lr=0.05)
x = (torch.rand(16, 8) > 0.5).float()
for step in range(5):
    mu, log_var = encoder(x).chunk(2, dim=-1)
    q = Normal(mu, torch.exp(0.5 * log_var))
    z = q.rsample()
    recon = F.binary_cross_entropy_with_logits(decoder(z), x, reduction="sum")
    kl = kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum()
    loss = (recon + kl) / len(x)
    vae_optimizer.zero_grad()
    loss.backward()
    vae_optimizer.step()
    print(f"vae step {step}: recon {recon.item():.4f} kl {kl.item():.4f} z[0] {z[0].tolist()}")
print(q, q.stddev.shape, q.log_prob(z).sum(-1)[:3])
