"""The command line's rendering helpers (rich): consoles, JSON, and progress bars that also print
plain lines where the console is not a terminal."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["out_console", "err_console", "print_json", "LogProgress", "progress_bar", "StageBars", "hms", "say_to",
           "warn_governor"]


def out_console() -> Console:
    return Console(soft_wrap=True, width=200 if not sys.stdout.isatty() else None)


def err_console() -> Console:
    return Console(stderr=True, soft_wrap=True)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def hms(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}"


class LogProgress(Progress):
    """A rich progress bar that, where its console is not a terminal (a log file, CI, ``nohup``),
    where rich draws nothing until the end, prints a plain line per task at most every
    ``every_s`` seconds and when the task completes: done/total, elapsed, ETA."""

    def __init__(self, *columns: Any, every_s: float = 10.0, console: Console | None = None,
                 disable: bool = False, **kwargs: Any) -> None:
        console = console or Console()
        # rich's own display only on a terminal: elsewhere it would print its last frame at the
        # end, a blank line where no task started (a job that stopped at bad input)
        self._log = not disable and not console.is_terminal
        super().__init__(*columns, console=console, disable=disable or self._log, **kwargs)
        self._every_s = every_s
        self._last: dict[Any, float] = {}

    def update(self, task_id: Any, **kwargs: Any) -> None:  # type: ignore[override]
        super().update(task_id, **kwargs)
        if not self._log:
            return
        task = self._tasks[task_id]
        now = time.monotonic()
        if not task.finished and now - self._last.get(task_id, -1e9) < self._every_s:
            return
        if task.finished and self._last.get(task_id) == float("inf"):
            return
        self._last[task_id] = float("inf") if task.finished else now
        eta = task.time_remaining
        line = (f"{task.description}: {task.completed:g}/{task.total:g}, elapsed {hms(task.elapsed or 0)}"
                f"{'' if task.finished or eta is None else f', ETA {hms(eta)}'}")
        current = task.fields.get("current")
        self.console.print(f"{line}  {current}" if current else line, markup=False, highlight=False)


class StageBars:
    """A jobs :class:`~hwnas.jobs.Progress` callback drawing one bar per stage."""

    def __init__(self, prog: Progress) -> None:
        self.prog, self.tasks = prog, {}

    def __call__(self, stage: str, done: int, total: int, current: str = "") -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.prog.add_task(stage, total=total, current="")
        self.prog.update(self.tasks[stage], completed=done, total=total, current=current)


@contextmanager
def progress_bar(console: Console, disable: bool = False) -> Iterator[StageBars]:
    """Bars with done/total, elapsed and ETA, one per stage the job reports."""
    with LogProgress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        TextColumn("{task.fields[current]}"), console=console, transient=False, disable=disable,
    ) as prog:
        yield StageBars(prog)


def say_to(console: Console):  # noqa: ANN201
    """A jobs message callback printing to ``console``: warnings in yellow, the rest plain."""
    def say(text: str) -> None:
        if text.startswith("warning: "):
            console.print(f"[yellow]warning:[/] {text[9:]}", highlight=False)
        else:
            console.print(text, highlight=False)
    return say


def warn_governor(console: Console) -> str | None:
    """Warn when the CPU frequency governor makes timings unreliable; returns the warning."""
    from hwnas.profilers import governor_warning

    w = governor_warning()
    if w:
        console.print(f"[yellow]warning:[/] {w}")
    return w
