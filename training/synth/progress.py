"""A synthesis run's work dir: what is done (so a rerun continues) and every teacher call.

``<data_dir>/datasets/.synth-NAME/`` (hidden from ``chatbot data list``) holds
``progress.jsonl``: a header line (the teacher, seed and questions per chunk the run was started
with) then one line per finished chunk with its items, kept or rejected; and
``teacher_calls.jsonl``: one line per call with its exact messages, response, seconds and what
became of it. A line is appended once its chunk is finished, so a run killed at any moment
loses at most the chunk in progress; a torn last line is ignored.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from index.jsonfile import jsonl_lines
from training.errors import DataError

PROGRESS = "progress.jsonl"
CALLS = "teacher_calls.jsonl"


@dataclass(frozen=True)
class Item:
    """One generated question with its answer and what the filters said of it."""

    chunk_id: str
    source: str
    question: str
    answer: str = ""
    reason: str | None = None
    """Why it was rejected; ``None``: kept."""
    support: float | None = None

    @property
    def kept(self) -> bool:
        return self.reason is None


def work_dir(datasets_root: Path, name: str) -> Path:
    return datasets_root / f".synth-{name}"


class Progress:
    """The finished chunks of a run, read back on start; appended to as chunks finish."""

    def __init__(self, directory: Path, run: dict) -> None:
        self.directory = directory
        self.done: dict[str, list[Item]] = {}
        path = directory / PROGRESS
        lines = jsonl_lines(path.read_text(encoding="utf-8")) if path.is_file() else []
        records = [_parse(line) for line in lines]
        if records and records[0] is not None and records[0].get("run") != run:
            _start_over_unless_work_is_lost(directory, records[0].get("run"), records[1:])
            records = []
        for record in records[1:]:
            if record is not None and "chunk_id" in record:
                self.done[record["chunk_id"]] = [Item(**item) for item in record["items"]]
        if not records or records[0] is None:
            directory.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"run": run}) + "\n", encoding="utf-8")

    def finish(self, chunk_id: str, items: list[Item]) -> None:
        _append(self.directory / PROGRESS,
                {"chunk_id": chunk_id, "items": [asdict(item) for item in items]})
        self.done[chunk_id] = items

    def log_call(self, record: dict) -> None:
        _append(self.directory / CALLS, record)


def _start_over_unless_work_is_lost(directory: Path, started: dict, records: list) -> None:
    """Another run's settings are refused while its finished chunks kept items; one that kept
    none (a teacher that never answered, or whose every item the filters rejected) holds nothing
    a rerun could use and gives way to the new run."""
    chunks = [record for record in records if record is not None and "chunk_id" in record]
    kept = sum(item.get("reason") is None for record in chunks for item in record["items"])
    if kept:
        teacher = started.get("teacher") or {}
        raise DataError(
            f"{directory} holds an earlier run ({len(chunks)} chunk(s) done, {kept} item(s) "
            f"kept) started with --teacher {teacher.get('variant')} --seed "
            f"{started.get('seed')} --questions-per-chunk {started.get('questions_per_chunk')}; "
            "rerun with those (and the same teacher templates) to continue it, or delete that "
            "folder to start over")
    (directory / CALLS).unlink(missing_ok=True)


def _parse(line: str) -> dict | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _append(path: Path, record: dict) -> None:
    """Append one JSON line, on a fresh line if a killed run left the last one torn."""
    torn = False
    if path.is_file() and path.stat().st_size:
        with path.open("rb") as existing:
            existing.seek(-1, 2)
            torn = existing.read(1) != b"\n"
    with path.open("a", encoding="utf-8") as out:
        out.write(("\n" if torn else "") + json.dumps(record, ensure_ascii=False) + "\n")
