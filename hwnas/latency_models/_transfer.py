"""Architecture-level latency prediction on a new device from few measurements, using other
devices' latencies of the same architectures as features.

Fitted on the target's few measured architectures only, as the geometric mean of two ridge
regressions (each with its regularisation chosen by efficient leave-one-out cross-validation):

1. multiplicative view: log(target) on the standardised log latencies of the source devices;
2. additive view: target (ms) on the standardised source latencies plus the architecture encoding
   (a latency is a sum of per-op costs).

Devices share most of their latency structure, so a few samples find the mix of sources that matches
the target. On NAS-Bench-201 the two views' average beat either alone, at 10 and 100 samples, over
all 21 devices held out in turn (BENCHMARKS.md); a LightGBM residual stage did not help there.

A third view, ``parts`` (``views``), needs additive parts ``G`` of each architecture's latency
on the sources (ms, e.g. a source's predicted time of its dense convolutions, of its depthwise ones,
of the rest, and its kernel count): target = sum of non-negative multiples of the parts, fitted in
relative error (``scipy.optimize.nnls``). Each kind of work gets its own speed ratio, which is what
moving to another runtime or thread count changes most; the sign constraints keep the fit from
overfitting a few samples.

Each view is fitted robustly (``robust_iters`` > 0): iteratively reweighted, with Huber weights
``min(1, c * s / |r|)`` from each sample's residual ``r`` (log ratio in the multiplicative view,
relative error in the additive one) and the residuals' robust scale ``s`` (1.4826 x their median
absolute deviation), so that a few measurements no linear mix of the sources explains (a device
that folds cells without a live path to a constant: pixel3 runs them in 0.05 ms against 10.7 ms;
a measurement taken in a slow phase) do not bend the fit for all the others (figures:
BENCHMARKS.md, "Latency transfer to an unseen device").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.base import BaseEstimator
from scipy.optimize import nnls
from sklearn.linear_model import RidgeCV

__all__ = ["TransferLatencyModel", "NB201_OPS", "encode_nb201", "VIEWS"]

#: the transfer model's views (see the module's docstring)
VIEWS = ("multiplicative", "additive", "parts")

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def encode_nb201(arch_str: str) -> np.ndarray:
    """One-hot of the 6 edges' ops (30), op counts (5), and the number of convolutions on the
    longest live input-to-output path."""
    nodes = [n for n in arch_str.strip("|").split("|+|")]
    edges: list[tuple[int, int, str]] = []  # (src, dst, op)
    for dst, node in enumerate(nodes, start=1):
        for item in node.strip("|").split("|"):
            op, src = item.split("~")
            if op not in NB201_OPS:
                raise ValueError(f"unknown NAS-Bench-201 op {op!r} in {arch_str!r}; known: {NB201_OPS}")
            edges.append((int(src), dst, op))
    if len(edges) != 6:
        raise ValueError(f"a NAS-Bench-201 cell has 6 edges, {arch_str!r} has {len(edges)}")
    onehot = np.zeros((6, len(NB201_OPS)))
    for i, (_, _, op) in enumerate(edges):
        onehot[i, NB201_OPS.index(op)] = 1
    counts = onehot.sum(0)
    # longest path (in convolutions) from node 0 to node 3 over edges that are not 'none'
    best = {0: 0.0}
    for src, dst, op in sorted(edges, key=lambda e: e[1]):
        if op != "none" and src in best:
            best[dst] = max(best.get(dst, -1.0), best[src] + (op.startswith("nor_conv")))
    depth = best.get(3, -1.0)
    return np.concatenate([onehot.ravel(), counts, [depth]])


class TransferLatencyModel(BaseEstimator):
    """Latency of architectures on a target device from ``n`` of its measurements.

    ``fit(X, S, y, G=None)``: ``X`` architecture encodings, ``S`` source devices' latencies (ms,
    same rows), ``y`` the target's latencies (ms), ``G`` additive parts of the latency (ms; needed by
    the ``parts`` view). ``predict(X, S, G=None)``: the geometric mean of the ``views``' predictions.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> S = rng.uniform(1, 10, size=(200, 3)); X = rng.integers(0, 2, size=(200, 4))
    >>> y = 2 * S[:, 0] + 0.5
    >>> m = TransferLatencyModel().fit(X[:20], S[:20], y[:20])
    >>> float(np.abs(m.predict(X[20:], S[20:]) / y[20:] - 1).max()) < 0.05
    True
    """

    def __init__(self, alphas: tuple[float, ...] = tuple(np.logspace(-4, 4, 33)), min_latency_ms: float = 1e-3,
                 robust_iters: int = 3, huber_c: float = 1.345,
                 views: tuple[str, ...] = ("multiplicative", "additive")) -> None:
        self.alphas = alphas
        self.views = views
        self.min_latency_ms = min_latency_ms
        self.robust_iters = robust_iters
        self.huber_c = huber_c

    def _views(self, X: np.ndarray, S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logS = np.log(np.maximum(S, self.min_latency_ms))
        Z = (logS - self.log_mean_) / self.log_std_
        M = (S - self.ms_mean_) / self.ms_std_
        return Z, np.column_stack([M, X])

    def fit(self, X: np.ndarray, S: np.ndarray, y: np.ndarray, G: np.ndarray | None = None) -> TransferLatencyModel:
        X, S, y = np.asarray(X, float), np.asarray(S, float), np.asarray(y, float)
        self._check_views(G)
        if len(y) < 2:
            raise ValueError("need at least 2 target measurements")
        if np.any(~np.isfinite(y)) or np.any(y <= 0):
            raise ValueError("target latencies must be positive and finite")
        logS = np.log(np.maximum(S, self.min_latency_ms))
        self.log_mean_, self.log_std_ = logS.mean(0), logS.std(0) + 1e-9
        self.ms_mean_, self.ms_std_ = S.mean(0), S.std(0) + 1e-9
        Z, F = self._views(X, S)
        if "multiplicative" in self.views:
            self.multiplicative_ = self._robust_ridge(Z, np.log(y), lambda r: r)
        if "additive" in self.views:
            self.additive_ = self._robust_ridge(F, y, lambda r: r / y)
        if "parts" in self.views:
            self.parts_ = self._robust_nnls(np.asarray(G, float), y)
        return self

    def _check_views(self, G: np.ndarray | None) -> None:
        unknown = [v for v in self.views if v not in VIEWS]
        if unknown or not self.views:
            raise ValueError(f"views takes one or more of {', '.join(VIEWS)}; got {self.views!r}")
        if "parts" in self.views and G is None:
            raise ValueError("the parts view needs the latency's additive parts G")

    def _robust_nnls(self, G: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Non-negative coefficients of the parts, least squares in relative error, refitted with
        Huber weights like ``_robust_ridge``."""
        w = np.ones_like(y)
        coef = np.zeros(G.shape[1])
        for _ in range(self.robust_iters + 1):
            coef = nnls(G * (w / y)[:, None], w)[0]
            r = G @ coef / y - 1
            scale = 1.4826 * float(np.median(np.abs(r - np.median(r))))
            if scale <= 0:
                break
            w = np.minimum(1.0, self.huber_c * scale / np.maximum(np.abs(r), 1e-12))
        return coef
    def _robust_ridge(self, A: np.ndarray, t: np.ndarray, relative: Callable[[np.ndarray], np.ndarray]) -> RidgeCV:
        """Ridge (regularisation by leave-one-out), refitted ``robust_iters`` times with Huber
        weights of the residuals (``relative`` makes them comparable across samples)."""
        model = RidgeCV(alphas=self.alphas).fit(A, t)
        for _ in range(self.robust_iters):
            r = relative(t - model.predict(A))
            scale = 1.4826 * float(np.median(np.abs(r - np.median(r))))
            if scale <= 0:  # a perfect fit of most samples: nothing to reweight
                break
            w = np.minimum(1.0, self.huber_c * scale / np.maximum(np.abs(r), 1e-12))
            model = RidgeCV(alphas=self.alphas).fit(A, t, sample_weight=w)
        return model

    def predict(self, X: np.ndarray, S: np.ndarray, G: np.ndarray | None = None) -> np.ndarray:
        self._check_views(G)
        Z, F = self._views(np.asarray(X, float), np.asarray(S, float))
        logs = []
        if "multiplicative" in self.views:
            logs.append(self.multiplicative_.predict(Z))
        if "additive" in self.views:
            logs.append(np.log(np.maximum(self.additive_.predict(F), self.min_latency_ms)))
        if "parts" in self.views:
            logs.append(np.log(np.maximum(np.asarray(G, float) @ self.parts_, self.min_latency_ms)))
        return np.exp(np.mean(logs, axis=0))
