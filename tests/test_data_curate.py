"""The curation steps one by one: what each keeps, drops, and why."""

from __future__ import annotations

import random
from dataclasses import dataclass

from chatbot.config import BotConfig
from chatbot.types import Message
from app.build import options_from_config
from training.data.dedupe import dedupe, split
from training.data.redact import Redactor
from training.data.steps import (CurateOptions, curate, drop_empty_and_refusals, filter_length,
                            scrub_pii, select_by_feedback)
from training.data.token_lengths import Lengths
from training.data.transcripts import Conversation


@dataclass
class WordCounter:
    """Tokens = words: a real, trivially checkable tokenizer for step tests."""

    name: str = "words"

    def measure(self, conversations, ceiling=None):
        return [Lengths(sum(len(m.content.split()) for m in messages),
                        sum(len(m.content.split()) for m in messages if m.role == "assistant"))
                for messages in conversations]


def chat(id_: str, *pairs: tuple[str, str], group: str = "", **meta) -> Conversation:
    messages = tuple(Message(role, text) for q, a in pairs
                     for role, text in (("user", q), ("assistant", a)))
    return Conversation(id_, messages, "test", meta, group=group)


def words(rng: random.Random, count: int) -> str:
    return " ".join(f"w{rng.randrange(100_000)}" for _ in range(count))


def rated() -> list[Conversation]:
    return [chat("up", ("q", "a"), rating=1), chat("unrated", ("q", "b"), rating=None),
            chat("down", ("q", "c"), rating=-1, comment=None),
            chat("down-commented", ("q", "d"), rating=-1, comment="Wrong: use --from logs"),
            chat("imported", ("q", "e"))]


def ids(conversations) -> list[str]:
    return [c.id for c in conversations]


def test_feedback_policies():
    kept, review, report = select_by_feedback(rated(), "up")
    assert ids(kept) == ["up", "imported"] and ids(review) == ["down-commented"]
    assert report.dropped == {"not rated": 1, "thumbed down": 2}
    kept, _, report = select_by_feedback(rated(), "not_down")
    assert ids(kept) == ["up", "unrated", "imported"]
    assert report.dropped == {"thumbed down": 2}
    kept, review, _ = select_by_feedback(rated(), "all")
    assert len(kept) == 5 and ids(review) == ["down-commented"]  # kept aside even under "all"


def test_empty_and_refusal_answers_are_dropped_but_partial_refusals_kept():
    patterns = options_from_config(BotConfig()).refusal_patterns
    conversations = [
        chat("refusal", ("capital of France?", "I can't help with that.")),
        chat("sorry", ("x", "I'm sorry, but I cannot help with this request.")),
        chat("bot-refusal", ("x", "The documents I have do not cover that question.")),
        chat("empty", ("x", " ")),
        chat("partial", ("x", "I can't help with that part, but `chatbot data list` will.")),
    ]
    kept, report = drop_empty_and_refusals(conversations, patterns)
    assert ids(kept) == ["partial"]
    assert report.dropped == {"refusal boilerplate": 3, "empty answer": 1}


def test_pii_is_scrubbed_in_every_message_the_system_prompt_too():
    """An imported system prompt often carries the customer's record (name, email, birth date)."""
    system = Message("system", "Be brief. Customer: dkim@mail.example")
    original = chat("c", ("I am ana@example.org", "Noted, ana@example.org; call +44 20 7946 0958"))
    original = Conversation("c", (system,) + original.messages, "test")
    kept, counts, examples, report = scrub_pii([original], Redactor(["EMAIL", "PHONE"], "US"))
    assert [m.content for m in kept[0].messages] == [
        "Be brief. Customer: <EMAIL>", "I am <EMAIL>", "Noted, <EMAIL>; call <PHONE>"]
    assert counts == {"EMAIL": 3, "PHONE": 1} and report.notes["conversations_changed"] == 1
    assert all("ana@" not in text for shown in examples.values() for text in shown)
    assert original.messages[1].content == "I am ana@example.org"  # the input is not mutated


def test_length_limits_in_tokens():
    short, fine, long = (chat("short", ("hi", "yo")), chat("fine", ("a b c", "d e f g")),
                         chat("long", ("a " * 30, "b " * 30)))
    kept, lengths, report = filter_length([short, fine, long], WordCounter(), 5, 20)
    assert ids(kept) == ["fine"] and lengths["fine"] == Lengths(7, 4)
    assert report.dropped == {"shorter than 5 tokens": 1, "longer than 20 tokens": 1}


def test_exact_and_near_duplicates_keep_the_first():
    rng = random.Random(1)
    question, answer = words(rng, 30), words(rng, 40)
    conversations = [
        chat("a", (question, answer)),
        chat("a-exact", (question.upper(), "  " + answer)),  # case and spaces only
        chat("a-near", (question, answer.rsplit(" ", 1)[0] + " changed")),
        chat("other", (words(rng, 30), words(rng, 40))),
    ]
    result, sigs = dedupe(conversations, 0.8, 64)
    assert ids(result.kept) == ["a", "other"] and len(sigs.conversations) == 2
    assert result.exact == [("a-exact", "a")] and result.near == [("a-near", "a")]
    exact_only, _ = dedupe(conversations, None, 64)
    assert ids(exact_only.kept) == ["a", "a-near", "other"]


def test_split_is_by_group_and_reproducible():
    rng = random.Random(2)
    conversations = [chat(f"s{g}:{t}", (words(rng, 15), words(rng, 15)), group=f"s{g}")
                     for g in range(30) for t in range(3)]
    result, sigs = dedupe(conversations, 0.8, 64)
    first = split(result.kept, sigs, 0.2, 7, 0.8)
    again = split(result.kept, sigs, 0.2, 7, 0.8)
    assert ids(first.validation) == ids(again.validation)
    train_groups = {c.group for c in first.train}
    validation_groups = {c.group for c in first.validation}
    assert not train_groups & validation_groups and len(validation_groups) == 6
    assert ids(split(result.kept, sigs, 0.2, 8, 0.8).validation) != ids(first.validation)


def test_near_duplicate_across_the_split_is_moved_not_duplicated():
    rng = random.Random(3)
    conversations = []
    for pair in range(40):  # two conversations that share one long exchange, nothing else
        shared = (words(rng, 20), words(rng, 20))
        for side in "ab":
            conversations.append(chat(f"{pair}{side}", (words(rng, 20), words(rng, 20)), shared,
                                      (words(rng, 20), words(rng, 20))))
    result, sigs = dedupe(conversations, 0.8, 64)
    assert len(result.kept) == 80  # not duplicates as whole conversations
    halves = split(result.kept, sigs, 0.3, 11, 0.8)
    assert halves.moved and len(halves.train) + len(halves.validation) == 80
    validation = set(ids(halves.validation))
    for pair in range(40):
        assert (f"{pair}a" in validation) == (f"{pair}b" in validation)
    for moved, partner in halves.moved:
        assert moved not in validation and moved[:-1] == partner[:-1]


def test_curate_reports_every_step_in_order():
    options = CurateOptions(min_tokens=0, max_tokens=1000, validation_share=0.5, seed=1)
    curated = curate(rated(), options, WordCounter())
    assert [s.name for s in curated.steps] == ["feedback", "quality", "pii", "length", "dedupe",
                                               "split"]
    assert curated.steps[0].conversations_in == 5 and curated.steps[0].conversations_out == 3
    assert curated.steps[-1].notes["train"] + curated.steps[-1].notes["validation"] == 3
