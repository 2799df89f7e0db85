"""The shipped sample data and user guide are well formed.

samples/transcripts.jsonl feeds the training demo and samples/eval.jsonl the offline evaluation
demo; a broken line would only show up deep inside those commands, so it is caught here with
the file and line.

    python -m pytest tests/test_samples.py -q
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRANSCRIPTS = ROOT / "samples" / "transcripts.jsonl"
EVAL = ROOT / "samples" / "eval.jsonl"
DOCS = ROOT / "docs"


def read_jsonl(path: Path) -> list[tuple[int, object]]:
    """(line number, parsed object) for every line; a bad line fails with its position."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            pytest.fail(f"{path.name}:{number}: not valid JSON: {exc}")
    return rows


def conversation_problems(obj: object) -> list[str]:
    """What is wrong with one OpenAI-format conversation of user/assistant exchanges."""
    if not isinstance(obj, dict) or not isinstance(obj.get("messages"), list):
        return ["expected an object with a 'messages' list"]
    messages = obj["messages"]
    if not messages:
        return ["'messages' is empty"]
    problems = []
    for index, message in enumerate(messages):
        expected = "user" if index % 2 == 0 else "assistant"
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            problems.append(f"message {index}: expected exactly 'role' and 'content'")
            continue
        if message["role"] != expected:
            problems.append(f"message {index}: role {message['role']!r}, expected {expected!r}")
        if not isinstance(message["content"], str) or not message["content"].strip():
            problems.append(f"message {index}: empty content")
    if len(messages) % 2:
        problems.append("the conversation must end with an assistant message")
    return problems


def eval_item_problems(obj: object) -> list[str]:
    """What is wrong with one offline evaluation item."""
    if not isinstance(obj, dict):
        return ["expected a JSON object"]
    problems = []
    unknown = set(obj) - {"question", "answers", "gold_sources", "not_answerable"}
    if unknown:
        problems.append(f"unknown keys {sorted(unknown)}")
    if not isinstance(obj.get("question"), str) or not obj["question"].strip():
        problems.append("'question' must be a non-empty string")
    answers = obj.get("answers")
    if not isinstance(answers, list) or not answers or not all(
            isinstance(a, str) and a.strip() for a in answers):
        problems.append("'answers' must be a non-empty list of non-empty strings")
    sources = obj.get("gold_sources", [])
    if not isinstance(sources, list):
        return problems + ["'gold_sources' must be a list"]
    for source in sources:
        if not (isinstance(source, str) and source.startswith("docs/") and (ROOT / source).is_file()):
            problems.append(f"gold source {source!r} is not a file under docs/")
    if obj.get("not_answerable") and sources:
        problems.append("a not_answerable item cannot have gold sources")
    if not obj.get("not_answerable") and not sources:
        problems.append("an answerable item needs at least one gold source")
    return problems


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def test_every_transcript_is_an_alternating_conversation_of_one_to_four_exchanges():
    rows = read_jsonl(TRANSCRIPTS)
    assert len(rows) == 40
    problems = [f"transcripts.jsonl:{n}: {p}" for n, obj in rows for p in conversation_problems(obj)]
    assert problems == []
    exchanges = [len(obj["messages"]) // 2 for _, obj in rows]
    assert min(exchanges) >= 1 and max(exchanges) <= 4
    assert sum(1 for count in exchanges if count > 1) >= len(rows) // 2, "mostly multi-turn"


def test_no_two_transcripts_are_the_same_conversation():
    openings = [normalize(obj["messages"][0]["content"]) for _, obj in read_jsonl(TRANSCRIPTS)]
    assert len(set(openings)) == len(openings)


def test_every_eval_item_is_well_formed_with_gold_sources_in_the_guide():
    rows = read_jsonl(EVAL)
    assert len(rows) == 30
    problems = [f"eval.jsonl:{n}: {p}" for n, obj in rows for p in eval_item_problems(obj)]
    assert problems == []
    not_answerable = [obj for _, obj in rows if obj.get("not_answerable")]
    assert 3 <= len(not_answerable) <= 8


def test_eval_questions_are_unique_and_held_out_from_the_transcripts():
    questions = [normalize(obj["question"]) for _, obj in read_jsonl(EVAL)]
    assert len(set(questions)) == len(questions)
    asked = {normalize(message["content"]) for _, obj in read_jsonl(TRANSCRIPTS)
             for message in obj["messages"] if message["role"] == "user"}
    assert sorted(set(questions) & asked) == []


def test_the_guide_index_links_to_every_page():
    linked = set(re.findall(r"\]\(([\w-]+\.md)\)", (DOCS / "index.md").read_text()))
    pages = {page.name for page in DOCS.glob("*.md")} - {"index.md"}
    assert sorted(pages - linked) == []


def test_relative_links_in_the_guide_point_to_existing_pages():
    broken = []
    for page in sorted(DOCS.glob("*.md")):
        for target in re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", page.read_text()):
            if not (page.parent / target).exists():
                broken.append(f"{page.name} -> {target}")
    assert broken == []


@pytest.mark.parametrize("messages, expected", [
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
     "message 1: role 'user', expected 'assistant'"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "  "}],
     "message 1: empty content"),
    ([{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}],
     "message 0: role 'assistant', expected 'user'"),
    ([{"role": "user", "content": "a"}], "the conversation must end with an assistant message"),
])
def test_the_transcript_check_reports_bad_conversations_by_position(messages, expected):
    assert expected in conversation_problems({"messages": messages})


def test_the_eval_check_rejects_a_gold_source_outside_the_guide():
    item = {"question": "q", "answers": ["a"], "gold_sources": ["docs/missing.md"]}
    assert eval_item_problems(item) == ["gold source 'docs/missing.md' is not a file under docs/"]
