"""The end-to-end job: profile -> predictor -> latency-constrained search -> export -> measure.

Everything goes under one directory; a rerun reuses the profile store (ops and whole models
already measured under this fingerprint are not measured again) and the finished search journal.
"""

from __future__ import annotations

import time
import warnings
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwnas._files import read_json
from hwnas.errors import HwnasError
from hwnas.deploy import ArchSpec, export_architecture
from hwnas.devices import Device
from hwnas.jobs._common import Message, OpProgress, Progress, get_device, no_message, no_progress, timing_policy
from hwnas.jobs._space_models import space_models, spread_archs
from hwnas.latency_models import (LatencyPredictor, calibrate_on, default_op_time, evaluate, expand_kernels, fit_model,
                                  sample_configs,
                                  training_data)

from hwnas.profilers import DriftPolicy, Profiler, ProfileStore, measure_models
from hwnas.search import Journal, LatencyCache, Limits, MnasReward, RunDir, Search, create_strategy, feasibility, write_json
from hwnas.search import ProxyTrainingEvaluator
from hwnas.search.spaces import ProxylessSpace

__all__ = ["PipelineConfig", "PipelineResult", "run_pipeline", "quickstart", "search_budget", "MIN_MARGIN"]

#: the smallest safety margin between the budget and the search's hard limit on predicted latency
MIN_MARGIN = 0.15


@dataclass(frozen=True)
class PipelineConfig:
    """Small budgets that fit the 10-minute main job on 2 cores."""

    space_args: dict[str, Any] = field(default_factory=lambda: {"resolution": 32, "width": 0.35, "classes": 10})
    sampled_ops: int = 60  # op configurations from the priors, beside the space's own kernels
    calibration_models: int = 10  # whole models of the space measured to calibrate
    heldout_models: int = 6  # whole models measured only to check the predictor
    #: passes over the whole models, each keeping its fastest (contention slows whole models in phases)
    model_passes: int = 3
    #: passes over the ops, each op's fastest kept (``Profiler.profile_ops(passes=...)``)
    op_passes: int = 1
    #: what the op model learns (see ``OP_TIMES``; None: ``default_op_time``)
    op_time: str | None = None
    budget_quantile: float = 0.4  # the latency budget: this quantile of the space's predicted latencies
    budget_ms: float | None = None  # or a fixed budget
    #: speed-drift guard while profiling, measuring and exporting (None: off)
    drift: Any = field(default_factory=lambda: DriftPolicy())
    strategy: str = "evolution"
    search_budget: int = 10  # architectures trained during the search
    search_epochs: int = 2
    export_epochs: int = 6
    dataset: str = "digits"
    seed: int = 0
    #: stored ops measured again after profiling (``Profiler.recheck``): how far the device's
    #: measurements repeat, reported beside the predictor's accuracy (0: no check)
    recheck: int = 10


@dataclass
class PipelineResult:
    rows: list[tuple[str, str]]
    summary: dict[str, Any]


def _speed_row(guard: Any, at_export: float | None) -> str:
    if guard is None:
        return "not checked (no drift guard)"
    s = guard.summary()
    text = (f"reference op {s['factor_min']:.2f}-{s['factor_max']:.2f}x its baseline while profiling"
            if s["readings"] else "no readings while profiling (all reused)")
    if s["remeasured_chunks"] or s["kept_drifted_chunks"]:
        text += f"; {s['remeasured_chunks']} drifted chunk(s) re-measured, {s['kept_drifted_chunks']} kept drifted"
    if at_export is not None:
        text += f"; {at_export:.2f}x at export"
    pinned = guard.profiler.pinned
    if pinned:
        text += f"; measured on CPU {','.join(map(str, pinned))} (the fastest for the reference)"
    return text


def search_budget(probe_ms: np.ndarray, margin: float, budget_ms: float | None,
                  quantile: float) -> tuple[float, float, bool]:
    """The latency budget, the search's hard limit on predicted latency (the budget less the
    safety margin) and whether the budget was raised.

    A budget the user gave is kept; if nothing is predicted within its limit, that is an error
    that names the smallest predicted latency. A budget the pipeline chose itself (``quantile`` of
    the sampled architectures' predicted latencies) is raised where needed so that the limit keeps
    the fastest ``quantile / 8`` of them (5% at the default 0.4): on a noisy device the margin (the largest held-out
    under-prediction, up to 30%) would otherwise push the limit below every architecture and the
    quickstart would fail on its own choice."""
    if budget_ms is not None:
        limit = budget_ms / (1 + margin)
        if limit < probe_ms.min():
            raise HwnasError(f"no architecture of the space is predicted within {limit:.3f} ms (budget {budget_ms:.3f} "
                             f"ms less a {100 * margin:.0f}% safety margin); the smallest found is {probe_ms.min():.3f} ms")
        return budget_ms, limit, False
    budget = float(np.quantile(probe_ms, quantile))
    floor = float(np.quantile(probe_ms, quantile / 8))
    if budget / (1 + margin) >= floor:
        return budget, budget / (1 + margin), False
    return floor * (1 + margin), floor, True




@dataclass
class _Stages:
    """What the stages of one quickstart share."""

    out: Path
    device: Device
    config: PipelineConfig
    policy: Any
    tick: Progress
    say: Message
    store: ProfileStore
    profiler: Profiler
    space: Any
    times: dict[str, float] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)

    def timed(self, key: str, t0: float) -> None:
        self.times[key] = self.times.get(key, 0.0) + time.perf_counter() - t0


def _profile(st: _Stages) -> None:
    """Every kernel the space can run, plus samples from the priors; the repeat check."""
    t0, cfg, fp = time.perf_counter(), st.config, st.profiler.fingerprint
    kernels = list(dict.fromkeys(k for layer in st.space.layer_options() for choice in layer
                                 for k in expand_kernels(choice)))
    ops = kernels + sample_configs(cfg.sampled_ops, seed=cfg.seed)
    before = len(st.store.done_keys(fp.id))
    st.say(f"profiling {len(ops)} op configurations ({len(kernels)} kernels of the space)")
    bar = OpProgress(st.tick, "profile ops")
    run = st.profiler.profile_ops(ops, on_start=bar.start, on_done=bar.done, passes=cfg.op_passes)
    repeat = None
    if cfg.recheck > 0:
        n_again = [0]

        def again_done(*_: Any) -> None:
            n_again[0] += 1
            st.tick("repeat check", n_again[0], cfg.recheck)

        repeat = st.profiler.recheck(cfg.recheck, seed=cfg.seed, on_done=again_done)
        st.say(f"repeat check: {repeat.summary()}")
        if repeat.warning():
            st.say(f"warning: {repeat.warning()}")
    st.results.update(ops=ops, run=run, measured_now=len(st.store.done_keys(fp.id)) - before, repeat=repeat)
    st.timed("profile_s", t0)


def _fit(st: _Stages) -> LatencyPredictor:
    """The op-level predictor (LightGBM on the store)."""
    t0 = time.perf_counter()
    op_time = st.config.op_time or default_op_time(st.profiler)
    configs, y = training_data(st.store, st.profiler.fingerprint, op_time)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = LatencyPredictor(fit_model("lightgbm", configs, y, st.profiler.fingerprint, op_time))
    st.results["op_time"] = op_time
    st.timed("predictor_s", t0)
    return raw


def _calibrate(st: _Stages, raw: LatencyPredictor) -> LatencyPredictor:
    """Whole models of the space spread over its predicted-latency range, interleaved: calibration
    at the quantiles 0, 1/(n-1), ..., 1, a held-out check in between."""
    t0, cfg, space = time.perf_counter(), st.config, st.space
    n_cal, n_held = cfg.calibration_models, cfg.heldout_models
    n_models = n_cal + n_held
    raw_table = raw.layer_table(space.layer_options())
    spread = spread_archs(space, lambda a: raw_table.predict(np.array([space.layer_indices(x) for x in a])),
                          n_models, cfg.seed + 100)
    cal_idx = sorted({int(round(q)) for q in np.linspace(0, n_models - 1, n_cal)})
    held_idx = [i for i in range(n_models) if i not in cal_idx]
    models = space_models(space, [spread[i] for i in cal_idx + held_idx])
    st.say(f"measuring {n_models} whole models spread over the space's latency range ({len(held_idx)} held out), "
           f"{cfg.model_passes} passes, the fastest kept")
    done = [0]

    def model_done(name: str, ms: float) -> None:
        done[0] += 1
        st.tick("whole models", done[0], n_models * cfg.model_passes)

    measured = measure_models(st.profiler, [(n, m) for n, _, m in models], model_done, passes=cfg.model_passes)
    st.tick("whole models", n_models * cfg.model_passes, n_models * cfg.model_passes)  # reused: one call each
    st.timed("models_s", t0)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictor = calibrate_on(raw, measured[: len(cal_idx)])
        held = measured[len(cal_idx):]
        metrics, held_pred = evaluate(predictor, held)
    predictor.save(st.out / "predictor")
    st.timed("predictor_s", t0)
    under = [m.latency_ms / p - 1 for m, p in zip(held, held_pred)]
    # at least MIN_MARGIN: a handful of held-out models cannot show the tail (BENCHMARKS.md)
    st.results.update(n_models=n_models, cal_measured=measured[: len(cal_idx)], held=held, held_pred=held_pred,
                      metrics=metrics, margin=float(np.clip(max(under, default=0.0), MIN_MARGIN, 0.3)),
                      raw_table=raw_table)
    return predictor


def _search(st: _Stages, predictor: LatencyPredictor) -> Any:
    """The budget (with the safety margin) and the latency-constrained search."""
    cfg, space, r = st.config, st.space, st.results
    rng = np.random.default_rng(cfg.seed)
    probe = list(dict.fromkeys(space.sample(rng) for _ in range(500)))
    table = r["raw_table"].with_calibration(predictor.calibration)
    probe_ms = table.predict(np.array([space.layer_indices(a) for a in probe]))
    budget, limit, raised = search_budget(probe_ms, r["margin"], cfg.budget_ms, cfg.budget_quantile)
    if raised:
        st.say(f"the budget is raised to {budget:.3f} ms: the {100 * cfg.budget_quantile:.0f}% quantile less the "
               f"{100 * r['margin']:.0f}% safety margin would leave the search almost nothing of the space")
    st.say(f"searching: budget {budget:.3f} ms, hard limit {limit:.3f} ms (safety margin {100 * r['margin']:.1f}%: "
           f"the largest under-prediction on the held-out models, at least {100 * MIN_MARGIN:.0f}%)")
    t0 = time.perf_counter()
    latency = LatencyCache(lambda archs: table.predict(np.array([space.layer_indices(a) for a in archs])),
                           known=dict(zip(probe, (float(x) for x in probe_ms))))
    run = RunDir(st.out / "run")
    settings = {"device": st.device.name, "space": space.name, "space_args": cfg.space_args,
                "strategy": cfg.strategy, "strategy_params": {}, "seed": cfg.seed, "target_ms": budget,
                "reward": "hard", "limit_ms": limit, "evaluator": "proxy", "epochs": cfg.search_epochs,
                "dataset": cfg.dataset, "resolution": cfg.space_args.get("resolution"),
                "predictor": str(st.out / "predictor")}
    quantized = st.device.options.precision == "int8"  # choose by the accuracy the int8 device will have
    if quantized:
        settings["evaluate_quantized"] = True
    strategy = create_strategy(cfg.strategy, space, seed=cfg.seed, feasible=feasibility(space, Limits(limit), latency))
    evaluator = ProxyTrainingEvaluator(space, cfg.dataset, cfg.search_epochs, cfg.space_args.get("resolution"),
                                       seed=cfg.seed, quantized=quantized)
    search = Search(space, strategy, latency, MnasReward(budget, 0.0, -1.0), Journal(run.journal, settings, True),
                    evaluator=evaluator, limit_ms=limit, settings=settings)
    search.optimize(cfg.search_budget, [lambda s, t: st.tick("search", t.number + 1, cfg.search_budget)])
    search.close()
    trials, best = search.trials, search.best_trial
    run.write(space.name, trials, best, search.best_trials, settings, budget, predictor.fingerprint)
    import pandas as pd

    pd.DataFrame({"model": [m.name for m in r["held"]], "measured_ms": [m.latency_ms for m in r["held"]],
                  "predicted_ms": r["held_pred"]}).to_csv(run.path / "predictor_heldout.csv", index=False)
    st.timed("search_s", t0)
    if best is None:
        raise HwnasError("the search found no architecture within the limit")
    r.update(budget=budget, limit=limit, raised=raised, trials=trials, best=best, run_dir=run.path)
    return best


def _export(st: _Stages, predictor: LatencyPredictor, best: Any) -> Any:
    """Export the best, measure it, and re-measure the calibration models right after (not stored),
    so that a device that changed speed can be told apart from a prediction error."""
    t0, cfg, r = time.perf_counter(), st.config, st.results
    st.say(f"exporting {best.arch}: training {cfg.export_epochs} epochs, ONNX, parity, measuring")
    st.tick("export", 0, 1)
    spec = ArchSpec(st.space.name, best.arch, dict(cfg.space_args), best.accuracy, r["budget"], cfg.dataset,
                    cfg.space_args.get("resolution"))
    cal = r["cal_measured"]

    def speed_factor() -> dict[str, float]:
        now = [st.profiler.profile_model(m.onnx, name=m.name, breakdown_runs=0, record=False).latency_ms for m in cal]
        return {"calibration_models_speed_factor": float(np.median([a / m.latency_ms for a, m in zip(now, cal)]))}

    exp = export_architecture(spec, st.device, r["run_dir"] / "model" / "model.onnx", predictor, cfg.export_epochs,
                              True, policy=st.policy, store=st.store, seed=cfg.seed, drift=cfg.drift, overwrite=True,
                              card_extra=speed_factor)
    st.tick("export", 1, 1)
    st.timed("export_s", t0)
    return exp


def _claim(out: Path, device: Device, config: PipelineConfig, policy: Any) -> None:
    """Refuse, before anything is changed, a folder that is not this quickstart's: a file, a
    non-empty folder of the user's, or a quickstart run with other settings; then record the
    settings (``quickstart.json``)."""
    import json

    settings = json.loads(json.dumps({"device": device.name, **{f.name: getattr(config, f.name)
                                      for f in dataclasses.fields(config) if f.name != "drift"},
                                      "drift_guard": config.drift is not None,
                                      "timing": dataclasses.asdict(policy) if dataclasses.is_dataclass(policy) else None},
                                     default=str))
    if out.exists() and not out.is_dir():
        raise HwnasError(f"{out} is a file; give a folder for the quickstart's outputs")
    mine = out / "quickstart.json"
    if mine.is_file():
        stored = read_json(mine, "; use another folder")
        diff = sorted(k for k in set(stored) | set(settings) if stored.get(k) != settings.get(k))
        if diff:
            raise HwnasError(f"{out} holds a quickstart with other settings ({', '.join(diff)} differ); nothing was "
                             "changed: use another folder (or the same settings to continue it)")
        return
    if out.is_dir() and any(p.name not in ("profiles.sqlite", "predictor", "run", "summary.json") for p in out.iterdir()):
        raise HwnasError(f"{out} is a non-empty folder that holds no hwnas quickstart; give a new or empty folder")
    write_json(mine, settings)


def run_pipeline(out: Path, device: Device, config: PipelineConfig = PipelineConfig(), policy: Any = None,
                 progress: Progress | None = None, log: Message | None = None) -> PipelineResult:
    """Run every stage; ``progress(stage, done, total)`` reports, ``log`` tells what is happening."""
    t_start = time.perf_counter()
    out = Path(out)
    _claim(out, device, config, policy)
    space = ProxylessSpace(**config.space_args).restrict(device.constraints)
    with ProfileStore(out / "profiles.sqlite") as store:
        profiler = Profiler(device, policy, store, drift=config.drift, auto_pin=config.drift is not None)
        st = _Stages(out, device, config, policy, progress or no_progress, log or no_message, store, profiler, space)
        _profile(st)
        predictor = _calibrate(st, _fit(st))
        best = _search(st, predictor)
        card = _export(st, predictor, best)
    st.times["total_s"] = time.perf_counter() - t_start
    summary = _summary(st, card)
    write_json(out / "summary.json", summary)
    return PipelineResult(_rows(st, card, summary), summary)


def _summary(st: _Stages, card: Any) -> dict[str, Any]:
    r, out, profiler = st.results, st.out, st.profiler
    return {
        "device": st.device.name, "fingerprint": profiler.fingerprint.id, "space": f"proxyless {st.config.space_args}",
        "ops_profiled": len(r["ops"]), "ops_measured_now": r["measured_now"], "ops_reused": len(r["run"].skipped),
        "whole_models": r["n_models"], "op_time": r["op_time"], "predictor_heldout": r["metrics"],
        "safety_margin": r["margin"], "budget_ms": r["budget"], "budget_raised": r["raised"], "limit_ms": r["limit"],
        "search_trials": len(r["trials"]), "best_arch": r["best"].arch, "search_accuracy": r["best"].accuracy,
        "accuracy": card["accuracy"], "predicted_latency_ms": card["predicted_latency_ms"],
        "measured_latency_ms": card["measured_latency_ms"], "meets_budget": card["meets_budget"],
        "parity_max_abs_diff": card["parity_max_abs_diff"], "speed_factor_at_export": card["speed_factor"],
        "calibration_models_speed_factor": card["calibration_models_speed_factor"],
        **({k: card[k] for k in ("int8", "fp32_latency_ms", "int8_speedup")} if "int8" in card else {}),
        "speed_checks": profiler.guard.summary() if profiler.guard else None,
        "repeat_check": r["repeat"].to_dict() if r["repeat"] is not None else None,
        "pinned_cpus": list(profiler.pinned) if profiler.pinned else None,
        "seconds": {k: round(v, 1) for k, v in st.times.items()},
        "paths": {"profile_store": str(out / "profiles.sqlite"), "predictor": str(out / "predictor"),
                  "run": str(r["run_dir"]), "onnx": str(card.onnx_path), "model_card": str(card.card_path)},
    }


def _rows(st: _Stages, card: Any, s: dict[str, Any]) -> list[tuple[str, str]]:
    r, cfg, out = st.results, st.config, st.out
    repeat, metrics = r["repeat"], r["metrics"]
    return [
        ("device", f"{st.device.name} ({s['fingerprint']})"),
        ("op configurations", f"{len(r['ops'])} ({r['measured_now']} measured now, {len(r['run'].skipped)} reused "
                              "from the store)"),
        ("op repeatability", repeat.summary() + ("" if repeat.ok else " (POOR: see the warning)")
         if repeat is not None else "not checked"),
        ("predictor on held-out models", f"MAPE {100 * metrics['mape']:.1f}%, within +-10% {100 * metrics['acc10']:.0f}% "
                                         f"({len(r['held'])} models)"),
        ("latency budget", f"{r['budget']:.3f} ms (search limit {r['limit']:.3f} ms"
                           + ("; raised to leave the search room" if r["raised"] else "") + ")"),
        ("search", f"{cfg.strategy}, {len(r['trials'])} architectures trained {cfg.search_epochs} epochs each"),
        ("chosen architecture", r["best"].arch),
        ("accuracy (digits, val.)", f"{card['accuracy']:.4f} after {cfg.export_epochs} epochs"),
        ("predicted / measured", f"{card['predicted_latency_ms']:.3f} ms / {card['measured_latency_ms']:.3f} ms"),
        ("meets the budget", "yes" if card["meets_budget"] else "NO"),
        *_int8_rows(card),
        ("device speed", _speed_row(st.profiler.guard, card["speed_factor"])
         + f"; calibration models re-measured after export: {card['calibration_models_speed_factor']:.2f}x their "
           "calibration latency"),
        ("ONNX parity", f"max abs diff {card['parity_max_abs_diff']:.1e}"),
        ("time", f"{st.times['total_s']:.0f} s"),
        ("profile store", str(out / "profiles.sqlite")),
        ("predictor", str(out / "predictor")),
        ("search run", f"{r['run_dir']} (journal.sqlite, best.json, trials.csv, pareto.csv, pareto.png)"),
        ("exported model", f"{card.onnx_path} + {card.card_path.name}"),
        ("summary", str(out / "summary.json")),
    ]


def _int8_rows(card: Any) -> list[tuple[str, str]]:
    """An int8 export's accuracies and its speed against the fp32 model (none for other devices)."""
    q = card.get("int8")
    if not q or q.get("accuracy_int8") is None:
        return []
    return [("int8 vs fp32 accuracy", f"{q['accuracy_int8']:.4f} vs {q['accuracy_fp32']:.4f} (ONNX Runtime, "
                                      f"{q['validation_images']} val. images)"),
            ("int8 vs fp32 latency", f"{card['measured_latency_ms']:.3f} ms vs {card['fp32_latency_ms']:.3f} ms "
                                     f"({card['int8_speedup']:.2f}x)")]


#: the quickstart's smoke settings: tiny budgets and short timing (its numbers mean nothing)
SMOKE = {"space_args": {"resolution": 16, "width": 0.25, "classes": 10}, "sampled_ops": 5, "calibration_models": 5,
         "heldout_models": 2, "model_passes": 1, "search_budget": 2, "search_epochs": 1, "export_epochs": 1}


def quickstart(out: str | Path = "hwnas-quickstart", device: str | Device = "cpu-ort", *,
               max_time_per_op: float | None = None, smoke: bool = False, progress: Progress | None = None,
               message: Message | None = None, **options: Any) -> PipelineResult:
    """The main job, end to end on this machine: profile the ops of a small ProxylessNAS space,
    train and check a latency predictor, search under a latency budget with proxy training on
    digits, export the best model to ONNX, verify and measure it; everything under ``out`` (a rerun
    reuses what is stored). ``options`` are :class:`PipelineConfig` fields (``budget_ms``,
    ``search_budget``, ``op_passes``, ...); ``smoke`` uses tiny budgets (a test of the pipeline).
    Returns the summary (``.summary``) and the rows of its table (``.rows``)."""
    known = {f.name for f in dataclasses.fields(PipelineConfig)}
    bad = [k for k in options if k not in known]
    if bad:
        raise HwnasError(f"quickstart has no option {bad[0]!r}; its options: {', '.join(sorted(known))}")
    cfg = dataclasses.replace(PipelineConfig(), **{k: v for k, v in options.items() if v is not None})
    policy = timing_policy(max_time_per_op)
    if smoke:
        from hwnas.testing import FAST_POLICY

        cfg, policy = dataclasses.replace(cfg, **SMOKE), FAST_POLICY
    return run_pipeline(Path(out), get_device(device), cfg, policy, progress, message)
