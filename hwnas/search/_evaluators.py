"""Accuracy evaluators: a table (NAS-Bench-201 CSV) and proxy training on a real dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwnas._registry import Registry
from hwnas.errors import HwnasError
from hwnas.search.spaces._base import Arch, SearchSpace

__all__ = ["TableEvaluator", "ProxyTrainingEvaluator", "load_dataset", "dataset_classes", "register_evaluator",
           "create_evaluator", "list_evaluators"]


class TableEvaluator:
    """Accuracy looked up in a CSV with ``arch_str`` and an accuracy column (in %, returned as a
    fraction)."""

    def __init__(self, space: SearchSpace, csv: str | Path, column: str) -> None:
        if not Path(csv).is_file():
            raise HwnasError(f"accuracy CSV {csv}: {'is a directory' if Path(csv).is_dir() else 'not found'}")
        try:
            df = pd.read_csv(csv)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise HwnasError(f"accuracy CSV {csv} cannot be read ({exc})") from None
        if "arch_str" not in df.columns or column not in df.columns:
            cols = [c for c in df.columns if c not in ("index", "arch_str")]
            raise HwnasError(f"{csv} needs arch_str and {column!r}; accuracy columns: {', '.join(cols)}")
        self.space = space
        self.table = dict(zip(df["arch_str"], df[column].astype(float) / 100.0))

    def __call__(self, arch: Arch) -> float:
        key = self.space.to_string(arch)
        if key not in self.table:
            raise HwnasError(f"{key} is not in the accuracy table")
        return self.table[key]


def load_dataset(name: str | Path, resolution: int | None = None, seed: int = 0):  # noqa: ANN201
    """``digits`` (scikit-learn, offline), ``cifar10[:ROOT]`` (torchvision, a local copy: never
    downloaded), a ``.npz`` with x/y arrays, or an image folder (class per sub-folder). Returns
    (x_train, y_train, x_val, y_val, n_classes) as torch tensors."""
    import torch

    name = str(name)
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = d.images.astype(np.float32) / 16.0  # (n, 8, 8)
        x = np.repeat(x[:, None], 3, axis=1)
        y = d.target.astype(np.int64)
    elif name.startswith("cifar10"):
        root = name.partition(":")[2] or "data"
        try:
            from torchvision.datasets import CIFAR10
        except ImportError:
            raise HwnasError("the cifar10 dataset needs torchvision (pip install torchvision matching your torch); "
                             "digits works offline without it") from None
        try:
            ds = CIFAR10(root, train=True, download=False)
        except RuntimeError:
            raise HwnasError(f"CIFAR-10 not found under {root!r}: hwnas never downloads at run time; put the "
                             "python version there (cifar-10-batches-py) and pass --dataset cifar10:ROOT") from None
        x = ds.data.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
        y = np.asarray(ds.targets, np.int64)
    elif name.endswith(".npz"):
        x, y = _load_npz(name)
    elif Path(name).is_dir():
        from PIL import Image

        classes = sorted(p.name for p in Path(name).iterdir() if p.is_dir())
        xs, ys = [], []
        for ci, c in enumerate(classes):
            for f in sorted((Path(name) / c).iterdir()):
                img = Image.open(f).convert("RGB").resize((resolution or 32, resolution or 32))
                xs.append(np.asarray(img, np.float32).transpose(2, 0, 1) / 255.0)
                ys.append(ci)
        if not xs:
            raise HwnasError(f"no images under {name}")
        x, y = np.stack(xs), np.array(ys, np.int64)
    else:
        raise HwnasError(f"unknown dataset {name!r}: use 'digits', 'cifar10[:ROOT]', a .npz file with x and y, "
                         "or an image folder")
    _check_data(name, x, y)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_val = max(1, len(y) // 5)
    xt, yt = torch.from_numpy(x[order]), torch.from_numpy(y[order])
    if resolution and xt.shape[-1] != resolution:
        xt = torch.nn.functional.interpolate(xt, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return xt[n_val:], yt[n_val:], xt[:n_val], yt[:n_val], int(y.max()) + 1


def _load_npz(name: str) -> tuple[np.ndarray, np.ndarray]:
    """x (N, H, W) or (N, C, H, W) and integer labels y (N,) from a .npz file."""
    p = Path(name)
    if not p.is_file():
        raise HwnasError(f"dataset {name}: {'is a directory' if p.is_dir() else 'not found'}")
    try:
        with np.load(p, allow_pickle=False) as data:
            if "x" not in data or "y" not in data:
                raise HwnasError(f"dataset {name} needs arrays 'x' and 'y'; it has {', '.join(data.files) or 'none'}")
            x, y = data["x"], data["y"]
    except (OSError, ValueError, EOFError) as exc:
        raise HwnasError(f"dataset {name} is not a readable .npz file ({exc})") from None
    if x.ndim not in (3, 4) or y.ndim != 1:
        raise HwnasError(f"dataset {name}: x must be (N, H, W) or (N, C, H, W) and y (N,); got {x.shape} and {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) and not (np.issubdtype(y.dtype, np.floating)
                                                       and np.all(np.isfinite(y)) and np.all(y == np.round(y))):
        raise HwnasError(f"dataset {name}: labels y must be integers; got {y.dtype}")
    x = x.astype(np.float32)
    return (np.repeat(x[:, None], 3, axis=1) if x.ndim == 3 else x), y.astype(np.int64)


def _check_data(name: str, x: np.ndarray, y: np.ndarray) -> None:
    """As many inputs as labels, no NaN or infinity, labels 0..K-1 with at least two classes."""
    if len(x) != len(y):
        raise HwnasError(f"dataset {name}: {len(x)} inputs but {len(y)} labels")
    if len(y) < 5:
        raise HwnasError(f"dataset {name}: {len(y)} examples; at least 5 are needed (a fifth is held out)")
    if not np.all(np.isfinite(x)):
        raise HwnasError(f"dataset {name}: the inputs contain NaN or infinite values")
    if y.min() < 0:
        raise HwnasError(f"dataset {name}: labels must be >= 0; got {int(y.min())}")
    if len(np.unique(y)) < 2:
        raise HwnasError(f"dataset {name}: one class only ({int(y[0])}); a classifier needs at least two")


def dataset_classes(name: str | Path) -> int:
    """How many classes ``load_dataset(name)`` has, without loading (resizing) an image folder's
    images or CIFAR-10: the count its labels give."""
    name = str(name)
    if name == "digits" or name.startswith("cifar10"):
        return 10
    if Path(name).is_dir():
        n = sum(1 for p in Path(name).iterdir() if p.is_dir())
        if n:
            return n
    return load_dataset(name)[4]  # a .npz (its labels), or the error load_dataset gives


class ProxyTrainingEvaluator:
    """Train the candidate for a few epochs and return validation accuracy (CPU or CUDA); with
    ``quantized``, the accuracy of the trained network quantized to int8 as an int8 device runs it
    (:func:`hwnas.profilers.quantize_int8`, calibrated on training images), so that a network that
    loses accuracy when quantized is not chosen for an int8 device. ``schedule``: the learning rate
    over a training, ``one-cycle`` (up to 5 x ``lr`` and down over the training's epochs),
    ``constant`` (``lr`` throughout: a shorter training is exactly a prefix of a longer one,
    whatever the full length) or ``cosine`` (from ``lr`` down to 0, no warm-up);
    ``inherit_schedule``: the same for a child trained from its parent's weights
    (:meth:`train_inherited`; default: ``schedule``)."""

    def __init__(self, space: SearchSpace, dataset: str = "digits", epochs: int = 3, resolution: int | None = 32,
                 batch_size: int = 64, lr: float = 0.01, device: str = "cpu", seed: int = 0,
                 quantized: bool = False, schedule: str = "one-cycle", inherit_schedule: str | None = None) -> None:
        import torch

        for value in dict.fromkeys((schedule, inherit_schedule or schedule)):
            if value not in SCHEDULES:
                from hwnas.errors import UnknownNameError

                raise UnknownNameError("training schedule", value, list(SCHEDULES))
        self.schedule, self.inherit_schedule = schedule, inherit_schedule or schedule

        if device == "cuda" and not torch.cuda.is_available():
            raise HwnasError("--train-device cuda requested but no CUDA GPU is available")
        self.space, self.epochs, self.batch_size, self.lr, self.device, self.seed = space, epochs, batch_size, lr, device, seed
        flat = space.name == "mlp"
        #: a space whose input resolution is a searched decision (mnasnet) trains each architecture
        #: at its own resolution (the dataset resized once per resolution), not at ``resolution``
        self.searches_resolution = any(d.name == "resolution" for d in space.decisions)
        self.dataset = dataset
        self.data = load_dataset(dataset, None if flat or self.searches_resolution else resolution, seed)
        if flat:  # tabular: flatten one channel
            xt, yt, xv, yv, k = self.data
            self.data = (xt[:, 0].flatten(1), yt, xv[:, 0].flatten(1), yv, k)
        self._at: dict[int, Any] = {}
        self.resolution = resolution
        self.quantized = quantized

    def with_device(self, device: str) -> ProxyTrainingEvaluator:
        """This evaluator training on ``device`` (a worker given a GPU: ``cuda``)."""
        import copy

        new = copy.copy(self)
        new.device = device
        return new

    def __call__(self, arch: Arch) -> float:
        module, accuracy = self.train(arch)
        return self.int8_accuracy(arch, module) if self.quantized else accuracy

    def int8_accuracy(self, arch: Arch, module: Any) -> float:
        """Validation accuracy of ``module`` quantized to int8 and run by ONNX Runtime."""
        from hwnas.profilers import dataset_feeds, module_to_onnx, onnx_accuracy, quantize_int8

        xt, _, xv, yv, _ = self._data_for(arch)
        model = module_to_onnx(module.cpu().eval(), (1, *xt.shape[1:]))
        q = quantize_int8(model, dataset_feeds(model, xt.numpy()))
        return onnx_accuracy(q, xv.numpy(), yv.numpy())

    def _data_for(self, arch: Arch) -> Any:
        if not self.searches_resolution:
            return self.data
        res = int(self.space.input_shape(arch)[-1])
        if res not in self._at:
            self._at[res] = load_dataset(self.dataset, res, self.seed)
        return self._at[res]

    def train(self, arch: Arch):  # noqa: ANN201
        """The trained module (eval mode) and its validation accuracy. Every training here ends with
        its BatchNorm statistics re-estimated on the training images (``_TrainingRun.finish``), from
        scratch as from a parent's weights, so that candidates are compared alike."""
        run = self._start(arch, self.epochs)
        run.epochs_to(self.epochs)
        return run.model.eval(), run.finish()

    #: :meth:`train_to` continues a candidate's training from a checkpoint (multi-fidelity search)
    supports_fidelity = True
    #: :meth:`train_inherited` starts a child from its parent's trained weights (``--inherit``)
    supports_inheritance = True

    def train_inherited(self, arch: Arch, parent_state: dict[str, Any], epochs: int,  # noqa: ANN201
                        parent: Arch | None = None):
        """The module trained ``epochs`` epochs from ``parent_state`` (weights inherited by
        :func:`hwnas.search._inherit.inherit_weights`; ``parent``, the architecture those weights
        belong to, lets layers correspond where the child adds or drops some: default, ``arch``
        itself), its validation accuracy, and what was inherited. BatchNorm statistics are
        re-estimated on the training images after training (as once-for-all networks do), as after
        any training here (:meth:`train`)."""
        from hwnas.search._inherit import block_correspondence, inherit_weights

        run = self._start(arch, epochs, self.inherit_schedule)
        blocks = None if parent is None else block_correspondence(self.space, arch, parent)
        stats = inherit_weights(run.model, parent_state, blocks)
        switched = [] if parent is None or epochs == 0 else self.space.switched_ops(arch, parent)
        if switched:
            stats = self._train_blended(run, parent, parent_state, switched, epochs, stats)
        else:
            run.epochs_to(epochs)
        return run.model.eval(), run.finish(), stats

    def _train_blended(self, run: _TrainingRun, parent: Arch, parent_state: dict[str, Any], switched: list[str],
                       epochs: int, stats: Any) -> Any:
        """Train ``run`` with its switched operations blended in from the parent's
        (:func:`hwnas.search._inherit.blended`); the stats gain the modules blended."""
        import dataclasses

        from hwnas.search._inherit import blend_steps, blended

        old = self._module(parent)
        old.load_state_dict(parent_state)
        with blended(run.model, old, switched, blend_steps(epochs, run.steps_per_epoch)) as n:
            run.epochs_to(epochs)
        return dataclasses.replace(stats, blended_layers=n)

    def train_to(self, arch: Arch, epochs: int, max_epochs: int, checkpoint: str | Path | None = None) -> float:
        """Validation accuracy after ``epochs`` epochs of a ``max_epochs`` schedule (the learning rate
        follows the ``max_epochs`` cycle, so each rung is a prefix of the full training). With a
        ``checkpoint`` file holding an earlier rung, training continues from it (and the file is
        rewritten at ``epochs``): the result equals training straight to ``epochs``."""
        import torch

        if not 1 <= epochs <= max_epochs:
            raise HwnasError(f"train_to needs 1 <= epochs <= max_epochs (got {epochs}, {max_epochs})")
        run = self._start(arch, max_epochs)
        path = Path(checkpoint) if checkpoint is not None else None
        if path is not None and path.exists():
            state = torch.load(path, map_location=self.device, weights_only=False)
            if state["epochs"] <= epochs and state["max_epochs"] == max_epochs:
                run.load(state)
        run.epochs_to(epochs)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save({**run.state(), "max_epochs": max_epochs}, tmp)
            tmp.replace(path)  # a run killed while writing keeps the earlier rung's file
        return run.finish()

    def _module(self, arch: Arch) -> Any:
        """The architecture's fresh torch module for this evaluator's data, on its device."""
        data = self._data_for(arch)
        xt, classes = data[0], data[4]
        if self.space.name == "mlp":
            kw = {"resolution": xt.shape[1]}
        else:
            kw = {"resolution": None if self.searches_resolution else self.resolution}
        return self.space.build_module(arch, classes=classes, **kw).to(self.device)

    def _start(self, arch: Arch, total_epochs: int, schedule: str | None = None) -> _TrainingRun:
        import torch

        xt, yt, xv, yv, _ = self._data_for(arch)
        torch.manual_seed(self.seed)
        model = self._module(arch)
        return _TrainingRun(model, (xt, yt, xv, yv), self.batch_size, self.lr, total_epochs, self.seed, self.device,
                            schedule or self.schedule)


#: learning-rate schedules of :class:`ProxyTrainingEvaluator`
SCHEDULES = ("one-cycle", "constant", "cosine")


class _TrainingRun:
    """One candidate's training: SGD with a learning-rate schedule over ``total_epochs`` (one of
    ``SCHEDULES``), a seeded shuffle; its state (model, optimiser, schedule, shuffle, epochs done)
    saves and loads."""

    def __init__(self, model: Any, data: tuple, batch_size: int, lr: float, total_epochs: int, seed: int,
                 device: str, schedule: str = "one-cycle") -> None:
        import torch

        self.model, self.data, self.batch_size, self.device = model, data, batch_size, device
        self.opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
        steps = total_epochs * self.steps_per_epoch
        if schedule == "constant":
            self.sched = torch.optim.lr_scheduler.ConstantLR(self.opt, factor=1.0, total_iters=0)
        elif schedule == "cosine":
            self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=max(1, steps))
        else:
            self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt, max_lr=lr * 5, total_steps=max(1, steps))
        self.gen = torch.Generator().manual_seed(seed)
        self.done = 0

    @property
    def steps_per_epoch(self) -> int:
        """Optimiser steps in one epoch (batches of the training images)."""
        return (len(self.data[1]) + self.batch_size - 1) // self.batch_size

    def epochs_to(self, epochs: int) -> None:
        import torch

        xt, yt = self.data[0], self.data[1]
        self.model.train()
        for _ in range(self.done, epochs):
            perm = torch.randperm(len(yt), generator=self.gen)
            for i in range(0, len(yt), self.batch_size):
                idx = perm[i: i + self.batch_size]
                x, y = xt[idx].to(self.device), yt[idx].to(self.device)
                loss = torch.nn.functional.cross_entropy(self.model(x), y)
                self.opt.zero_grad()
                loss.backward()
                self.opt.step()
                self.sched.step()
        self.done = max(self.done, epochs)

    def recalibrate_batchnorm(self) -> None:
        """BatchNorm running statistics as the exact average over one pass of the training images."""
        import torch

        bns = [m for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if not bns:
            return
        saved = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average
        self.model.train()
        xt = self.data[0]
        with torch.no_grad():
            for i in range(0, len(xt), self.batch_size):
                self.model(xt[i: i + self.batch_size].to(self.device))
        for m, mom in zip(bns, saved):
            m.momentum = mom

    def finish(self) -> float:
        """The validation accuracy after re-estimating the BatchNorm statistics (what every
        training of the evaluator reports: a few epochs at a high learning rate leave the running
        averages behind the weights). Training on afterwards is unchanged (train mode uses each
        batch's own statistics), so a rung continued from a checkpoint still equals training
        straight through."""
        self.recalibrate_batchnorm()
        return self.accuracy()

    def accuracy(self) -> float:
        import torch

        xv, yv = self.data[2], self.data[3]
        self.model.eval()
        with torch.no_grad():
            pred = torch.cat([self.model(xv[i: i + 256].to(self.device)).argmax(1).cpu() for i in range(0, len(yv), 256)])
        return float((pred == yv).float().mean())

    def state(self) -> dict[str, Any]:
        return {"epochs": self.done, "model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict(), "gen": self.gen.get_state()}

    def load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.gen.set_state(state["gen"])
        self.done = int(state["epochs"])


#: evaluator factories ``(space, **options) -> (arch -> accuracy)``, by name
_EVALUATORS: Registry[Any] = Registry("evaluator")


def register_evaluator(name: str, factory: Any, *, replace: bool = False) -> Any:
    """Register ``factory(space, **options)``, which returns a callable ``arch -> accuracy``."""
    return _EVALUATORS.register(name, factory, replace=replace)


def create_evaluator(name: str, space: SearchSpace, **options: Any) -> Any:
    """The evaluator ``name`` for ``space``; unknown names and options list the known ones."""
    import inspect

    factory = _EVALUATORS.get(name)
    params = inspect.signature(factory).parameters
    known = [p for p in params if p != "space"]
    bad = [k for k in options if k not in known]
    if bad and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        raise HwnasError(f"evaluator {name!r} has no option {bad[0]!r}; its options: {', '.join(known)}")
    return factory(space, **options)


def list_evaluators(pattern: str = "*") -> list[str]:
    return _EVALUATORS.names(pattern)


def _proxy(space: SearchSpace, dataset: str = "digits", epochs: int = 2, resolution: int | None = 16,
           train_device: str = "cpu", seed: int = 0, quantized: bool = False) -> ProxyTrainingEvaluator:
    return ProxyTrainingEvaluator(space, dataset, epochs, resolution, device=train_device, seed=seed,
                                  quantized=quantized)


def _table(space: SearchSpace, accuracy_csv: str | Path | None = None,
           accuracy_column: str = "cifar10_test_acc") -> TableEvaluator:
    if accuracy_csv is None:
        raise HwnasError("the table evaluator needs accuracy_csv (a CSV with arch_str and accuracy columns)")
    return TableEvaluator(space, accuracy_csv, accuracy_column)


register_evaluator("proxy", _proxy)
register_evaluator("table", _table)
