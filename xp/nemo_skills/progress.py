"""Progress display: a rich bar with running accuracy and TPF on a terminal; on a plain log
(SLURM, pipes) one line every 50 samples instead, since a live bar does not render there."""

from __future__ import annotations

from typing import Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from xp.nemo_skills.registry import BenchmarkSpec
from xp.nemo_skills.runner import RunningStats

LOG_EVERY = 50


class ProgressReporter:
    def __init__(self, console: Optional[Console] = None):
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("acc {task.fields[acc]:.1f}%  TPF {task.fields[tpf]:.2f}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=self.console,
                                 disable=not self.live)
        self._tasks: dict[str, tuple[int, RunningStats, int]] = {}

    def __enter__(self) -> "ProgressReporter":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def print(self, text: str) -> None:
        self.console.print(text, soft_wrap=True)  # one log line per message, never wrapped

    def start(self, spec: BenchmarkSpec, total: int, stats: RunningStats, resumed: int = 0) -> None:
        task = self.progress.add_task(spec.name, total=total, acc=stats.accuracy, tpf=stats.tpf)
        self._tasks[spec.name] = (task, stats, total)
        if resumed:
            self.print(f"{spec.name}: resuming, {resumed} samples already generated")

    def advance(self, spec: BenchmarkSpec, row: dict) -> None:
        task, stats, total = self._tasks[spec.name]
        stats.add(spec, row)
        self.progress.update(task, advance=1, acc=stats.accuracy, tpf=stats.tpf)
        if not self.live and stats.done % LOG_EVERY == 0:
            self.print(f"{spec.name}: {stats.done} done, acc {stats.accuracy:.1f}% TPF {stats.tpf:.2f}")

    def stop(self, spec: BenchmarkSpec) -> None:
        task, stats, _ = self._tasks.pop(spec.name)
        self.progress.remove_task(task)
        if stats.errors:
            self.print(f"[yellow]{spec.name}: {stats.errors} requests were refused by the server "
                       "(recorded with an `error` field, graded wrong)[/yellow]")
