"""The result of an offline eval: in memory (:class:`EvalResult`, what the reports render) and on
disk (:class:`EvalRecord`, ``metrics.json``, for machines and later runs).

Its own module so that the evaluation, which produces it, and the reports, which render it, do
not import each other.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from chatbot.errors import InputError
from index import jsonfile
from training.eval.evalset import EvalItem
from training.eval.generations import GenerationRun
from training.eval.paired_stats import Interval, PairedComparison

METRICS_FILE = "metrics.json"
SCHEMA_VERSION = 1
RERUN = "run `chatbot eval` again to rewrite it"


@dataclass(frozen=True)
class Gate:
    metric: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    candidate: str
    baseline: str
    passed: bool
    difference: Interval | None
    message: str


@dataclass
class EvalResult:
    name: str
    data: str
    items: list[EvalItem]
    variants: list[str]
    run: GenerationRun
    scores: dict[str, list[dict]]
    """Per variant, per item (in item order): metric name -> value or None."""
    summaries: dict[str, dict[str, tuple[Interval, int]]]
    comparisons: dict[str, dict[str, PairedComparison]]
    """Per candidate, per metric: candidate vs the baseline (``variants[0]``)."""
    min_effect: float
    out_dir: Path | None = None
    gates: list[GateResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def baseline(self) -> str:
        return self.variants[0]

    @property
    def candidates(self) -> list[str]:
        return self.variants[1:]

    def record(self) -> EvalRecord:
        return EvalRecord(
            name=self.name, data=self.data, items=len(self.items), variants=self.variants,
            baseline=self.baseline, settings=self.run.settings, min_effect=self.min_effect,
            generation={"generated": self.run.generated, "reused": self.run.reused,
                        "seconds": round(self.run.seconds, 1)},
            summaries={v: {m: {**asdict(i), "n": n} for m, (i, n) in metrics.items() if n}
                       for v, metrics in self.summaries.items()},
            comparisons={c: {m: asdict(comp) for m, comp in metrics.items()}
                         for c, metrics in self.comparisons.items()},
            warnings=self.warnings,
            gates=[{"gate": str(g.gate), "candidate": g.candidate, "passed": g.passed,
                    "message": g.message} for g in self.gates],
            per_item=[{"id": item.id, **{v: self.scores[v][i] for v in self.variants}}
                      for i, item in enumerate(self.items)])


@dataclass(frozen=True)
class EvalRecord:
    """``metrics.json``: an eval's settings, summaries, comparisons, gates and per-item scores."""

    name: str
    data: str
    items: int
    variants: list[str]
    baseline: str
    settings: dict
    min_effect: float
    generation: dict
    summaries: dict
    comparisons: dict
    warnings: list[str] = field(default_factory=list)
    gates: list[dict] = field(default_factory=list)
    per_item: list[dict] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def load(cls, path: Path) -> EvalRecord:
        data = jsonfile.read(path, InputError, RERUN)
        version = data.pop("schema_version", 1)  # written before versions were recorded: 1
        jsonfile.check_version(path, version, SCHEMA_VERSION, InputError, RERUN)
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def save(self, path: Path) -> Path:
        jsonfile.write_atomic(path, self.to_json())
        return path

    def to_json(self) -> dict:
        return _finite(asdict(self))


def _finite(value):
    """``value`` with NaN and infinite numbers as ``None`` (an interval undefined at one item):
    ``NaN`` is no JSON, and other languages' readers refuse it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
