"""Learned controllers: an LSTM policy over the space's decisions, trained with REINFORCE or PPO.

The controller emits one decision per step (a softmax over that decision's allowed options, the
previous choice fed back as the next input), as in NASNet/ENAS/MnasNet. Rewards come from
``tell`` (the run loop's MNAS reward with the predictor's latency).

``ask`` only returns new, feasible architectures, as the strategy contract requires. A sample
already evaluated is drawn again (crediting it again would only reinforce a collapse onto the best
one seen); after ``patience`` such draws in a row the policy has converged, and a new mutation of its
sample is proposed instead (exploration next to its mode). A sample that breaks the hard limits is
drawn again too; with ``learn_infeasible=True`` it also teaches the controller, without spending
budget, as the worst reward seen so far (off by default: it pushes the controllers away from the
limit, where the best architectures are; BENCHMARKS.md). When ``max_draws`` samples yield nothing, a uniform feasible sample is proposed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from hwnas.search.spaces._base import Arch, SearchSpace
from hwnas.search.strategies._base import SearchExhausted, Strategy

__all__ = ["ReinforceController", "PPOController", "LSTMPolicy"]


class LSTMPolicy(nn.Module):
    """Autoregressive policy: step ``t`` reads the embedding of choice ``t-1`` and outputs logits
    over decision ``t``'s options (disallowed options masked out); ``value`` is a critic head."""

    def __init__(self, space: SearchSpace, hidden: int = 64) -> None:
        super().__init__()
        self.sizes = [len(d.options) for d in space.decisions]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int)
        self.hidden = hidden
        self.embed = nn.Embedding(int(self.offsets[-1]) + 1, hidden)  # +1: the start token
        self.cell = nn.LSTMCell(hidden, hidden)
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in self.sizes)
        self.value = nn.Linear(hidden, 1)
        mask = []
        for n, allowed in zip(self.sizes, space.allowed):
            m = torch.full((n,), float("-inf"))
            m[list(allowed)] = 0.0
            mask.append(m)
        self.masks = mask
        for head in self.heads:  # start uniform over the allowed options
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def _steps(self, batch: int, actions: torch.Tensor | None, generator: torch.Generator | None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        h = torch.zeros(batch, self.hidden)
        c = torch.zeros(batch, self.hidden)
        tok = torch.full((batch,), int(self.offsets[-1]), dtype=torch.long)
        acts, logps, ents, values = [], [], [], []
        for t, head in enumerate(self.heads):
            h, c = self.cell(self.embed(tok), (h, c))
            logits = head(h) + self.masks[t]
            logp_all = torch.log_softmax(logits, -1)
            if actions is None:
                a = torch.multinomial(logp_all.exp(), 1, generator=generator).squeeze(1)
            else:
                a = actions[:, t]
            acts.append(a)
            logps.append(logp_all.gather(1, a[:, None]).squeeze(1))
            p = logp_all.exp()
            ents.append(-(p * torch.where(p > 0, logp_all, torch.zeros_like(logp_all))).sum(-1))
            values.append(self.value(h).squeeze(1))
            tok = a + int(self.offsets[t])
        return torch.stack(acts, 1), torch.stack(logps, 1), torch.stack(ents, 1), torch.stack(values, 1)

    @torch.no_grad()
    def sample(self, batch: int, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``batch`` action sequences and their per-step log-probabilities."""
        a, lp, _, _ = self._steps(batch, None, generator)
        return a.numpy(), lp.numpy()

    def evaluate(self, actions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-step log-probabilities, entropies and values of given action sequences."""
        _, lp, ent, v = self._steps(len(actions), torch.as_tensor(actions, dtype=torch.long), None)
        return lp, ent, v


class _Controller(Strategy):
    """Shared sampling loop; subclasses implement :meth:`_update` on a full batch."""

    def __init__(self, space: SearchSpace, seed: int = 0, feasible: Callable[[Arch], bool] | None = None,
                 batch_size: int = 10, lr: float = 0.05, hidden: int = 64, entropy: float = 0.0,
                 max_draws: int = 500, learn_infeasible: bool = False) -> None:
        super().__init__(space, seed, feasible)
        self.learn_infeasible = learn_infeasible
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.policy = LSTMPolicy(space, hidden)
        self.generator = torch.Generator().manual_seed(seed)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=lr)
        self.batch_size, self.entropy, self.max_draws = batch_size, entropy, max_draws
        self.patience = 20
        self.known: dict[Arch, float] = {}
        self.pending: dict[Arch, tuple[int, ...]] = {}
        self.batch: list[tuple[tuple[int, ...], float]] = []
        self._queue: list[np.ndarray] = []
        self.worst = 0.0
        #: mean reward of the samples of every update (what the controller is learning from)
        self.history: list[float] = []

    def _draw(self) -> tuple[int, ...]:
        if not self._queue:
            acts, _ = self.policy.sample(32, self.generator)
            self._queue = list(acts)
        return tuple(int(x) for x in self._queue.pop(0))

    def _record(self, actions: tuple[int, ...], reward: float) -> None:
        self.batch.append((actions, reward))
        if len(self.batch) >= self.batch_size:
            acts = np.array([a for a, _ in self.batch])
            rewards = np.array([r for _, r in self.batch], dtype=float)
            self.history.append(float(rewards.mean()))
            self._update(acts, rewards)
            self.batch = []
            self._queue = []  # the policy changed: draw afresh

    def ask(self) -> Arch:
        seen_in_row = 0
        for _ in range(self.max_draws):
            actions = self._draw()
            arch = self.space.make(actions)
            if arch in self.known or arch in self.pending:
                seen_in_row += 1
                if seen_in_row >= self.patience:  # the policy has (nearly) converged: explore next to its mode
                    child = self._new_mutation(arch)
                    if child is not None:
                        return child
                continue
            seen_in_row = 0
            if not self.feasible(arch):  # may not be proposed
                if self.learn_infeasible:  # ... and scores the worst reward seen
                    self._record(actions, self.worst)
                continue
            else:
                self.pending[arch] = actions
                return arch
        for _ in range(1000):  # nothing new near the policy: explore uniformly
            arch = self._sample_feasible()
            if arch not in self.known and arch not in self.pending:
                self.pending[arch] = arch.choices
                return arch
        raise SearchExhausted(f"the {self.name} controller found no new feasible architecture")

    def _new_mutation(self, arch: Arch) -> Arch | None:
        for _ in range(50):
            child = self.space.mutate(arch, self.rng)
            if child not in self.known and child not in self.pending and self.feasible(child):
                self.pending[child] = child.choices
                return child
            arch = child
        return None

    def tell(self, arch: Arch, reward: float) -> None:
        actions = self.pending.pop(arch, arch.choices)
        self.worst = min(self.worst, reward) if self.known else reward
        self.known[arch] = reward
        self._record(actions, reward)

    def _update(self, actions: np.ndarray, rewards: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class ReinforceController(_Controller):
    """REINFORCE (Williams 1992; Zoph & Le 2017): ascend ``sum_t log p(a_t) * (R - b)`` with ``b``
    an exponential moving average of rewards (decay ``baseline_decay``), over ``batch_size``
    architectures per update; ``entropy`` adds an entropy bonus. The baseline tracks fast (decay 0.5;
    BENCHMARKS.md, "Learned controllers"). Advantages are divided by a
    moving average of the rewards' standard deviation, so the step size does not depend on the
    reward's scale (accuracies differ by fractions of a point; the MNAS soft penalty by more)."""

    name = "reinforce"
    param_ranges = {"batch_size": (int, 1, None), "lr": (float, 1e-12, None), "hidden": (int, 1, None),
                    "entropy": (float, 0, None), "max_draws": (int, 1, None), "baseline_decay": (float, 0, 1)}

    def __init__(self, space: SearchSpace, seed: int = 0, feasible: Callable[[Arch], bool] | None = None,
                 batch_size: int = 10, lr: float = 0.05, hidden: int = 64, entropy: float = 0.0,
                 baseline_decay: float = 0.5, max_draws: int = 500, learn_infeasible: bool = False) -> None:
        super().__init__(space, seed, feasible, batch_size, lr, hidden, entropy, max_draws, learn_infeasible)
        self.baseline_decay = baseline_decay
        self.baseline: float | None = None
        self.scale: float | None = None

    def _update(self, actions: np.ndarray, rewards: np.ndarray) -> None:
        if self.baseline is None:
            self.baseline, self.scale = float(rewards.mean()), float(rewards.std() + 1e-8)
        adv = (rewards - self.baseline) / max(self.scale, 1e-8)
        d = self.baseline_decay
        self.baseline = d * self.baseline + (1 - d) * float(rewards.mean())
        self.scale = d * self.scale + (1 - d) * float(rewards.std() + 1e-8)
        logp, ent, _ = self.policy.evaluate(actions)
        loss = -(logp.sum(1) * torch.as_tensor(adv, dtype=torch.float32)).mean() - self.entropy * ent.sum(1).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


class PPOController(_Controller):
    """The MnasNet controller's algorithm: PPO (Schulman et al. 2017) with a clipped ratio
    (``clip`` = 0.2), an actor and a critic (value head on the LSTM state), advantages from GAE
    (``gamma``, ``lam``) over the decision sequence (the reward arrives at the last step),
    ``epochs`` passes over each batch sampled from the policy itself."""

    name = "ppo"
    param_ranges = {"batch_size": (int, 1, None), "lr": (float, 1e-12, None), "hidden": (int, 1, None),
                    "entropy": (float, 0, None), "max_draws": (int, 1, None), "clip": (float, 0, None),
                    "gamma": (float, 0, 1), "lam": (float, 0, 1), "epochs": (int, 1, None),
                    "value_coef": (float, 0, None)}

    def __init__(self, space: SearchSpace, seed: int = 0, feasible: Callable[[Arch], bool] | None = None,
                 batch_size: int = 10, lr: float = 0.02, hidden: int = 64, entropy: float = 0.0,
                 clip: float = 0.2, gamma: float = 1.0, lam: float = 0.95, epochs: int = 4,
                 value_coef: float = 0.5, max_draws: int = 500, learn_infeasible: bool = False) -> None:
        super().__init__(space, seed, feasible, batch_size, lr, hidden, entropy, max_draws, learn_infeasible)
        self.clip, self.gamma, self.lam, self.epochs, self.value_coef = clip, gamma, lam, epochs, value_coef
        self.center: float | None = None
        self.scale: float | None = None

    def gae(self, rewards: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advantages and returns for sequences whose only reward is at the last step.

        >>> import numpy as np
        >>> p = PPOController.__new__(PPOController); p.gamma, p.lam = 1.0, 1.0
        >>> adv, ret = p.gae(np.array([1.0]), np.array([[0.2, 0.5]]))
        >>> adv.round(3).tolist(), ret.round(3).tolist()
        ([[0.8, 0.5]], [[1.0, 1.0]])
        """
        n, steps = values.shape
        adv = np.zeros_like(values)
        last = np.zeros(n)
        for t in reversed(range(steps)):
            nxt = values[:, t + 1] if t + 1 < steps else np.zeros(n)
            r = rewards if t == steps - 1 else np.zeros(n)
            delta = r + self.gamma * nxt - values[:, t]
            last = delta + self.gamma * self.lam * last
            adv[:, t] = last
        return adv, adv + values

    def _update(self, actions: np.ndarray, rewards: np.ndarray) -> None:
        # the critic learns normalised rewards: a running centre and scale
        if self.center is None:
            self.center, self.scale = float(rewards.mean()), float(rewards.std() + 1e-8)
        self.center = 0.9 * self.center + 0.1 * float(rewards.mean())
        self.scale = 0.9 * self.scale + 0.1 * float(rewards.std() + 1e-8)
        r = (rewards - self.center) / max(self.scale, 1e-8)
        with torch.no_grad():
            old_logp, _, values = self.policy.evaluate(actions)
        adv, ret = self.gae(r, values.numpy())
        adv_t = torch.as_tensor(adv, dtype=torch.float32)
        ret_t = torch.as_tensor(ret, dtype=torch.float32)
        for _ in range(self.epochs):
            logp, ent, v = self.policy.evaluate(actions)
            ratio = torch.exp(logp - old_logp)
            surrogate = torch.minimum(ratio * adv_t, torch.clamp(ratio, 1 - self.clip, 1 + self.clip) * adv_t)
            loss = (-surrogate.sum(1).mean() + self.value_coef * ((v - ret_t) ** 2).sum(1).mean()
                    - self.entropy * ent.sum(1).mean())
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
