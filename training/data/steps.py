"""The curation steps, in order, each counting what went in, what came out, and why.

feedback -> quality (empty or refusal answers) -> pii -> length -> dedupe -> split.
PII is scrubbed before lengths are measured and duplicates are looked for, so the token
histogram describes the final text and two conversations that differ only in an email address
count as duplicates.

    chatbot data build --name NAME --from FILE     # runs them all
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Iterator, Sequence

from chatbot.types import Message
from training.data.dedupe import Split, dedupe, split
from training.errors import DataError
from training.data.redact import DEFAULT_MODEL, KINDS, Redactor
from chatbot.pii import PHONE_REGIONS
from training.data.token_lengths import Lengths, TokenCounter
from training.data.transcripts import Conversation

FEEDBACK_POLICIES = ("up", "not_down", "all")
CORRECTION_POLICIES = ("prefer", "only", "ignore")
PII_EXAMPLES_PER_KIND = 3


@dataclass(frozen=True)
class CurateOptions:
    """Flat settings of the steps (the ``data:`` config section, via ``options_from_config``)."""

    feedback: str = "not_down"
    corrections: str = "prefer"
    """``prefer``: a corrected answer is kept with its correction as target, whatever its
    rating; ``only``: uncorrected logged answers are dropped; ``ignore``: read as generated."""
    min_tokens: int = 0
    max_tokens: int = 2048
    refusal_patterns: tuple[str, ...] = ()
    near_duplicate_threshold: float | None = 0.8
    minhash_permutations: int = 64
    pii_kinds: tuple[str, ...] = KINDS
    phone_region: str = "US"
    phone_regions: tuple[str, ...] = PHONE_REGIONS
    pii_ner_model: str | None = DEFAULT_MODEL
    validation_share: float = 0.1
    seed: int = 1234

    def redactor(self) -> Redactor:
        """The PII redactor these settings ask for (its NER model is loaded once a process)."""
        return Redactor(self.pii_kinds, self.phone_region, self.phone_regions, self.pii_ner_model)


@dataclass(frozen=True)
class StepReport:
    name: str
    settings: dict
    conversations_in: int
    conversations_out: int
    turns_in: int
    turns_out: int
    """Assistant turns (the training targets)."""
    dropped: dict[str, int] = field(default_factory=dict)
    """Conversations dropped, by reason."""
    notes: dict = field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    """Process CPU time (all threads): comparable on a busy machine where wall time is not."""


@dataclass(frozen=True)
class Curated:
    split: Split
    steps: list[StepReport]
    lengths: dict[str, Lengths]
    review: list[Conversation]
    pii_counts: dict[str, int]
    pii_examples: dict[str, list[str]]
    pii_detector: str
    """What found the personal data: the NER model and patterns, or patterns only and why."""


def curate(conversations: Sequence[Conversation], options: CurateOptions,
           counter: TokenCounter) -> Curated:
    """Run every step in order on ``conversations`` (never mutated)."""
    if options.feedback not in FEEDBACK_POLICIES:
        raise DataError(f"feedback policy {options.feedback!r} is unknown; expected one of "
                        f"{', '.join(FEEDBACK_POLICIES)}")
    steps: list[StepReport] = []
    clock = _Clock()
    if options.corrections not in CORRECTION_POLICIES:
        raise DataError(f"corrections policy {options.corrections!r} is unknown; expected one "
                        f"of {', '.join(CORRECTION_POLICIES)}")
    kept, review, report = select_by_feedback(conversations, options.feedback,
                                              options.corrections)
    steps.append(clock.stamp(report))
    kept, report = drop_empty_and_refusals(kept, options.refusal_patterns)
    steps.append(clock.stamp(report))
    redactor = options.redactor()
    kept, counts, examples, report = scrub_pii(kept, redactor)
    steps.append(clock.stamp(report))
    review = scrub_pii(review, redactor)[0]  # the review file travels with the dataset
    kept, lengths, report = filter_length(kept, counter, options.min_tokens, options.max_tokens)
    steps.append(clock.stamp(report))
    result, sigs = dedupe(kept, options.near_duplicate_threshold, options.minhash_permutations)
    steps.append(clock.stamp(_report(
        "dedupe", {"near_duplicate_threshold": options.near_duplicate_threshold,
                   "minhash_permutations": options.minhash_permutations},
        kept, result.kept, {"exact duplicate": len(result.exact),
                            "near duplicate": len(result.near)},
        {"exact": result.exact[:20], "near": result.near[:20]})))
    halves = split(result.kept, sigs, options.validation_share, options.seed,
                   options.near_duplicate_threshold)
    steps.append(clock.stamp(_report(
        "split", {"validation_share": options.validation_share, "seed": options.seed},
        result.kept, result.kept, {},
        {"train": len(halves.train), "validation": len(halves.validation),
         "moved_to_train": len(halves.moved), "moved": halves.moved[:20]})))
    kept_lengths = {c.id: lengths[c.id] for c in result.kept}
    return Curated(halves, steps, kept_lengths, review, dict(counts), examples, redactor.detector)


# The config key that lets through what a step dropped for a reason (by the reason's start).
_RELAXED_BY = {"thumbed down": "data.feedback", "not rated": "data.feedback",
               "not corrected": "data.corrections", "refusal boilerplate": "data.refusal_patterns",
               "shorter than": "data.min_tokens", "longer than": "data.max_tokens"}


def nothing_to_train_on(curated: Curated) -> str | None:
    """Why ``curated`` has no training example and what to change, or None when it has some:
    a dataset without one would only fail when a fine-tune starts."""
    halves = curated.split
    if halves.train:
        return None
    read = curated.steps[0].conversations_in
    if halves.validation:
        return (f"nothing to train on: all {read} conversation(s) went to the validation split; "
                "lower data.validation_share in the config, or add conversations")
    why = "; ".join(f"{step.name}: " + ", ".join(f"{n} {reason}" for reason, n in
                                                  step.dropped.items())
                    for step in curated.steps if step.dropped)
    keys = dict.fromkeys(key for step in curated.steps for reason in step.dropped
                         for start, key in _RELAXED_BY.items() if reason.startswith(start))
    relax = f"relax {', '.join(keys)} in the config, or " if keys else ""
    return (f"nothing to train on: none of the {read} conversations passed the curation steps "
            f"({why}); {relax}add conversations")


class _Clock:
    """Stamps each step's report with the wall and CPU seconds since the previous stamp."""

    def __init__(self) -> None:
        self.last = (time.perf_counter(), time.process_time())

    def stamp(self, report: StepReport) -> StepReport:
        now = (time.perf_counter(), time.process_time())
        report = replace(report, seconds=round(now[0] - self.last[0], 4),
                         cpu_seconds=round(now[1] - self.last[1], 4))
        self.last = now
        return report


def _turns(conversations: Sequence[Conversation]) -> int:
    return sum(c.count("assistant") for c in conversations)


def _report(name: str, settings: dict, before: Sequence[Conversation],
            after: Sequence[Conversation], dropped: dict[str, int],
            notes: dict | None = None) -> StepReport:
    return StepReport(name, settings, len(before), len(after), _turns(before), _turns(after),
                      {reason: n for reason, n in dropped.items() if n}, notes or {})


def select_by_feedback(conversations: Sequence[Conversation], policy: str,
                       corrections: str = "prefer"
                       ) -> tuple[list[Conversation], list[Conversation], StepReport]:
    """Keep by the answer's rating; thumbed-down answers with a comment go to review.

    ``meta["rating"]`` is +1, -1 or None (a logged answer nobody rated); imported conversations
    carry no ``rating`` key and pass every policy. A corrected answer (``meta["corrected"]``)
    is kept whatever its rating and needs no review, and so is one a reviewer approved as it is
    (``meta["approved"]``: their verdict overrides the thumb); with ``corrections="only"`` the
    logged answers nobody corrected are dropped.
    """
    kept, review, dropped = [], [], Counter()
    reviewed = Counter()
    for conversation in conversations:
        if "rating" not in conversation.meta:
            kept.append(conversation)
            continue
        verdict = next((key for key in ("corrected", "approved") if conversation.meta.get(key)),
                       None)
        if verdict == "corrected" or (verdict == "approved" and corrections != "only"):
            kept.append(conversation)
            reviewed[verdict] += 1
            continue
        if corrections == "only":
            dropped["not corrected"] += 1
            continue
        rating = conversation.meta["rating"]
        if rating == -1 and conversation.meta.get("comment"):
            review.append(conversation)
        if policy == "up" and rating != 1:
            dropped["thumbed down" if rating == -1 else "not rated"] += 1
        elif policy == "not_down" and rating == -1:
            dropped["thumbed down"] += 1
        else:
            kept.append(conversation)
    report = _report("feedback", {"policy": policy, "corrections": corrections}, conversations,
                     kept, dropped, {"kept_for_review": len(review), **reviewed})
    return kept, review, report


def drop_empty_and_refusals(conversations: Sequence[Conversation], patterns: Sequence[str]
                            ) -> tuple[list[Conversation], StepReport]:
    """Drop conversations with an empty or boilerplate-refusal assistant turn to learn (an
    answer kept as context only, ``weight`` 0, is what the model was sent, whatever it is)."""
    compiled = [re.compile(p, re.IGNORECASE) for p in patterns]
    kept, dropped = [], Counter()
    for conversation in conversations:
        answers = [m.content.strip() for m in conversation.messages if m.learned]
        if not answers or any(not text for text in answers):
            dropped["empty answer"] += 1
        elif any(p.search(text) for text in answers for p in compiled):
            dropped["refusal boilerplate"] += 1
        else:
            kept.append(conversation)
    return kept, _report("quality", {"refusal_patterns": list(patterns)}, conversations, kept,
                         dropped)


def scrub_pii(conversations: Sequence[Conversation], redactor: Redactor
              ) -> tuple[list[Conversation], Counter, dict[str, list[str]], StepReport]:
    """Replace personal data in every message (an imported system prompt can hold some too),
    and in a rater's comment, by typed placeholders.

    All conversations go to the redactor at once (its NER model reads batches); it reads for
    names what each conversation's people wrote (``_written_by_people``) and the comment, not
    the sources rendered into its prompt, so a name given in a turn goes from the comment too.
    """
    comments = [c.meta.get("comment") or "" for c in conversations]
    groups = [[m.content for m in (*c.messages, *c.dialogue)] + [comment]
              for c, comment in zip(conversations, comments)]
    redacted = redactor.scrub_groups(groups, [_written_by_people(c) + [comment]
                                              for c, comment in zip(conversations, comments)])
    total: Counter = Counter()
    examples: dict[str, list[str]] = {}
    scrubbed, touched = [], 0
    for conversation, results in zip(conversations, redacted):
        results = iter(results)
        messages, found = _scrub_messages(conversation.messages, results, examples)
        dialogue, _ = _scrub_messages(conversation.dialogue, results, {})
        if found:
            touched += 1
            total += found
            conversation = replace(conversation, messages=messages, dialogue=dialogue)
        comment, comment_found = next(results)
        if comment_found:
            conversation = replace(conversation, meta=conversation.meta | {"comment": comment})
        scrubbed.append(conversation)
    settings = {"kinds": list(redactor.kinds), "phone_region": redactor.region,
                "phone_regions": list(redactor.regions), "detector": redactor.detector}
    report = _report("pii", settings, conversations, scrubbed, {},
                     {"conversations_changed": touched, "spans": dict(total)})
    return scrubbed, total, examples, report


def _written_by_people(conversation: Conversation) -> list[str]:
    """Its turns, and an imported transcript's system prompt, which its authors wrote ("escalate
    to Dr Hale"); a logged conversation's system prompt is the bot's template (it has a
    ``dialogue``), not read."""
    system = [] if conversation.dialogue else [
        m.content for m in conversation.messages if m.role == "system"]
    return system + [m.content for m in conversation.turns]


def _scrub_messages(messages: tuple[Message, ...], results: Iterator[tuple[str, Counter]],
                    examples: dict[str, list[str]]) -> tuple[tuple[Message, ...], Counter]:
    """``messages`` with their texts taken, in order, from ``results``."""
    found: Counter = Counter()
    out = []
    for message in messages:
        text, counts = next(results)
        if counts:
            found += counts
            message = replace(message, content=text)
            for kind in counts:
                _remember_example(examples, kind, text)
        out.append(message)
    return tuple(out), found


def _remember_example(examples: dict[str, list[str]], kind: str, text: str) -> None:
    """A short redacted excerpt around the first placeholder of ``kind``."""
    shown = examples.setdefault(kind, [])
    if len(shown) >= PII_EXAMPLES_PER_KIND:
        return
    at = text.find(f"<{kind}>")
    excerpt = " ".join(text[max(0, at - 60):at + 60].split())
    shown.append(excerpt)


def filter_length(conversations: Sequence[Conversation], counter: TokenCounter, min_tokens: int,
                  max_tokens: int) -> tuple[list[Conversation], dict[str, Lengths], StepReport]:
    """Measure every conversation in the chat model's tokens; keep min <= total <= max."""
    measured = counter.measure([c.messages for c in conversations], ceiling=max_tokens)
    lengths = {c.id: m for c, m in zip(conversations, measured)}
    kept, dropped = [], Counter()
    for conversation, length in zip(conversations, measured):
        if length.total < min_tokens:
            dropped[f"shorter than {min_tokens} tokens"] += 1
        elif length.total > max_tokens:
            dropped[f"longer than {max_tokens} tokens"] += 1
        else:
            kept.append(conversation)
    report = _report("length", {"min_tokens": min_tokens, "max_tokens": max_tokens,
                                "tokenizer": counter.name}, conversations, kept, dropped)
    return kept, lengths, report
