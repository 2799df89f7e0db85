"""The progress bar of a long command (``chatbot index sync``, ``data synth``, ``index eval``,
``eval``) on stderr, where standard output stays the result alone.

On a terminal it is tqdm's bar, rewritten in place. Elsewhere (a log file, CI) a rewrite is a
carriage return that runs every state of the bar together, so there it is whole lines: the
first count shown, the count at each tenth of the way and at the end, and a detail
(``embedding 512/1843 chunks``) at most once every ``detail_every`` seconds.
"""

from __future__ import annotations

import sys
import time
from typing import Callable

import click


class ProgressBar:
    """``with ProgressBar("file") as bar: bar.count(done, total)``; nothing is shown for a
    command done within ``delay`` seconds, or at all with ``disable``."""

    def __init__(self, unit: str, *, delay: float = 2.0, disable: bool = False,
                 detail_every: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.unit, self.delay, self.disable = unit, delay, disable
        self.detail_every, self.clock = detail_every, clock
        self.started = clock()
        self.done = self.total = 0
        self.detail_shown_at: float | None = None
        self.line_shown = False  # off a terminal: a count's line printed yet
        self.terminal = sys.stderr.isatty()
        self.bar = None
        if self.terminal:
            from tqdm import tqdm

            self.bar = tqdm(total=0, unit=unit, delay=delay, file=sys.stderr, disable=disable)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc_info) -> None:
        if self.bar is not None:
            self.bar.close()

    def count(self, done: int, total: int) -> None:
        """``done`` of ``total`` units; any detail shown beside the bar is cleared."""
        before, self.done, self.total = self.done, done, total
        if self.bar is not None:
            self.bar.total = total
            self.bar.set_postfix_str("", refresh=False)
            self.bar.update(done - self.bar.n)
        elif self._shown() and total and (not self.line_shown or done == total
                                          or done * 10 // total > before * 10 // total):
            self.line_shown = True
            click.echo(f"{self.unit}s: {done}/{total}", err=True)

    def detail(self, text: str) -> None:
        """``text`` beside the count: what the current unit is taking so long at."""
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            if not self.bar.disable and self.bar.format_dict["elapsed"] >= self.delay:
                self.bar.refresh()
            return
        now = self.clock()
        if self._shown() and (self.detail_shown_at is None
                              or now - self.detail_shown_at >= self.detail_every):
            self.detail_shown_at = now
            click.echo(f"{self.unit}s: {self.done}/{self.total}, {text}", err=True)

    def _shown(self) -> bool:
        return not self.disable and self.clock() - self.started >= self.delay
