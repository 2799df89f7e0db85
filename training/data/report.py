"""The data report: every step's counts and reasons, PII found, split sizes, token lengths.

Written as ``data_report.md`` beside a ``token_lengths.png`` histogram (matplotlib, Agg backend,
so it works without a display).

    chatbot data show NAME        # prints where the report is and its summary
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

MAX_PROBLEMS_SHOWN = 20
COUNT_KEYS = ("records_read", "imported", "logged", "skipped", "problem_count", "train",
              "validation", "train_turns", "validation_turns", "moved_to_train", "review",
              "corrected")


@dataclass(frozen=True)
class BuildSummary:
    """What one dataset build read, kept and wrote: the report, the manifest and both surfaces
    (``chatbot data build``, the Training tab) show it."""

    name: str
    path: str
    report: str
    created_at: str
    sources: list[dict]
    """``{"path", "sha256"}`` per file, the log first with its ``answers`` count."""
    records_read: int
    imported: int
    logged: int
    skipped: int
    problem_count: int
    problems: list[str]
    """The first problems only; ``problem_count`` says how many there were."""
    train: int
    validation: int
    train_turns: int
    validation_turns: int
    moved_to_train: int
    review: int
    warnings: list[str]
    pii: dict[str, int]
    pii_detector: str
    tokens: dict
    """:func:`token_stats` of the kept examples."""
    chat_model: str
    tokenizer: str
    chat_model_fingerprint: str | None
    chat_template_hash: str | None
    template: str
    template_hash: str
    render_with_template: bool
    steps: list[dict]
    """Per curation step: ``name``, ``in``, ``out``, ``dropped``, ``seconds``, ``cpu_seconds``."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time per build stage and ``total``; filled in once the dataset is written."""
    corrected: int = 0
    """Kept examples whose target is a reviewer's correction, not the generated answer."""

    def as_dict(self) -> dict:
        """The summary as ``chatbot data build --json`` prints it."""
        return asdict(self)

    def counts(self) -> dict[str, int]:
        """The counts the dataset manifest keeps."""
        return {key: getattr(self, key) for key in COUNT_KEYS}

    def lines(self) -> list[str]:
        """The human-readable summary the CLI prints and the Training tab shows."""
        tokens = self.tokens
        lines = [f"dataset {self.name}: train {self.train}, validation {self.validation} "
                 f"conversations ({self.train_turns} + {self.validation_turns} assistant turns)",
                 f"read {self.records_read}: {self.imported} imported, {self.logged} logged "
                 f"answers, {self.skipped} skipped as invalid"]
        for step in self.steps:
            why = ", ".join(f"{n} {reason}" for reason, n in step["dropped"].items())
            lines.append(f"  {step['name']:<9} {step['in']:>7} -> {step['out']:<7} {why}".rstrip())
        pii = ", ".join(f"{kind} {n}" for kind, n in sorted(self.pii.items())) or "none"
        lines.append(f"personal data scrubbed: {pii} ({self.pii_detector})")
        if self.corrected:
            lines.append(f"corrected targets: {self.corrected} (a reviewer's correction, not the "
                         "generated answer)")
        if tokens["examples"]:
            lines.append(f"tokens per example: median {tokens['median']}, p95 {tokens['p95']}, "
                         f"max {tokens['max']}; supervised share {tokens['supervised_share']:.1%}")
        lines += [f"warning: {warning}" for warning in self.warnings]
        lines.append(f"report: {self.report}")
        return lines


def token_stats(totals: Sequence[int], supervised: Sequence[int]) -> dict:
    """Distribution of example lengths and the share of tokens that are trained on."""
    if not totals:
        return {"examples": 0, "total": 0, "supervised": 0, "supervised_share": 0.0}
    ordered = sorted(totals)
    return {
        "examples": len(ordered),
        "total": sum(ordered),
        "supervised": sum(supervised),
        "supervised_share": round(sum(supervised) / max(1, sum(ordered)), 4),
        "min": ordered[0],
        "median": int(statistics.median(ordered)),
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "max": ordered[-1],
    }


def write_histogram(path: Path, train: Sequence[int], validation: Sequence[int],
                    limits: tuple[int, int]) -> None:
    """A stacked histogram of example lengths in tokens, with the min/max filter limits."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 3.5), dpi=100)
    axes.hist([list(train), list(validation)], bins=40, stacked=True,
              label=["train", "validation"], color=["#4c72b0", "#dd8452"])
    for limit in limits:
        if 0 < limit <= max(list(train) + list(validation) + [0]) * 1.05:
            axes.axvline(limit, color="grey", linestyle="--", linewidth=1)
    axes.set_xlabel("tokens per example (chat model tokenizer, chat template applied)")
    axes.set_ylabel("examples")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def render_report(summary: BuildSummary, steps: Sequence[dict], pii_examples: dict[str, list[str]]
                  ) -> str:
    """The Markdown report from the build summary (see ``training.data.build.build_dataset``)."""
    lines = [f"# Dataset `{summary.name}`", "",
             f"Built {summary.created_at} from {_sources(summary)}.", "",
             *_overview(summary), *[f"\n**Warning:** {w}." for w in summary.warnings],
             "", "## Import", "", *_import(summary), "",
             "## Steps", "", *_steps(steps), "", "## Personal data scrubbed", "",
             *_pii(summary, pii_examples), "", "## Token lengths", "",
             *_tokens(summary), "", "## Kept aside for review", "",
             f"{summary.review} thumbed-down answer(s) with a comment are in "
             "`review_thumbs_down.jsonl`; they are never trained on. Correct them "
             "(`chatbot logs correct`, the Review tab) to turn them into training targets.", ""]
    return "\n".join(lines)


def _sources(summary: BuildSummary) -> str:
    names = [s["path"] for s in summary.sources]
    return ", ".join(f"`{n}`" for n in names) or "nothing"


def _overview(summary: BuildSummary) -> list[str]:
    tokens = summary.tokens
    return [
        "| | conversations | assistant turns |", "|---|---:|---:|",
        f"| train | {summary.train} | {summary.train_turns} |",
        f"| validation | {summary.validation} | {summary.validation_turns} |", "",
        f"Supervised (assistant) tokens: **{tokens['supervised_share']:.1%}** of "
        f"{tokens['total']:,} tokens ({tokens['supervised']:,}).",
        f"Chat model `{summary.chat_model}`; prompt template `{summary.template}`.",
        f"Targets that are a reviewer's correction (not the generated answer): "
        f"**{summary.corrected}**.",
    ]


def _import(summary: BuildSummary) -> list[str]:
    lines = [f"- records read: {summary.records_read}",
             f"- valid imported conversations: {summary.imported}",
             f"- logged answers: {summary.logged}",
             f"- skipped as invalid: {summary.skipped}"]
    problems = summary.problems
    if problems:
        lines += ["", "First problems (file:line: messages[index]: what):", ""]
        lines += [f"- `{p}`" for p in problems[:MAX_PROBLEMS_SHOWN]]
        if summary.problem_count > MAX_PROBLEMS_SHOWN:
            lines.append(f"- ... and {summary.problem_count - MAX_PROBLEMS_SHOWN} more")
    return lines


def _steps(steps: Sequence[dict]) -> list[str]:
    lines = ["| step | settings | conversations in → out | assistant turns in → out | "
             "dropped (why) |", "|---|---|---:|---:|---|"]
    for step in steps:
        settings = ", ".join(f"{k}={_short(v)}" for k, v in step["settings"].items())
        dropped = ", ".join(f"{n} {why}" for why, n in step["dropped"].items()) or "—"
        if step["name"] == "split":
            notes = step["notes"]
            dropped = (f"train {notes['train']}, validation {notes['validation']}, "
                       f"{notes['moved_to_train']} moved to train (near-duplicate across sides)")
        if step["name"] == "feedback" and step["notes"].get("kept_for_review"):
            dropped += f"; {step['notes']['kept_for_review']} kept for review"
        for verdict in ("corrected", "approved"):
            if step["name"] == "feedback" and step["notes"].get(verdict):
                dropped += f"; {step['notes'][verdict]} {verdict} (kept)"
        lines.append(f"| {step['name']} | {settings} | {step['conversations_in']} → "
                     f"{step['conversations_out']} | {step['turns_in']} → {step['turns_out']} "
                     f"| {dropped} |")
    return lines


def _short(value: object) -> str:
    """A settings value short enough for a table cell (full values are in manifest.json)."""
    if isinstance(value, (list, tuple)):
        joined = ", ".join(str(item) for item in value)
        return joined if len(joined) <= 60 and "|" not in joined else f"{len(value)} items"
    text = str(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return text.replace("|", "\\|")


def _pii(summary: BuildSummary, examples: dict[str, list[str]]) -> list[str]:
    counts = summary.pii
    detector = [f"Detector: {summary.pii_detector}.", ""]
    if not counts:
        return [*detector, "None found."]
    lines = [*detector, "| kind | spans |", "|---|---:|"]
    lines += [f"| `<{kind}>` | {n} |" for kind, n in sorted(counts.items())]
    lines += ["", "Examples (already redacted):", ""]
    for kind in sorted(examples):
        lines += [f"- {kind}: “{text}”" for text in examples[kind]]
    return lines


def _tokens(summary: BuildSummary) -> list[str]:
    tokens = summary.tokens
    if not tokens["examples"]:
        return ["No examples."]
    return [f"Chat model tokenizer, chat template applied: min {tokens['min']}, median "
            f"{tokens['median']}, p95 {tokens['p95']}, max {tokens['max']} tokens per example.",
            "", "![token lengths](token_lengths.png)"]
