"""Per-answer metrics and evaluation item formats, table-driven against known values."""

import json
import re

import numpy as np
import pytest

from chatbot.errors import InputError
from training.eval.evalset import load_items, question_item
from training.eval.metrics import (abstention, citation_validity, evidence_recall, exact_match,
                              groundedness, hit_at_k, normalize_answer, rouge_l,
                              semantic_similarity, token_f1, token_recall)


@pytest.mark.parametrize("prediction, references, f1", [
    ("The Denver Broncos", ["Denver Broncos"], 1.0),        # articles and case ignored
    ("Denver Broncos won.", ["the Broncos"], 2 * (1 / 3) * 1 / (1 / 3 + 1)),
    ("no idea", ["Denver Broncos"], 0.0),
    ("bm25", ["dense", "BM25!"], 1.0),                        # best reference counts
])
def test_token_f1_follows_squad(prediction, references, f1) -> None:
    assert token_f1(prediction, references) == pytest.approx(f1)


def test_token_recall_credits_long_answers_that_contain_the_reference() -> None:
    assert token_recall("Yes, your partner can take two weeks.", ["yes", "no"]) == 1.0
    assert token_recall("Two weeks of leave", ["two weeks pay"]) == pytest.approx(2 / 3)
    assert token_recall("x", []) is None


def test_exact_match_and_normalization() -> None:
    assert normalize_answer("  The  Cat's, hat! ") == "cats hat"
    assert exact_match("Yes.", ["yes", "no"]) == 1.0 and exact_match("yes it is", ["yes"]) == 0.0
    assert exact_match("x", []) is None and token_f1("x", []) is None


def test_rouge_l_is_the_lcs_f_measure() -> None:
    # LCS("the cat sat on the mat", "the cat lay on the mat") = 5 of 6 tokens each way.
    assert rouge_l("the cat lay on the mat", ["the cat sat on the mat"]) == pytest.approx(5 / 6)


def test_semantic_similarity_is_the_best_cosine() -> None:
    vectors = {"a": [1.0, 0.0], "b": [0.6, 0.8], "c": [0.0, 1.0]}
    encode = lambda texts: np.array([vectors[t] for t in texts])  # noqa: E731
    assert semantic_similarity("a", ["c", "b"], encode) == pytest.approx(0.6)
    assert semantic_similarity("a", ["b"], None) is None


def test_groundedness_and_citations() -> None:
    passages = ["Run chatbot index sync on the docs folder.", "Feedback goes to logs.sqlite."]
    assert groundedness("Run index sync on the docs folder [1].", passages) == 1.0
    assert groundedness("Restart the server daily.", passages) == 0.0
    assert groundedness("Run sync.", []) is None
    answer = "Run index sync on the docs folder [1]. Feedback goes to logs.sqlite [1][3]."
    # [1] supports the first sentence; [1] does not hold "feedback ... logs.sqlite"; [3] is absent.
    assert citation_validity(answer, passages) == pytest.approx(1 / 3)
    assert citation_validity("No citations here.", passages) is None


def test_abstention_counts_only_not_answerable_items() -> None:
    assert abstention("I don't know based on the documents.", True) == 1.0
    assert abstention("It will be sunny.", True) == 0.0
    assert abstention("anything", True, refused=True) == 1.0
    assert abstention("I don't know", False) is None


def test_retrieval_hits_match_ids_sources_and_evidence() -> None:
    hits = [{"chunk_id": "7", "source": "/docs/indexing.md", "text": "Run the SYNC command."},
            {"chunk_id": "9", "source": "/data/p.jsonl#row3", "text": "Other."}]
    assert hit_at_k(hits, ["indexing"], True) == 1.0
    assert hit_at_k(hits, ["9"], True) == 1.0 and hit_at_k(hits, ["logging"], True) == 0.0
    assert hit_at_k(hits, ["indexing"], False) is None and hit_at_k(hits, [], True) is None
    assert hit_at_k(hits, ["docs/indexing.md"], True) == 1.0  # samples/eval.jsonl's gold_sources
    assert hit_at_k(hits, ["other/indexing.md"], True) == 0.0
    assert hit_at_k(hits, ["indexing.md"], True) == 1.0  # a file name, as `index eval` takes it
    assert evidence_recall(hits, ["run the sync command", "missing"], True) == 0.5


def test_conditionalqa_rows_are_converted_at_load_time() -> None:
    row = {"id": "dev-5", "doc_id": "parental-leave", "scenario": "I had a stillbirth.",
           "question": "Can my partner take leave?", "not_answerable": False,
           "answers": [{"answer": "yes", "conditions_html": []}],
           "evidences_html": ["<p>You may be able to take &lsquo;leave&rsquo;.</p>"]}
    item = question_item(row, "dev-5")
    assert item.question == "I had a stillbirth. Can my partner take leave?"
    assert item.references == ("yes",) and item.gold_ids == ("parental-leave",)
    assert item.gold_texts == ("You may be able to take \u2018leave\u2019.",)


def test_gold_sources_are_read_as_gold_ids() -> None:
    item = question_item({"question": "q", "answers": ["a"],
                          "gold_sources": ["docs/indexing.md"]}, "1")
    assert item.gold_ids == ("docs/indexing.md",)


def test_item_hash_ignores_references() -> None:
    a = question_item({"question": "q", "answers": ["x"]}, "1")
    b = question_item({"question": "q", "answers": ["y"]}, "2")
    assert a.hash == b.hash


def test_load_errors_name_the_place(tmp_path) -> None:
    with pytest.raises(InputError, match="neither a JSONL file nor a dataset"):
        load_items("missing.jsonl", tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q"}\nnot json\n')
    with pytest.raises(InputError, match="bad.jsonl, line 2: not valid JSON"):
        load_items(str(bad), tmp_path)
    lonely = tmp_path / "lonely.jsonl"
    lonely.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(InputError, match="line 1: the conversation has no user turn followed"):
        load_items(str(lonely), tmp_path)


@pytest.mark.parametrize("content, error", [
    ('{"question": "caf\xe9", "answers": ["a"]}\n'.encode("latin-1"),
     "line 2: not UTF-8 text (byte 0xe9); re-save the file as UTF-8"),
    ('{"question": "q", "answers": ["a"]}\n'.encode("utf-16"), "line 1: not UTF-8 text"),
    (b'{"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}',
     "line 2: messages[0]: \"content\" must be a string"),
    (b'{"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]}',
     "line 2: messages[0]: \"content\" must be a string"),
    (b'{"question": "q", "answers": [["a"]]}', "line 2: \"answers\" must be"),
    (b'{"question": "q", "answer": null}', "line 2: \"answers\" must be"),
    (b'{"question": ["a", "b"], "answers": ["a"]}', "line 2: \"question\" must be a string"),
    (b'{"question": "q", "gold_sources": [["a"]]}', "line 2: \"gold_sources\" must be"),
    (b'{"question": "q", "not_answerable": "false"}',
     "line 2: \"not_answerable\" must be true or false"),
    (b"[" * 100_000, "line 2: JSON nested too deeply to read"),
    (b'{"id": ["a"], "question": "q", "answers": ["a"]}',
     "line 2: \"id\" must be a string or a number"),
    (b'{"id": {"n": 1}, "messages": [{"role": "user", "content": "q"}, '
     b'{"role": "assistant", "content": "a"}]}', "line 2: \"id\" must be a string or a number"),
])
def test_a_malformed_line_is_an_error_naming_it_not_a_traceback(tmp_path, content,
                                                                 error) -> None:
    data = tmp_path / "held.jsonl"
    good = b'{"question": "q", "answers": ["a"]}\n'
    data.write_bytes(content if content.startswith(b"\xff\xfe") else good + content)
    with pytest.raises(InputError, match=re.escape(f"held.jsonl, {error}")):
        load_items(str(data), tmp_path)


def test_an_item_without_an_id_is_named_by_its_line(tmp_path) -> None:
    """A null id (a spreadsheet's empty cell) is no id: the line number names the item."""
    data = tmp_path / "held.jsonl"
    data.write_text("".join(json.dumps({"id": None, "question": q, "answers": ["a"]}) + "\n"
                            for q in ("q1", "q2")) + json.dumps({"id": 7, "question": "q3"}))
    assert [item.id for item in load_items(str(data), tmp_path)] == ["1", "2", "7"]


def test_a_byte_order_mark_and_a_single_gold_source_are_read(tmp_path) -> None:
    data = tmp_path / "held.jsonl"
    data.write_text('\ufeff{"question": "q", "answers": 7860, "gold_sources": "chatting.md"}\n',
                    encoding="utf-8")
    [item] = load_items(str(data), tmp_path)
    assert item.references == ("7860",) and item.gold_ids == ("chatting.md",)


def test_dataset_validation_split_is_read_back_to_questions(tmp_path) -> None:
    from datasets import Dataset, DatasetDict

    rendered = "Sources:\n<<<SOURCES\n[1] a.md\ntext\nSOURCES>>>\n\nQuestion: How do I sync?"
    rows = {"conversation_id": ["c1"], "messages": [[
        {"role": "system", "content": "You are...", "weight": None},
        {"role": "user", "content": "Hi", "weight": None},
        {"role": "assistant", "content": "Hello.", "weight": 0},  # history: not an item
        {"role": "user", "content": rendered, "weight": None},
        {"role": "assistant", "content": "Run sync [1].", "weight": None}]]}
    directory = tmp_path / "datasets" / "mydata"
    DatasetDict({"train": Dataset.from_dict(rows), "validation": Dataset.from_dict(rows)}
                ).save_to_disk(str(directory / "dataset"))
    items = load_items("mydata", tmp_path)
    assert [(i.id, i.question, i.references) for i in items] == [
        ("c1:3", "How do I sync?", ("Run sync [1].",))]


def test_a_field_that_is_not_read_is_warned_about_once_naming_its_first_line(tmp_path) -> None:
    """A misspelt "gold_id" or "anwsers" was dropped without a word; extra fields (notes) are
    normal, so each unread name is a warning, not an error. ConditionalQA's own fields are read
    as they are, and so raise none."""
    data = tmp_path / "held.jsonl"
    rows = [{"question": "q1", "answers": ["a"], "notes": "checked"},
            {"question": "q2", "anwsers": ["b"], "gold_id": ["docs/a.md"], "notes": "x"},
            {"question": "q3", "answers": ["c"], "gold_id": "a", "url": "https://x",
             "title": "T", "evidence_passage_ids": []}]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    warnings = []
    assert len(load_items(str(data), tmp_path, warn=warnings.append)) == 3
    read = ("the fields read are question, answers, answer, scenario, gold_ids, gold_sources, "
            "doc_id, evidences_html, not_answerable, id")
    assert warnings == [
        f'{data}, line 1: field "notes" is not read, so it is ignored (a typo?); {read}',
        f'{data}, line 2: field "anwsers" is not read, so it is ignored (a typo?); {read}',
        f'{data}, line 2: field "gold_id" is not read, so it is ignored (a typo?); {read}']
