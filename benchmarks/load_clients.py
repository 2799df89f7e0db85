"""Closed-loop load: N clients, each asking again as soon as its answer ends (not a benchmark
itself; the concurrency benchmarks drive it).

This is how a load-testing tool measures a server in steady state: clients start one after
another over a ramp (as locust's spawn rate does), so they are not all in the same phase of their
answers, and only the window after the ramp counts. Throughput is the answers finished inside
the window; time to first token is taken from the requests started inside it.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

Ask = Callable[[int, int], Iterator[str]]
"""``ask(client, n)``: the text pieces of client ``client``'s ``n``-th answer."""


@dataclass
class Answer:
    started: float
    first_piece: float | None = None
    finished: float | None = None
    text: str = ""
    error: str | None = None


@dataclass
class LoadResult:
    clients: int
    window_s: float
    answers: list[Answer] = field(default_factory=list)
    window_start: float = 0.0

    def finished_in_window(self) -> list[Answer]:
        end = self.window_start + self.window_s
        return [a for a in self.answers
                if a.error is None and a.finished is not None
                and self.window_start <= a.finished <= end]

    def started_in_window(self) -> list[Answer]:
        return [a for a in self.answers
                if a.first_piece is not None and a.started >= self.window_start]

    @property
    def per_minute(self) -> float:
        return len(self.finished_in_window()) * 60 / self.window_s

    def ttft(self, q: int) -> float:
        return percentile([a.first_piece - a.started for a in self.started_in_window()], q)

    def failures(self) -> list[str]:
        return [a.error for a in self.answers if a.error is not None]


def closed_loop(ask: Ask, clients: int, window_s: float, ramp_s: float) -> LoadResult:
    """Run ``clients`` closed-loop clients: client i starts at ``i * ramp_s / clients``; the
    window opens at ``ramp_s`` and closes ``window_s`` later, when every client closes the
    answer it is reading (which stops it on the server) and stops."""
    result = LoadResult(clients, window_s)
    begin = time.perf_counter()
    result.window_start = begin + ramp_s
    closes = result.window_start + window_s
    lock = threading.Lock()

    def client(index: int) -> None:
        time.sleep(index * ramp_s / clients)
        n = 0
        while time.perf_counter() < closes:
            answer = Answer(time.perf_counter())
            with lock:
                result.answers.append(answer)
            pieces = ask(index, n)
            try:
                for piece in pieces:
                    if answer.first_piece is None and piece:
                        answer.first_piece = time.perf_counter()
                    answer.text += piece
                    if time.perf_counter() > closes:
                        break
                else:
                    answer.finished = time.perf_counter()
            except Exception as exc:  # counted and reported, never hidden
                answer.error = repr(exc)
            finally:
                pieces.close()
            n += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return result


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]
