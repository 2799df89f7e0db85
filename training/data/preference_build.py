"""Build a preference dataset (KTO rows, DPO pairs) from the conversation log.

The signals of ``training.data.preference_log`` go through the SFT build's own PII step and
near-duplicate pass (per kind of row, so a thumbed-down answer never hides the correction of
the same question) and its leak-free split by session; ``training.data.preference`` writes
them. The report states the counts and the balance of desirable and undesirable rows.

    chatbot data build --kind preference --name prefs-v1
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from training.data import dataset as store
from training.data.build import dataset_path
from training.data.dedupe import dedupe, signatures, split
from training.data.preference import (FILES, KIND, DPOPair, KTORow, save_preference_rows)
from training.data.preference_log import read_signals
from training.data.settings import DataSettings
from training.data.steps import scrub_pii
from training.data.transcripts import Conversation
from training.errors import DataError


@dataclass(frozen=True)
class PreferenceSummary:
    """What a preference build read and wrote: printed, ``--json``, and in the manifest."""

    name: str
    path: str
    report: str
    created_at: str
    answers: int
    """Finished answers in the log."""
    kto: dict[str, int]
    """Rows per split (``train``, ``validation``)."""
    dpo: dict[str, int]
    desirable: int
    undesirable: int
    sources: dict[str, int]
    """Kept rows and pairs by origin: ``thumbs up``, ``thumbs down``, ``correction``, ``arena``
    (prefixed ``kto`` or ``dpo``)."""
    dropped: dict[str, int]
    """Signals left out, by reason (near-duplicates, unusable arena pairs)."""
    pii: dict[str, int]
    pii_detector: str
    warnings: list[str] = field(default_factory=list)

    @property
    def desirable_share(self) -> float:
        total = self.desirable + self.undesirable
        return round(self.desirable / total, 4) if total else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "desirable_share": self.desirable_share}

    def lines(self) -> list[str]:
        lines = [f"preference dataset {self.name}: KTO rows train {self.kto['train']}, "
                 f"validation {self.kto['validation']}; DPO pairs train {self.dpo['train']}, "
                 f"validation {self.dpo['validation']}",
                 f"balance: {self.desirable} desirable, {self.undesirable} undesirable "
                 f"({self.desirable_share:.0%} desirable)",
                 "from: " + (", ".join(f"{k} {n}" for k, n in sorted(self.sources.items()))
                             or "nothing")]
        if self.dropped:
            lines.append("left out: " + ", ".join(f"{n} {why}" for why, n in self.dropped.items()))
        pii = ", ".join(f"{kind} {n}" for kind, n in sorted(self.pii.items())) or "none"
        lines.append(f"personal data scrubbed: {pii} ({self.pii_detector})")
        lines += [f"warning: {warning}" for warning in self.warnings]
        return lines + [f"report: {self.report}"]


def build_preference_dataset(settings: DataSettings, name: str,
                             overwrite: bool = False) -> PreferenceSummary:
    """Dataset ``name`` of KTO rows and DPO pairs from the log's thumbs, corrections and arena
    votes; see ``training.data.preference`` for what is written."""
    target = dataset_path(settings, name)
    if target.exists() and not overwrite:
        raise DataError(f"dataset {name!r} already exists at {target}; choose another name or "
                        "pass --overwrite")
    options = settings.options
    signals = read_signals(settings.log_path, options.corrections)
    if not signals.conversations:
        raise DataError(f"no preference signal in {settings.log_path}: rate answers with thumbs "
                        "up or down, correct them (`chatbot logs correct`, the Review tab) or "
                        "vote in the arena first")
    redactor = options.redactor()
    scrubbed, pii, _, _ = scrub_pii(signals.conversations, redactor)
    kept, dropped = _dedupe_by_kind(scrubbed, options.near_duplicate_threshold,
                                    options.minhash_permutations)
    halves = split(kept, signatures(kept, options.minhash_permutations),
                   options.validation_share, options.seed, options.near_duplicate_threshold)
    rows = {"train": halves.train, "validation": halves.validation}
    kto = {s: [_kto_row(c) for c in rows[s] if c.meta["kind"] == "kto"] for s in rows}
    dpo = {s: [_dpo_pair(c) for c in rows[s] if c.meta["kind"] == "dpo"] for s in rows}
    labels = Counter(row.label for split_rows in kto.values() for row in split_rows)
    summary = PreferenceSummary(
        name=name, path=str(target), report=str(target / "data_report.md"),
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        answers=signals.answers, kto={s: len(kto[s]) for s in kto},
        dpo={s: len(dpo[s]) for s in dpo}, desirable=labels[True], undesirable=labels[False],
        sources=dict(Counter(f"{c.meta['kind']} {c.meta['from']}" for c in kept)),
        dropped={**signals.skipped, **dropped}, pii=dict(pii), pii_detector=redactor.detector,
        warnings=_warnings(kto, dpo))
    store.write_directory(target, overwrite, lambda work: _fill(work, summary, kto, dpo,
                                                                settings))
    return summary


def _dedupe_by_kind(conversations: list[Conversation], threshold: float | None,
                    permutations: int) -> tuple[list[Conversation], dict[str, int]]:
    """Near-duplicates dropped within desirable rows, undesirable rows and pairs apart."""
    kept, dropped = [], Counter()
    for key in (("kto", True), ("kto", False), ("dpo", None)):
        group = [c for c in conversations if (c.meta["kind"], c.meta.get("label")) == key]
        if not group:
            continue
        result, _ = dedupe(group, threshold, permutations)
        kept += result.kept
        dropped["exact duplicate"] += len(result.exact)
        dropped["near duplicate"] += len(result.near)
    order = {c.id: n for n, c in enumerate(conversations)}
    return sorted(kept, key=lambda c: order[c.id]), {k: n for k, n in dropped.items() if n}


def _as_dicts(conversation: Conversation, answers: int) -> tuple[dict, ...]:
    return tuple(m.as_dict() for m in conversation.messages[:-answers])


def _kto_row(conversation: Conversation) -> KTORow:
    return KTORow(_as_dicts(conversation, 1), conversation.messages[-1].content,
                  conversation.meta["label"])


def _dpo_pair(conversation: Conversation) -> DPOPair:
    chosen, rejected = conversation.messages[-2:]
    return DPOPair(_as_dicts(conversation, 2), chosen.content, rejected.content)


def _warnings(kto: dict[str, list], dpo: dict[str, list]) -> list[str]:
    found = []
    if not kto["validation"] and not dpo["validation"]:
        found.append("the validation split is empty: too few rated or corrected sessions for "
                     "validation metrics; collect more or raise data.validation_share")
    labels = {row.label for rows in kto.values() for row in rows}
    if len(labels) == 1:
        found.append("every KTO row has the same label; KTO needs both desirable and "
                     "undesirable answers")
    return found


def _fill(work: Path, summary: PreferenceSummary, kto: dict, dpo: dict,
          settings: DataSettings) -> None:
    files = save_preference_rows(work, kto, dpo)
    (work / "data_report.md").write_text(render_report(summary), encoding="utf-8")
    counts = {"train": summary.kto["train"] + summary.dpo["train"],
              "validation": summary.kto["validation"] + summary.dpo["validation"],
              **{f"kto_{s}": n for s, n in summary.kto.items()},
              **{f"dpo_{s}": n for s, n in summary.dpo.items()},
              "desirable": summary.desirable, "undesirable": summary.undesirable}
    log = settings.log_path
    store.DatasetManifest(
        name=summary.name, created_at=summary.created_at,
        sources=[{"path": str(log), "answers": summary.answers}],
        options=asdict(settings.options), counts=counts, pii=summary.pii,
        pii_detector=summary.pii_detector, chat_model=settings.chat_model, kind=KIND,
        files=files).save(work)


def render_report(summary: PreferenceSummary) -> str:
    """``data_report.md`` of a preference dataset."""
    lines = [f"# Preference dataset `{summary.name}`", "",
             f"Built {summary.created_at} from {summary.answers} finished answer(s) in the log.",
             "", "| | train | validation | file |", "|---|---:|---:|---|",
             f"| KTO rows | {summary.kto['train']} | {summary.kto['validation']} | "
             f"`{FILES['kto']['train']}`, `{FILES['kto']['validation']}` |",
             f"| DPO pairs | {summary.dpo['train']} | {summary.dpo['validation']} | "
             f"`{FILES['dpo']['train']}`, `{FILES['dpo']['validation']}` |", "",
             f"Balance: **{summary.desirable}** desirable and **{summary.undesirable}** "
             f"undesirable KTO rows ({summary.desirable_share:.0%} desirable).", "",
             "## Where the rows come from", "", "| rows | count |", "|---|---:|",
             *[f"| {k} | {n} |" for k, n in sorted(summary.sources.items())], "",
             "## Left out", "",
             *([f"- {why}: {n}" for why, n in summary.dropped.items()] or ["- nothing"]), "",
             "## Personal data scrubbed", "", f"Detector: {summary.pii_detector}.", "",
             *([f"- `<{k}>`: {n}" for k, n in sorted(summary.pii.items())] or ["- none found"]),
             "", *[f"**Warning:** {w}." for w in summary.warnings]]
    return "\n".join(lines).rstrip() + "\n"
