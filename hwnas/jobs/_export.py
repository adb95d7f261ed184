"""The export job: a trial, an architecture or a run's best (or front member) trained, exported to
ONNX, verified and measured on a device."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from hwnas.deploy import ArchSpec, ModelCard, check_output, export_architecture, load_arch_spec
from hwnas.devices import Device
from hwnas.errors import HwnasError
from hwnas.jobs._common import Message, check_count, check_positive, get_device, no_message, open_store
from hwnas.jobs._predictors import load_predictor
from hwnas.profilers import DriftPolicy
from hwnas.search import Trial

__all__ = ["export", "arch_spec"]


def arch_spec(what: Any, front: int | None = None) -> ArchSpec:
    """What to export as an :class:`~hwnas.deploy.ArchSpec`: a :class:`~hwnas.search.Trial` (its
    run's settings), an ``ArchSpec``, or a path (a run directory, its ``best.json``, or an
    architecture JSON; ``front`` picks a member of a run's front)."""
    if isinstance(what, ArchSpec):
        return what
    if isinstance(what, Trial):
        s = what.settings
        if not s.get("space"):
            raise HwnasError(f"trial {what.number} carries no run settings (space): give an ArchSpec instead")
        return ArchSpec.from_settings(s, what.arch, what.accuracy)
    if isinstance(what, (str, Path)):
        return load_arch_spec(what, front)
    raise HwnasError(f"cannot export a {type(what).__name__}: give a Trial, an ArchSpec or a path")


def export(trial_or_arch: Any, device: str | Device, path: str | Path, *, epochs: int = 5, train: bool = True,
           dataset: str | None = None, resolution: int | None = None, dynamic_batch: bool = False,
           budget_ms: float | None = None, predictor: Any = None, allow_fingerprint_mismatch: bool = False,
           store: Any = None, seed: int = 0, train_device: str = "cpu", front: int | None = None,
           overwrite: bool = False, policy: Any = None, weights: Any = None, message: Message = no_message) -> ModelCard:
    """Train (``epochs`` on ``dataset``), export to ONNX at ``path``, verify parity with PyTorch,
    measure on ``device`` and write ``model_card.json`` (see
    :func:`hwnas.deploy.export_architecture`). ``predictor``: a predictor, its directory, or None
    (for a trial, the one its search used; else the device's for the space where there is one;
    without one the card has no predicted latency, and ``message`` says so). With ``store`` the measurement is stored and bracketed by
    the drift guard. ``weights``: the module's ``state_dict`` to start from (a supernet's subnetwork),
    fine-tuned ``epochs`` (0: as it is)."""
    check_count("epochs", epochs, 1 if train and weights is None else 0)
    check_positive("budget_ms", budget_ms, allow_none=True)
    check_positive("resolution", resolution, allow_none=True)
    check_output(Path(path), overwrite)  # before any work
    spec = arch_spec(trial_or_arch, front)
    if budget_ms is not None:
        spec = dataclasses.replace(spec, budget_ms=budget_ms)
    dev = get_device(device)
    pred = predictor
    if pred is None and isinstance(trial_or_arch, Trial) and trial_or_arch.settings.get("predictor"):
        own = Path(trial_or_arch.settings["predictor"])  # the predictor the trial's search used
        pred = own if (own / "model.json").is_file() else None
    if pred is None or isinstance(pred, (str, Path)):
        try:
            pred = load_predictor(dev, space=spec.space, space_args=spec.space_args, path=pred,
                                  allow_fingerprint_mismatch=allow_fingerprint_mismatch)
        except HwnasError as exc:
            if predictor is not None:
                raise
            pred = None
            message(f"warning: {exc}; the card will have no predicted latency")
    st = open_store(store) if store is not None else None
    try:
        return export_architecture(spec, dev, path, pred, epochs, train, dataset, resolution, dynamic_batch,
                                   policy=policy, store=st, seed=seed, train_device=train_device,
                                   drift=DriftPolicy() if st is not None else None, overwrite=overwrite,
                                   weights=weights)
    finally:
        if st is not None and st is not store:
            st.close()
