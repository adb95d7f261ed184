"""The search job: a :class:`~hwnas.search.Search` for a device, a space and a latency target, with
the device's predictor, the hard limit and qualification band, the incumbent check on the device
and a run directory."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.devices import Device
from hwnas.errors import ArgumentError, HwnasError, UnknownNameError
from hwnas.jobs._common import (Progress, check_count, check_fraction, check_positive, get_device, no_progress,
                                strategy_config)
from hwnas.jobs._predictors import load_predictor
from hwnas.latency_models import LatencyPredictor
from hwnas.profilers import Profiler
from hwnas.search import (OBJECTIVES, Feasibility, best_and_front, check_strategy_params, Journal, LatencyCache, Limits, RunDir, Search, SearchSpace,
                          check_budget_feasible, create_evaluator, create_space, create_strategy, dataset_classes,
                          list_strategies, reward_preset, space_settings, strategy_class)

#: strategies that are jobs of their own rather than ask/tell strategies (``hwnas search`` runs them)
SUPERNET_JOBS = ("proxyless", "successive-halving", "hyperband", "once-for-all", "compound-scaling", "darts", "enas",
                 "pnas", "hypernetwork")

__all__ = ["SUPERNET_JOBS", "create_search", "arch_latency_on", "write_search", "measure_front", "proxyless_search", "SEARCH_OPTIONS"]

#: the options of :func:`create_search` beyond its named arguments, with their defaults
SEARCH_OPTIONS: dict[str, Any] = {
    "space_args": None, "strategy_params": None, "hard_limit": True, "qualify_band": 0.05, "dataset": "digits",
    "epochs": 2, "resolution": 16, "accuracy_csv": None, "accuracy_column": "cifar10_test_acc", "train_device": "cpu",
    "allow_fingerprint_mismatch": False, "resume": None, "limit_ms": None, "evaluate_quantized": False,
    "executor": None, "ray_address": None, "trial_cpus": None, "trial_gpus": 0, "inherit_epochs": None,
}


def arch_latency_on(device: Device, space: SearchSpace) -> Callable[[Any], float]:
    """A device measurement of an architecture (ms): its ONNX graph (weights from seed 0; latency
    does not depend on them) timed by the device's profiler, not stored."""
    profiler = Profiler(device, None, None)
    classes = getattr(space, "classes", 10)

    def measure(arch: Any) -> float:
        model = space.to_onnx(arch, seed=0, classes=classes)
        return profiler.profile_model(model, name=space.to_string(arch), breakdown_runs=0, record=False).latency_ms

    return measure


def _options(options: dict[str, Any]) -> dict[str, Any]:
    bad = [k for k in options if k not in SEARCH_OPTIONS]
    if bad:
        raise ArgumentError(bad[0], f"is not an option of create_search; its options: {', '.join(SEARCH_OPTIONS)}")
    return {**SEARCH_OPTIONS, **options}


def check_ask_tell(name: str, argument: str = "strategy") -> None:
    """``name`` is a registered ask/tell strategy: a search of its own (:data:`SUPERNET_JOBS`) is said
    to be one; any other name is unknown, listing for ``strategy`` the searches of their own too (the
    CLI's ``--strategy`` runs them), for any other ``argument`` (``sampler``) the ask/tell ones."""
    if name in list_strategies():
        return
    if name in SUPERNET_JOBS:
        raise ArgumentError(argument, f"takes an ask/tell strategy ({', '.join(list_strategies())}); {name} "
                            "is a search of its own", name)
    raise UnknownNameError(argument, name, [*list_strategies(), *(SUPERNET_JOBS if argument == "strategy" else ())])


def _check(target_ms: float, strategy: str, objective: str, verify: int, o: dict[str, Any]) -> None:
    if isinstance(target_ms, bool) or not isinstance(target_ms, (int, float)) or math.isnan(target_ms) or target_ms <= 0:
        raise ArgumentError("target_ms", "takes a latency > 0 (ms; inf for no target)", target_ms)
    check_ask_tell(strategy)
    if objective not in OBJECTIVES:
        raise UnknownNameError("objective", objective, OBJECTIVES)
    if objective == "pareto" and not strategy_class(strategy).multi_objective:
        multi = [n for n in list_strategies() if strategy_class(n).multi_objective]
        raise ArgumentError("objective", f"pareto needs a multi-objective strategy ({', '.join(multi)}); "
                            f"{strategy} takes one reward")
    check_count("verify", verify, 0)
    check_fraction("qualify_band", o["qualify_band"])
    check_count("epochs", o["epochs"], 1)
    check_positive("resolution", o["resolution"], allow_none=True)
    if o["resolution"] is not None and o["resolution"] > 1024:
        raise ArgumentError("resolution", "takes at most 1024 (proxy training)", o["resolution"])
    check_strategy_params(strategy, dict(o["strategy_params"] or {}))
    _check_run_options(o)
    if o["inherit_epochs"] is not None:
        check_count("inherit_epochs", o["inherit_epochs"], 1)
        if o["executor"] not in (None, "inline"):
            raise ArgumentError("inherit_epochs", "runs its trials in this process (a child needs its parent's "
                                "weights file): leave out the executor", o["inherit_epochs"])


def _check_run_options(o: dict[str, Any]) -> None:
    """Where the trials run: a known executor, CPUs and GPUs per trial, GPUs only on Ray."""
    from hwnas.search import list_executors

    if o["executor"] is not None and o["executor"] not in list_executors():
        raise UnknownNameError("executor", o["executor"], list_executors())
    if o["trial_cpus"] is not None:
        check_count("trial_cpus", o["trial_cpus"])
    gpus = o["trial_gpus"]
    if isinstance(gpus, bool) or not isinstance(gpus, (int, float)) or not math.isfinite(gpus) or gpus < 0:
        raise ArgumentError("trial_gpus", "takes a number >= 0", gpus)
    if gpus and o["executor"] != "ray":
        raise ArgumentError("trial_gpus", "needs --executor ray (it gives each trial its GPU)", gpus)
    if o["ray_address"] is not None and o["executor"] != "ray":
        raise ArgumentError("ray_address", "needs --executor ray", o["ray_address"])


def _measure(dev: Device, sp: SearchSpace, verify: int, o: dict[str, Any]) -> Callable[[Any], float] | None:
    """The device measurement: here, or on Ray the node that holds the device (connects to Ray)."""
    if o["executor"] == "ray":
        from hwnas.search._parallel import connect_ray

        connect_ray(o["ray_address"])
    if not verify:
        return None
    if o["executor"] == "ray":
        from hwnas.jobs._farm import measure_on_ray

        return measure_on_ray(dev, sp, o["ray_address"])
    return arch_latency_on(dev, sp)


def _space(space: str | SearchSpace, dev: Device, evaluator: Any, o: dict[str, Any]) -> tuple[SearchSpace, dict]:
    """The space restricted to the device, and its settings (with the proxy dataset's classes)."""
    args = dict(o["space_args"] or {})
    if isinstance(space, SearchSpace):
        return space.restrict(dev.constraints), args
    if evaluator == "proxy" and "classes" not in args and "classes" in space_settings(space):
        # the networks trained, measured and exported have the dataset's classes: so must the op
        # configurations their latency is predicted from
        args["classes"] = dataset_classes(o["dataset"])
    try:
        sp = create_space(space, **args)
    except HwnasError:
        raise
    except (TypeError, ValueError) as exc:
        raise HwnasError(f"bad space_args for {space!r}: {exc}") from None
    return sp.restrict(dev.constraints), args


def _limit(target_ms: float, dev: Device, hard_limit: bool, limit_ms: float | None) -> float | None:
    """The hard limit on predicted latency: ``limit_ms`` (a safety margin below the target) or the
    target itself (``hard_limit``), and never over the device's own budget."""
    c = dev.constraints
    check_positive("limit_ms", limit_ms, allow_none=True)
    limit = limit_ms if limit_ms is not None else target_ms if hard_limit else c.latency_budget_ms
    if c.latency_budget_ms is not None and limit is not None:
        limit = min(limit, c.latency_budget_ms)
    return None if limit is not None and math.isinf(limit) else limit


def _predictor(predictor: Any, dev: Device, sp: SearchSpace, args: dict, allow_mismatch: bool) -> LatencyPredictor:
    """``predictor`` itself, the one in its directory, or the device's (for the space where there is one)."""
    if isinstance(predictor, LatencyPredictor):
        return predictor
    return load_predictor(dev, space=sp.name, space_args=args, path=predictor, allow_fingerprint_mismatch=allow_mismatch)


def _evaluator(evaluator: Any, sp: SearchSpace, seed: int, o: dict[str, Any]) -> Any:
    if callable(evaluator):
        return evaluator
    if evaluator == "table":
        return create_evaluator("table", sp, accuracy_csv=o["accuracy_csv"], accuracy_column=o["accuracy_column"])
    if evaluator == "proxy":
        return create_evaluator("proxy", sp, dataset=o["dataset"], epochs=o["epochs"], resolution=o["resolution"],
                                train_device=o["train_device"], seed=seed, quantized=o["evaluate_quantized"])
    return create_evaluator(evaluator, sp)


def _inheriting(ev: Any, strat: Any, sp: SearchSpace, storage: str | Path | None, epochs: int) -> Any:
    """The evaluator wrapped for weight inheritance: children train ``epochs`` from their parent's
    weights, kept in the run directory's ``weights/`` (a temporary folder for a search in memory)."""
    import tempfile

    from hwnas.search._inherit import InheritingEvaluator
    from hwnas.search.strategies import Strategy

    if type(strat).parent_of is Strategy.parent_of:
        raise ArgumentError("inherit_epochs", f"needs a strategy that breeds children (evolution, guided-evolution); "
                            f"{strat.name} does not", epochs)
    if storage is None:
        holder = tempfile.TemporaryDirectory(prefix="hwnas-weights-")
        wrapped = InheritingEvaluator(ev, holder.name, epochs, strat.parent_of, sp)
        wrapped._holder = holder  # removed with the evaluator
        return wrapped
    return InheritingEvaluator(ev, Path(storage) / "weights", epochs, strat.parent_of, sp)


def _journal(storage: str | Path | None, settings: dict[str, Any], resume: bool | None) -> Journal:
    """The run's journal: in memory, new, or (``resume`` True or None) continued. A file, or a
    non-empty folder that holds no search, is the user's and is refused."""
    if storage is None:
        return Journal(":memory:", settings, resume=True)
    run = RunDir(storage)
    if run.path.exists() and not run.path.is_dir():
        raise ArgumentError("storage", "is a file, not a run directory", str(run.path))
    if resume is True and not run.has_journal():
        raise ArgumentError("storage", "holds no search journal to resume", str(run.path))
    if not run.has_journal() and run.path.is_dir():
        others = [p.name for p in run.path.iterdir() if not p.name.startswith("journal.sqlite")]
        if others:
            raise ArgumentError("storage", f"is a non-empty folder that holds no hwnas search ({others[0]}, ...); "
                                "give a new or empty folder", str(run.path))
    return Journal(run.journal, settings, True if resume is None else resume)


def create_search(space: str | SearchSpace, device: str | Device, *, target_ms: float, predictor: Any = None,
                  strategy: str = "guided-evolution", evaluator: Any = "proxy", objective: str = "mnas",
                  reward: str = "soft", storage: str | Path | None = None, seed: int = 0, verify: int = 0,
                  **options: Any) -> Search:
    """A latency-constrained search of ``space`` for ``device`` at the target ``target_ms``.

    ``predictor``: a :class:`~hwnas.latency_models.LatencyPredictor`, its directory, or None (the
    device's, or the one calibrated on the space: :func:`load_predictor`). ``evaluator``: a
    registered name (``proxy``, ``table``) or any callable ``arch -> accuracy``. ``storage``: a run
    directory (journal; a search already there is continued, ``resume=False`` refuses it) or None
    (in memory). ``verify``: device measurements of incumbents (``mnas``) or of the front at the end
    (``pareto``: :func:`measure_front`). Options: ``space_args``, ``strategy_params``,
    ``hard_limit`` (only architectures predicted within the target are proposed), ``limit_ms`` (a
    hard limit below the target: a safety margin for the predictor's error), ``qualify_band``,
    ``dataset``, ``epochs``, ``resolution``, ``accuracy_csv``, ``accuracy_column``,
    ``train_device``, ``allow_fingerprint_mismatch``, ``resume``, ``evaluate_quantized`` (the proxy
    evaluator's accuracy after int8 quantization, for an int8 device), ``inherit_epochs`` (evolution:
    a child trains this many epochs from its parent's weights, :mod:`hwnas.search._inherit`; one
    worker); where ``optimize`` runs the
    trials: ``executor`` (``local``, ``ray``; :func:`~hwnas.search.create_executor`),
    ``ray_address`` (a Ray cluster; a local Ray when None), ``trial_cpus``, ``trial_gpus``. On Ray
    the device measurements run on the node that advertises ``hwnas-device:<device>``.

    In memory, with a toy predictor (a FLOPs line through five ops) and a toy accuracy:

    >>> import warnings; warnings.simplefilter("ignore")
    >>> from hwnas.latency_models import FlopsLinearModel, LatencyPredictor
    >>> from hwnas.profilers import OpConfig
    >>> ops = [OpConfig.parse(s) for s in ("conv_i16_o16_r32_k3_s1_g1_arelu", "conv_i32_o32_r16_k3_s1_g1_arelu",
    ...        "pwconv_i16_o32_r16_arelu", "dwconv_i32_r16_k3_s1_arelu", "conv_i16_o16_r32_k1_s1_g1_arelu")]
    >>> pred = LatencyPredictor(FlopsLinearModel().fit(ops, [0.20, 0.18, 0.05, 0.03, 0.04]))
    >>> search = create_search("nb201", "cpu-ort", target_ms=5.0, predictor=pred, strategy="random",
    ...                        evaluator=lambda arch: sum(arch.choices) / 24)
    >>> len(search.optimize(5)), search.best_trial.latency_ms <= 5.0
    (5, True)
    >>> trial = search.ask()                  # or drive it yourself
    >>> search.tell(trial, 0.5).accuracy
    0.5
    """
    o = _options(options)
    if o["evaluate_quantized"] and evaluator != "proxy":  # before any work
        raise HwnasError(f"evaluate_quantized needs the proxy evaluator (it quantizes the trained network); "
                         f"got {evaluator!r}")
    _check(target_ms, strategy, objective, verify, o)
    reward_fn = reward_preset(reward, target_ms)  # an unknown preset fails before any work
    dev = get_device(device)
    sp, space_args = _space(space, dev, evaluator if isinstance(evaluator, str) else None, o)
    pred = _predictor(predictor, dev, sp, space_args, o["allow_fingerprint_mismatch"])
    latency = LatencyCache(lambda archs: pred.predict_architectures([sp.op_configs(a) for a in archs]))
    limit = _limit(target_ms, dev, o["hard_limit"], o["limit_ms"])
    incumbents = verify if objective == "mnas" else 0
    band = o["qualify_band"]
    qualify_ms = limit * (1 + band) if incumbents and band and limit is not None else None
    c = dev.constraints
    feasible = Feasibility(sp, Limits(limit, c.max_params, c.max_peak_memory_mb), latency, qualify_ms, verify)
    check_budget_feasible(sp, feasible, latency, seed=seed, latency_many=latency.many)
    settings = {"device": dev.name, "space": sp.name, "space_args": space_args, "strategy": strategy,
                "strategy_params": dict(o["strategy_params"] or {}), "seed": seed, "target_ms": target_ms,
                "reward": reward, "limit_ms": limit, "evaluator": evaluator if isinstance(evaluator, str) else
                getattr(evaluator, "__name__", type(evaluator).__name__), "epochs": o["epochs"],
                "dataset": o["dataset"], "resolution": o["resolution"], "predictor": str(getattr(pred, "path_", "")),
                "verify": verify, "qualify_band": band}
    if objective != "mnas":  # journals written before the objective existed resume unchanged
        settings["objective"] = objective
    if o["evaluate_quantized"]:
        settings["evaluate_quantized"] = True
    ev = _evaluator(evaluator, sp, seed, o)
    try:
        strat = create_strategy(strategy, sp, seed=seed, feasible=feasible, **settings["strategy_params"])
    except HwnasError:
        raise
    except (TypeError, ValueError) as exc:
        raise HwnasError(f"bad strategy_params for {strategy}: {exc}") from None
    if o["inherit_epochs"]:
        settings["inherit_epochs"] = o["inherit_epochs"]
        ev = _inheriting(ev, strat, sp, storage, o["inherit_epochs"])
    measure = _measure(dev, sp, verify, o)  # a Ray cluster that does not answer fails here
    journal = _journal(storage, settings, o["resume"])  # last: a refused search leaves no journal
    try:
        search = Search(sp, strat, latency, reward_fn, journal, evaluator=ev, limit_ms=limit,
                        measure=measure,
                        verify=verify, incumbent_check=bool(incumbents) and limit is not None, qualify_ms=qualify_ms,
                        objective=objective, on_measured=[latency.set_measured, lambda a, ms: feasible.note_measurement()],
                        settings=settings, run_options=_run_options(o))
    except BaseException:
        journal.close()
        raise
    search.predictor, search.device, search.storage = pred, dev, None if storage is None else Path(storage)
    return search


def _run_options(o: dict[str, Any]) -> dict[str, Any]:
    out = {"trial_cpus": o["trial_cpus"], "trial_gpus": o["trial_gpus"]} if o["trial_cpus"] or o["trial_gpus"] else {}
    if o["executor"] is not None:
        out["executor"] = o["executor"]
    if o["executor"] == "ray":
        out["address"] = o["ray_address"]
    return out


def measure_front(search: Search, progress: Progress = no_progress) -> None:
    """With the ``pareto`` objective, measure up to ``verify`` unmeasured front members on the
    device (spread evenly from the fastest to the most accurate), into the journal."""
    left = search.verify - len(search.measured)
    if search.objective != "pareto" or left <= 0 or not search.trials or search.measure is None:
        return
    todo = [f for f in search.best_trials if f.arch not in search.measured]
    if not todo:
        return
    pick = [todo[int(i)] for i in np.unique(np.linspace(0, len(todo) - 1, min(left, len(todo))).round().astype(int))]
    for k, f in enumerate(pick):
        ms = search.measure_now(f.arch)
        progress("measuring the front", k + 1, len(pick), f"{f.arch}: {ms:.3f} ms")


def write_search(search: Search, out: str | Path | None = None) -> dict[str, Any]:
    """The run's files (``trials.csv``, ``pareto.csv``, ``best.json``, ``pareto.png``) in ``out``
    (default: the search's storage); returns ``best.json``'s content."""
    target = out if out is not None else search.storage
    if target is None:
        raise ArgumentError("out", "is needed for a search held in memory")
    target_ms = search.settings.get("target_ms")
    if target_ms is None or (isinstance(target_ms, float) and math.isinf(target_ms)):
        target_ms = max((t.latency_ms for t in search.trials), default=0.0)
    fp = getattr(search.predictor, "fingerprint", None)
    return RunDir(target).write(search.space.name, search.trials, search.best_trial, search.best_trials,
                                search.settings, target_ms, fp)


def proxyless_search(space: str | SearchSpace, device: str | Device, predictor: Any, out: str | Path, *,
                     target_ms: float, space_args: dict[str, Any] | None = None, supernet_epochs: int = 20,
                     warmup_epochs: int = 5, latency_loss: str = "multiplicative", latency_lambda: float = 0.1,
                     latency_beta: float = 0.6, strategy_params: dict[str, Any] | None = None, epochs: int = 2,
                     dataset: str = "digits", resolution: int = 16, seed: int = 0, resume: bool = False,
                     train_device: str = "cpu", allow_fingerprint_mismatch: bool = False,
                     progress: Progress = no_progress, message: Callable[[str], None] = print) -> dict[str, Any]:
    """ProxylessNAS on the ``proxyless`` space: a supernet with binary gates and a latency loss
    from the predictor (as :func:`create_search` finds it), trained ``supernet_epochs``; the
    derived architecture is trained from scratch for ``epochs``. Writes the run directory; returns
    ``best.json``'s content (with ``meets_target``)."""
    from hwnas.search.proxyless import ProxylessConfig, run_proxyless

    name = space if isinstance(space, str) else space.name
    if name != "proxyless":
        raise HwnasError(f"--strategy proxyless searches the proxyless space's supernet, not {name!r} "
                         "(use --space proxyless)")
    device = get_device(device)
    space_args = dict(space_args or {})
    space_args.setdefault("classes", dataset_classes(dataset))
    if isinstance(space, str):
        space = create_space(space, **space_args).restrict(device.constraints)
    predictor = _predictor(predictor, device, space, space_args, allow_fingerprint_mismatch)
    message(f"latency predictor: {predictor.path_} (calibrated on {predictor.calibration.n_models} whole models)")
    for name, value, low in (("supernet_epochs", supernet_epochs, 1), ("warmup_epochs", warmup_epochs, 0),
                             ("epochs", epochs, 1)):
        check_count(name, value, low)
    t = None if math.isinf(target_ms) else target_ms
    params = dict(strategy_params or {})
    cfg = strategy_config("proxyless", ProxylessConfig, params,
                          {"target_ms": t, "latency_loss": latency_loss, "lam": latency_lambda, "beta": latency_beta,
                           "epochs": supernet_epochs, "warmup_epochs": warmup_epochs, "seed": seed})
    strategy = "darts" if params.get("relaxation") == "softmax" else "proxyless"
    settings = {"device": device.name, "space": space.name, "space_args": space_args or {}, "strategy": strategy,
                "strategy_params": params, "seed": seed, "target_ms": target_ms, "latency_loss": latency_loss,
                "lambda": latency_lambda, "beta": latency_beta, "supernet_epochs": supernet_epochs,
                "warmup_epochs": warmup_epochs, "epochs": epochs, "dataset": dataset, "resolution": resolution,
                "predictor": str(getattr(predictor, "path_", "")), "limit_ms": t}
    run = RunDir(out)
    run.path.mkdir(parents=True, exist_ok=True)
    res = run_proxyless(run.path, space, predictor, cfg, settings, dataset, resolution, epochs, train_device, resume,
                        on_epoch=lambda r: progress("proxyless supernet", r.epoch + 1, supernet_epochs,
                                                    f"E[LAT] {r.expected_latency_ms:.3f} ms"))
    trials = res["trials"]
    best, front = best_and_front(trials, None)
    derived = trials[0]
    result = run.write(space.name, trials, best, front, settings,
                       t if t is not None else max(x.latency_ms for x in trials), predictor.fingerprint,
                       extra={"meets_target": t is None or derived.latency_ms <= t})
    return result
