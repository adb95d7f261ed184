"""The public Python API: only names in ``hwnas.__all__`` (and subpackages' ``__all__``)."""

from __future__ import annotations

import importlib

import pytest

import hwnas


def test_every_public_name_resolves() -> None:
    for name in hwnas.__all__:
        assert getattr(hwnas, name) is not None, name
    for pkg in ("hwnas.devices", "hwnas.profilers", "hwnas.latency_models", "hwnas.search", "hwnas.jobs",
                "hwnas.deploy", "hwnas.search.spaces", "hwnas.search.strategies"):
        mod = importlib.import_module(pkg)
        missing = [n for n in mod.__all__ if not hasattr(mod, n)]
        assert not missing, (pkg, missing)
    with pytest.raises(AttributeError):
        hwnas.no_such_name  # noqa: B018


def _toy_accuracy(arch) -> float:  # noqa: ANN001
    """A deterministic stand-in for proxy training (orchestration only; never used for a number)."""
    return 0.5 + 0.01 * sum(c * (i + 1) for i, c in enumerate(arch.choices)) % 0.5


def _search(pred, storage, **kw):  # noqa: ANN001, ANN202
    return hwnas.create_search("nb201", "cpu-ort", target_ms=50.0, predictor=pred, strategy="evolution",
                               evaluator=_toy_accuracy, storage=storage, strategy_params={"population_size": 4,
                                                                                          "tournament_size": 2}, **kw)


@pytest.mark.slow
def test_search_ask_tell_optimize_resume_and_export(trained, tmp_path) -> None:
    pred = hwnas.load_predictor("cpu-ort", path=trained / "predictor")
    assert pred.path_ == trained / "predictor"
    s = _search(pred, tmp_path / "run")
    t = s.ask()
    assert t.state == "pending" and t.accuracy is None and t.latency_ms > 0 and t.settings["space"] == "nb201"
    t2 = s.ask()  # several trials may be pending at once (parallel workers); never the same architecture
    assert t2.arch != t.arch and {p.number for p in s.pending_trials} == {t.number, t2.number}
    s.tell(t2, _toy_accuracy(s.space.from_string(t2.arch)))  # told in completion order
    done = s.tell(t, _toy_accuracy(s.space.from_string(t.arch)))
    assert done.state == "complete" and done.accuracy == _toy_accuracy(s.space.from_string(t.arch))
    assert not s.pending_trials
    with pytest.raises(hwnas.HwnasError, match="pending"):
        s.tell(t, 0.5)  # told twice
    s.optimize(6)
    first = [x.arch for x in s.trials]
    assert len(first) == 6 and len(set(first)) == 6
    s.close()
    again = _search(pred, tmp_path / "run")  # the same script rerun: continues the stored search
    assert [x.arch for x in again.trials] == first
    again.optimize(10)
    assert len(again.trials) == 10 and [x.arch for x in again.trials][:6] == first
    memory = _search(pred, None)  # uninterrupted, in memory: the same draws
    memory.optimize(10)
    assert [x.arch for x in memory.trials] == [x.arch for x in again.trials]
    best = again.best_trial
    assert best is not None and best.latency_ms <= 50.0
    assert best.accuracy == max(x.accuracy for x in again.trials if x.latency_ms <= 50.0)
    front = again.best_trials
    assert front and all(a.latency_ms <= b.latency_ms for a, b in zip(front, front[1:]))
    again.close()
    with pytest.raises(hwnas.HwnasError, match="resume"):
        _search(pred, tmp_path / "run", resume=False)
    # no predictor given: the one the trial's search used (its settings name it)
    card = hwnas.export(best, "cpu-ort", tmp_path / "model" / "model.onnx", train=False)
    assert card["arch"] == best.arch and card.onnx_path.exists() and card["predicted_latency_ms"] > 0
    assert card["measured_latency_ms"] > 0 and card["budget_ms"] == 50.0
    before = card.onnx_path.read_bytes()
    with pytest.raises(hwnas.HwnasError, match="overwrite"):
        hwnas.export(best, "cpu-ort", tmp_path / "model" / "model.onnx", train=False, predictor=pred)
    assert card.onnx_path.read_bytes() == before
    again = hwnas.export(best, "cpu-ort", tmp_path / "model" / "model.onnx", train=False, predictor=pred, overwrite=True)
    assert again["measured_latency_ms"] > 0 and again.card_path.exists()  # asked: replaced
    # a hard limit below the target (a safety margin): nothing predicted over it is proposed
    tight = _search(pred, None, limit_ms=best.latency_ms)
    tight.optimize(4)
    assert tight.limit_ms == best.latency_ms and all(t.latency_ms <= best.latency_ms for t in tight.trials)


@pytest.mark.slow
def test_bad_arguments_name_the_argument(trained) -> None:
    pred = hwnas.load_predictor("cpu-ort", path=trained / "predictor")
    for kw, msg in (({"target_ms": 0}, "target_ms"), ({"target_ms": float("nan")}, "target_ms"),
                    ({"target_ms": 5, "verify": -1}, "verify"), ({"target_ms": 5, "qualify_band": 2}, "qualify_band"),
                    ({"target_ms": 5, "epochs": 0}, "epochs"), ({"target_ms": 5, "colour": 1}, "colour"),
                    ({"target_ms": 5, "strategy": "annealing"}, "Known strategies"),
                    ({"target_ms": 5, "strategy": "proxyless"}, r"strategy takes an ask/tell strategy \(bo, .*proxyless "
                     "is a search of its own")):
        with pytest.raises(hwnas.HwnasError, match=msg):
            hwnas.create_search("nb201", "cpu-ort", predictor=pred, evaluator=_toy_accuracy, **kw)
    with pytest.raises(hwnas.HwnasError, match="has no parameter 'population'"):
        hwnas.create_search("nb201", "cpu-ort", target_ms=5, predictor=pred, evaluator=_toy_accuracy,
                            strategy="evolution", strategy_params={"population": 3})
    with pytest.raises(hwnas.HwnasError, match="Known devices"):
        hwnas.get_device("cpu-orrt")
