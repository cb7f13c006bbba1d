"""Progress for long jobs: a rich bar with rate and ETA on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

LOG_EVERY_S = 10.0


class JobProgress:
    """Counts finished units (ads, skills) against a known total; ``note`` carries extra live text."""

    def __init__(self, total: int, unit: str, description: str, console: Console | None = None):
        self.total = total
        self.unit = unit
        self.description = description
        self.console = console or Console(stderr=True)
        self.done = 0
        self.skipped = 0
        self.started = time.perf_counter()
        self.last_log = self.started
        self.interactive = self.console.is_terminal
        self._bar: Progress | None = None

    def __enter__(self) -> "JobProgress":
        if self.interactive:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, rate="")
        return self

    def advance(self, n: int, skipped: bool = False) -> None:
        """``skipped`` units (finished by an earlier run) move the bar but not the rate."""
        self.done += n
        if skipped:
            self.started = time.perf_counter()
            self.skipped += n
        rate = self.rate()
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, rate=f"{rate:,.1f} {self.unit}/s")
        elif time.perf_counter() - self.last_log >= LOG_EVERY_S or self.done >= self.total:
            self.last_log = time.perf_counter()
            print(
                f"{self.description}: {self.done}/{self.total} {self.unit} ({rate:,.1f} {self.unit}/s)",
                file=sys.stderr,
                flush=True,
            )

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.started
        fresh = self.done - self.skipped
        return fresh / elapsed if elapsed > 0 else 0.0

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
