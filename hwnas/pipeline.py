"""The end-to-end job: profile -> predictor -> latency-constrained search -> export -> measure.

Everything goes under one directory; a rerun reuses the profile store (ops and whole models
already measured under this fingerprint are not measured again) and the finished search journal.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.errors import HwnasError
from hwnas.profilers._drift import DriftPolicy

__all__ = ["PipelineConfig", "PipelineResult", "run_pipeline", "search_budget", "MIN_MARGIN"]

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


def _spread_archs(space: Any, raw_ms: Callable[[list[Any]], np.ndarray], n: int, seed: int,
                  pool: int = 2000) -> list[Any]:
    """``n`` distinct architectures spread evenly over the space's range of predicted latency.

    Uniform samples of a space cluster around its middle (in ``proxyless`` about 3 of 21 layers are
    skipped), while a tight budget makes the search pick architectures from the fast tail (many
    skipped layers): calibrating on uniform samples extrapolates there. The pool mixes uniform samples
    with samples whose probability of skipping a layer is drawn from U(0, 0.9), and the architectures
    are taken at evenly spaced quantiles of their raw (uncalibrated) predicted latency, the extremes
    included; the held-out models come from the quantiles in between.
    """
    rng = np.random.default_rng(seed)
    archs: list[Any] = []
    for i in range(pool):
        if i % 2 == 0:
            archs.append(space.sample(rng))
            continue
        p_zero = rng.uniform(0.0, 0.9)
        choices = []
        for d, allowed in zip(space.decisions, space.allowed):
            zero = [j for j in allowed if d.options[j] == "zero"]
            rest = [j for j in allowed if d.options[j] != "zero"] or zero
            choices.append(zero[0] if zero and rng.random() < p_zero else rest[int(rng.integers(len(rest)))])
        archs.append(space.make(choices))
    archs = list(dict.fromkeys(archs))
    ms = raw_ms(archs)
    order = np.argsort(ms, kind="stable")
    out: list[Any] = []
    for q in np.linspace(0, len(order) - 1, n):
        i = int(round(q))
        while archs[order[i]] in out:  # the nearest not yet taken
            i = i + 1 if i + 1 < len(order) else 0
        out.append(archs[order[i]])
    return out


def _space_models(space: Any, archs: Sequence[Any]) -> list[tuple[str, Any, Any]]:
    """The architectures' ONNX graphs (fixed weight seeds), named ``<space>-<i>``: the space's own
    ONNX builder where its modules have one (``to_onnx``), else the exporter's graph."""
    import torch

    from hwnas.export import _to_onnx

    out = []
    for i, arch in enumerate(archs):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(i)
            module = space.build_module(arch).eval()
            model = (module.to_onnx(f"arch{i}") if hasattr(module, "to_onnx")
                     else _to_onnx(module, space.input_shape(arch), False))
        out.append((f"{space.name}-{i}", arch, model))
    return out


def run_pipeline(out: Path, device: Any, config: PipelineConfig = PipelineConfig(), policy: Any = None,
                 progress: Callable[[str, int, int], None] | None = None,
                 log: Callable[[str], None] | None = None) -> PipelineResult:
    """Run every stage; ``progress(stage, done, total)`` reports, ``log`` tells what is happening."""
    from hwnas.devices import fingerprint
    from hwnas.export import ArchSpec, export_architecture
    from hwnas.latency_models import LatencyPredictor
    from hwnas.latency_models._decompose import expand_kernels
    from hwnas.latency_models._sampling import sample_configs
    from hwnas.latency_models._training import (calibrate_on, default_op_time, evaluate, fit_model, measure_models,
                                                training_data)
    from hwnas.profilers import Profiler, ProfileStore
    from hwnas.search import Journal, Limits, MnasReward, create_strategy, run_search
    from hwnas.search._evaluators import ProxyTrainingEvaluator
    from hwnas.search._run import best_and_front, feasibility, write_run
    from hwnas.search.spaces import ProxylessSpace

    say = log or (lambda msg: None)
    tick = progress or (lambda stage, done, total: None)
    t_start = time.perf_counter()
    times: dict[str, float] = {}
    out.mkdir(parents=True, exist_ok=True)
    space = ProxylessSpace(**config.space_args).restrict(device.constraints)
    fp = fingerprint(device)
    with ProfileStore(out / "profiles.sqlite") as store:
        profiler = Profiler(device, policy, store, drift=config.drift, auto_pin=config.drift is not None)
        # 1. profile: every kernel the space can run, plus samples from the priors
        t0 = time.perf_counter()
        kernels = list(dict.fromkeys(k for layer in space.layer_options() for choice in layer
                                     for k in expand_kernels(choice)))
        ops = kernels + sample_configs(config.sampled_ops, seed=config.seed)
        before = len(store.done_keys(fp.id))
        say(f"profiling {len(ops)} op configurations ({len(kernels)} kernels of the space)")
        n_ops = [0, len(ops)]

        def op_start(todo: int, skipped: int) -> None:
            n_ops[:] = [skipped, todo + skipped]  # todo counts every pass
            tick("profile ops", skipped, n_ops[1])

        def op_done(m: Any) -> None:
            n_ops[0] += 1
            tick("profile ops", n_ops[0], n_ops[1])

        run = profiler.profile_ops(ops, on_start=op_start, on_done=op_done, passes=config.op_passes)
        measured_now = len(store.done_keys(fp.id)) - before
        repeat = None
        if config.recheck > 0:
            n_again = [0]

            def again_done(*_: Any) -> None:
                n_again[0] += 1
                tick("repeat check", n_again[0], config.recheck)

            repeat = profiler.recheck(config.recheck, seed=config.seed, on_done=again_done)
            say(f"repeat check: {repeat.summary()}")
            if repeat.warning():
                say(f"warning: {repeat.warning()}")
        times["profile_s"] = time.perf_counter() - t0
        # 2. the op-level predictor (LightGBM on the store)
        t0 = time.perf_counter()
        op_time = config.op_time or default_op_time(profiler)
        configs, y = training_data(store, fp, op_time)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = LatencyPredictor(fit_model("lightgbm", configs, y, fp, op_time))
        times["predictor_s"] = time.perf_counter() - t0
        # 3. whole models of the space spread over its predicted-latency range: calibration and a
        # held-out check (interleaved: calibration at the quantiles 0, 1/(n-1), ..., 1)
        t0 = time.perf_counter()
        n_cal, n_held = config.calibration_models, config.heldout_models
        n_models = n_cal + n_held
        raw_table = raw.layer_table(space.layer_options())
        spread = _spread_archs(space, lambda a: raw_table.predict(np.array([space.layer_indices(x) for x in a])),
                               n_models, config.seed + 100)
        cal_idx = sorted({int(round(q)) for q in np.linspace(0, n_models - 1, n_cal)})
        held_idx = [i for i in range(n_models) if i not in cal_idx]
        models = _space_models(space, [spread[i] for i in cal_idx + held_idx])
        say(f"measuring {n_models} whole models spread over the space's latency range ({len(held_idx)} held out), "
            f"{config.model_passes} passes, the fastest kept")
        done = [0]

        def model_done(name: str, ms: float) -> None:
            done[0] += 1
            tick("whole models", done[0], n_models * config.model_passes)

        measured = measure_models(profiler, [(n, m) for n, _, m in models], model_done, passes=config.model_passes)
        tick("whole models", n_models * config.model_passes, n_models * config.model_passes)  # reused: one call each
        times["models_s"] = time.perf_counter() - t0
        # 4. calibrate on the first models, check on the rest
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            predictor = calibrate_on(raw, measured[: len(cal_idx)])
            held = measured[len(cal_idx):]
            metrics, held_pred = evaluate(predictor, held)
        pred_dir = predictor.save(out / "predictor")
        times["predictor_s"] += time.perf_counter() - t0
        under = [m.latency_ms / p - 1 for m, p in zip(held, held_pred)]
        # at least 15%: a handful of held-out models cannot show the tail (measured/predicted of the
        # exported models reached 1.13 where the held-out models' MAPE was 1.7%, BENCHMARKS.md)
        margin = float(np.clip(max(under, default=0.0), MIN_MARGIN, 0.3))
        # 5. the budget and the search
        rng = np.random.default_rng(config.seed)
        probe = list(dict.fromkeys(space.sample(rng) for _ in range(500)))
        table = raw_table.with_calibration(predictor.calibration)
        probe_ms = table.predict(np.array([space.layer_indices(a) for a in probe]))
        budget, limit, raised = search_budget(probe_ms, margin, config.budget_ms, config.budget_quantile)
        if raised:
            say(f"the budget is raised to {budget:.3f} ms: the {100 * config.budget_quantile:.0f}% quantile less the "
                f"{100 * margin:.0f}% safety margin would leave the search almost nothing of the space")
        say(f"searching: budget {budget:.3f} ms, hard limit {limit:.3f} ms (safety margin {100 * margin:.1f}%: "
            f"the largest under-prediction on the held-out models, at least {100 * MIN_MARGIN:.0f}%)")
        t0 = time.perf_counter()
        cache: dict[Any, float] = dict(zip(probe, probe_ms))

        def latency(arch: Any) -> float:
            if arch not in cache:
                cache[arch] = float(table.predict(np.array([space.layer_indices(arch)]))[0])
            return cache[arch]

        run_dir = out / "run"
        settings = {"device": device.name, "space": space.name, "space_args": config.space_args,
                    "strategy": config.strategy, "strategy_params": {}, "seed": config.seed, "target_ms": budget,
                    "reward": "hard", "limit_ms": limit, "evaluator": "proxy", "epochs": config.search_epochs,
                    "dataset": config.dataset, "resolution": config.space_args.get("resolution"),
                    "predictor": str(pred_dir)}
        journal = Journal(run_dir / "journal.sqlite", settings, resume=True)
        strategy = create_strategy(config.strategy, space, seed=config.seed,
                                   feasible=feasibility(space, Limits(limit), latency))
        evaluator = ProxyTrainingEvaluator(space, config.dataset, config.search_epochs,
                                           config.space_args.get("resolution"), seed=config.seed)
        trials = run_search(space, strategy, evaluator, latency, MnasReward(budget, 0.0, -1.0), config.search_budget,
                            journal, on_trial=lambda t, n: tick("search", n, config.search_budget), limit_ms=limit)
        journal.close()
        best, front = best_and_front(trials, limit)
        write_run(run_dir, space, trials, best, front, settings, budget, predictor)
        import pandas as pd

        pd.DataFrame({"model": [m.name for m in held], "measured_ms": [m.latency_ms for m in held],
                      "predicted_ms": held_pred}).to_csv(run_dir / "predictor_heldout.csv", index=False)
        times["search_s"] = time.perf_counter() - t0
        if best is None:
            raise HwnasError("the search found no architecture within the limit")
        # 6. export the best, measure it
        t0 = time.perf_counter()
        say(f"exporting {best.arch}: training {config.export_epochs} epochs, ONNX, parity, measuring")
        tick("export", 0, 1)
        spec = ArchSpec(space.name, best.arch, dict(config.space_args), best.accuracy, budget, config.dataset,
                        config.space_args.get("resolution"))
        exp = export_architecture(spec, device, run_dir / "model" / "model.onnx", predictor, config.export_epochs,
                                  True, policy=policy, store=store, seed=config.seed, drift=config.drift)
        # the device's state now against when the calibration models were measured: the same
        # models again, right after the export's measurement (not stored), so that a device that
        # changed speed can be told apart from a prediction error
        now = [profiler.profile_model(m.onnx, name=m.name, breakdown_runs=0, record=False).latency_ms
               for m in measured[: len(cal_idx)]]
        model_factor = float(np.median([a / m.latency_ms for a, m in zip(now, measured[: len(cal_idx)])]))
        exp.card["calibration_models_speed_factor"] = model_factor
        exp.card_path.write_text(json.dumps(exp.card, indent=2, default=str) + "\n")
        tick("export", 1, 1)
        times["export_s"] = time.perf_counter() - t0
    card = exp.card
    times["total_s"] = time.perf_counter() - t_start
    summary = {
        "device": device.name, "fingerprint": fp.id, "space": f"proxyless {config.space_args}",
        "ops_profiled": len(ops), "ops_measured_now": measured_now, "ops_reused": len(run.skipped),
        "whole_models": n_models, "op_time": op_time, "predictor_heldout": metrics, "safety_margin": margin,
        "budget_ms": budget, "budget_raised": raised, "limit_ms": limit, "search_trials": len(trials), "best_arch": best.arch,
        "search_accuracy": best.accuracy, "accuracy": card["accuracy"],
        "predicted_latency_ms": card["predicted_latency_ms"], "measured_latency_ms": card["measured_latency_ms"],
        "meets_budget": card["meets_budget"], "parity_max_abs_diff": card["parity_max_abs_diff"],
        "speed_factor_at_export": card["speed_factor"],
        "calibration_models_speed_factor": model_factor,
        "speed_checks": profiler.guard.summary() if profiler.guard else None,
        "repeat_check": repeat.to_dict() if repeat is not None else None,
        "pinned_cpus": list(profiler.pinned) if profiler.pinned else None,
        "seconds": {k: round(v, 1) for k, v in times.items()},
        "paths": {"profile_store": str(out / "profiles.sqlite"), "predictor": str(pred_dir), "run": str(run_dir),
                  "onnx": str(exp.onnx_path), "model_card": str(exp.card_path)},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    rows = [
        ("device", f"{device.name} ({fp.id})"),
        ("op configurations", f"{len(ops)} ({measured_now} measured now, {len(run.skipped)} reused from the store)"),
        ("op repeatability", repeat.summary() + ("" if repeat.ok else " (POOR: see the warning)")
         if repeat is not None else "not checked"),
        ("predictor on held-out models", f"MAPE {100 * metrics['mape']:.1f}%, within +-10% {100 * metrics['acc10']:.0f}% "
                                         f"({len(held)} models)"),
        ("latency budget", f"{budget:.3f} ms (search limit {limit:.3f} ms" + ("; raised to leave the search room" if raised else "") + ")"),
        ("search", f"{config.strategy}, {len(trials)} architectures trained {config.search_epochs} epochs each"),
        ("chosen architecture", best.arch),
        ("accuracy (digits, val.)", f"{card['accuracy']:.4f} after {config.export_epochs} epochs"),
        ("predicted / measured", f"{card['predicted_latency_ms']:.3f} ms / {card['measured_latency_ms']:.3f} ms"),
        ("meets the budget", "yes" if card["meets_budget"] else "NO"),
        ("device speed", _speed_row(profiler.guard, card["speed_factor"])
         + f"; calibration models re-measured after export: {model_factor:.2f}x their calibration latency"),
        ("ONNX parity", f"max abs diff {card['parity_max_abs_diff']:.1e}"),
        ("time", f"{times['total_s']:.0f} s"),
        ("profile store", str(out / "profiles.sqlite")),
        ("predictor", str(pred_dir)),
        ("search run", f"{run_dir} (journal.sqlite, best.json, trials.csv, pareto.csv, pareto.png)"),
        ("exported model", f"{exp.onnx_path} + {exp.card_path.name}"),
        ("summary", str(out / "summary.json")),
    ]
    return PipelineResult(rows, summary)
