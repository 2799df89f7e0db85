"""``chatbot index eval``: context hit@k, evidence recall@k and MRR of a user's question set."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from app.cli import main
from index.errors import EvalDataError
from index.evaluate import EvalQuestion, Miss, evaluate, gold_not_indexed, load_questions
from index.types import Chunk, Hit


def hit(rank: int, text: str, source: str = "/docs/a.html", location: str = "") -> Hit:
    return Hit(Chunk(str(rank), source, text, location, "", {}), 1 / rank, rank)


RANKING = [hit(1, "Nothing useful here."), hit(2, "You must be  16 or over."),
           hit(3, "You must live in England.", "/docs/b.html"), hit(4, "Apply online.")]
QUESTIONS = [
    EvalQuestion("who?", ("you must be 16 or over.", "Apply online.")),
    EvalQuestion("where?", ("You must live in England.",), source="a.html"),  # only in b.html
    EvalQuestion("which?", gold_passages=("docs/b.html", "/docs/a.html#Fees")),
]


def test_metrics_of_a_known_ranking():
    report = evaluate(lambda query, k: RANKING[:k], QUESTIONS, (4, 2))
    assert report.questions == 3
    assert report.hit == pytest.approx({2: 1 / 3, 4: 2 / 3})
    assert report.recall == pytest.approx({2: (1 / 2) / 3, 4: (1 + 1 / 2) / 3})
    assert report.mrr == pytest.approx((1 / 2 + 0 + 1 / 3) / 3)
    assert report.words == pytest.approx({2: 9, 4: 16})
    assert report.table().splitlines()[0] == "3 questions; MRR 0.278"
    # "where?" finds its sentence only in a passage of another file: a miss, with what was found.
    assert report.misses == (Miss("where?", ("/docs/a.html", "/docs/a.html", "/docs/b.html",
                                             "/docs/a.html")),)
    assert report.table().splitlines()[-2:] == [
        "No gold item in the top 4 for 1 question; the first passage found instead:",
        "- where? -> /docs/a.html"]
    assert report.table(shown_misses=0).splitlines()[-1] == "- ... 1 more (--json lists all)"


def test_each_k_is_its_own_search():
    """Merged passages differ with k: the top 1 of a search for 2 is not a search for 1."""
    calls = []

    def search(query: str, k: int) -> list[Hit]:
        calls.append(k)
        return [hit(1, "Apply online.")] if k == 1 else [hit(1, "x"), hit(2, "y")]

    report = evaluate(search, [EvalQuestion("q", ("Apply online.",))], (2, 1))
    assert calls == [1, 2] and report.hit == {1: 1.0, 2: 0.0} and report.mrr == 0.0


def test_a_gold_passage_location_must_start_the_hit_location():
    fees = [hit(1, "Costs 10 pounds.", "/docs/a.html", "Fees > Refunds")]
    question = [EvalQuestion("q", gold_passages=("a.html#Fees",))]
    assert evaluate(lambda query, k: fees, question, (1,)).hit == {1: 1.0}
    question = [EvalQuestion("q", gold_passages=("a.html#Refunds",))]
    assert evaluate(lambda query, k: fees, question, (1,)).hit == {1: 0.0}


def test_every_bad_line_is_reported_with_its_number(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "ok?", "gold_sentences": ["Yes."]}\n\n'
                    '{"question": "none?", "gold_sentences": "a"}\n'
                    '{"question": "both?", "gold_sentences": ["a"], "gold_passages": ["b"]}\n'
                    '{"gold_sentences": ["a"]}\n'
                    '{"question": "x", "gold_passages": "a.md"}\n'
                    "not json\n"
                    '{"question": "  ", "gold_sentences": ["a"]}\n'
                    '{"question": "q", "not_answerable": "true"}\n'
                    + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(EvalDataError) as error:
        load_questions(path)
    assert str(error.value) == (
        f'{path}: line 3: "gold_sentences" must be a list of non-empty strings; '
        'line 4: give "gold_sentences" or "gold_passages", not both; '
        'lines 5, 8: needs "question" (a string that is not empty); '
        'line 6: "gold_passages" must be a list of non-empty strings; '
        "line 7: not valid JSON (Expecting value); "
        'line 9: "not_answerable" must be true or false (not in quotes); '
        "line 10: JSON nested too deeply to read")


def test_a_question_file_from_a_spreadsheet_or_another_system_reads_as_meant(tmp_path):
    """A byte-order mark, a lone surrogate, decomposed accents and a heading in other case."""
    path = tmp_path / "q.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(
        {"question": "caf\u0065\u0301 \ud800 hours", "gold_passages": ["a.html#fees"],
         "gold_sentences": []}).encode() + b"\n" + json.dumps(
        {"question": "q", "gold_sentences": ["Open at cafe\u0301 time."]}).encode())
    first, second = load_questions(path).questions
    assert first.question == "caf\u00e9  hours"  # composed, the surrogate gone
    fees = [hit(1, "Costs 10 pounds.", "/docs/a.html", "Fees > Refunds")]
    assert evaluate(lambda query, k: fees, [first], (1,)).hit == {1: 1.0}
    cafe = [hit(1, "Open at caf\u00e9 time.")]
    assert evaluate(lambda query, k: cafe, [second], (1,)).hit == {1: 1.0}


def test_a_problem_of_many_lines_is_reported_once(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "q", "gold_passages": "a.md"}\n' * 30)
    with pytest.raises(EvalDataError) as error:
        load_questions(path)
    assert str(error.value) == (f'{path}: lines 1, 2, 3, ... (30 lines): "gold_passages" must '
                                "be a list of non-empty strings")


def test_lines_with_the_same_json_mistake_are_reported_once(tmp_path):
    """A JSON array pasted as lines: every line's trailing comma is one problem, not one a column
    (which made a 15 kB error of a 300-line file)."""
    path = tmp_path / "q.jsonl"
    path.write_text("[\n" + "".join(json.dumps({"question": "q" * n, "gold_sentences": ["a"]})
                                    + ",\n" for n in range(1, 31)) + "]\n")
    with pytest.raises(EvalDataError) as error:
        load_questions(path)
    assert str(error.value) == (f"{path}: lines 1, 32: not valid JSON (Expecting value); "
                                "lines 2, 3, 4, ... (30 lines): not valid JSON (Extra data)")


def test_a_line_separator_inside_a_question_leaves_its_line_whole(tmp_path):
    """json.dumps(ensure_ascii=False) writes U+2028 as it is; only a line end ends a line."""
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"question": "port?\u2028thanks\x85", "gold_sentences": ["a"]},
                               ensure_ascii=False) + "\n", encoding="utf-8")
    assert load_questions(path).questions[0].question.startswith("port?\u2028thanks")


def test_a_line_not_in_utf8_is_named_with_what_to_do(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_bytes(b'{"question": "ok?", "gold_sentences": ["Yes."]}\n'
                     b'{"question": "caf\xe9?", "gold_sentences": ["Yes."]}\n')
    with pytest.raises(EvalDataError) as error:
        load_questions(path)
    assert str(error.value) == f"{path}: line 2: not UTF-8 text (save the file as UTF-8)"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_utf16_file_is_named_as_such(tmp_path, encoding):
    """What PowerShell's > and Excel's "Unicode text" write; read as bytes, its lines were
    numbered twice over, and one without a byte-order mark was 'not valid JSON' line by
    line."""
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "q", "gold_sentences": ["a"]}\r\n' * 3, encoding=encoding)
    with pytest.raises(EvalDataError) as error:
        load_questions(path)
    assert str(error.value) == f"{path}: UTF-16 text; save the file as UTF-8"


def test_a_blank_gold_item_is_malformed(tmp_path):
    """A gold sentence of spaces (a spreadsheet's empty cell) was inside every passage: every
    question with one scored a hit at rank 1."""
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"question": "q", "gold_sentences": [" "]}) + "\n"
                    + json.dumps({"question": "q", "gold_passages": ["\u00a0\n"]}) + "\n")
    with pytest.raises(EvalDataError) as error:
        load_questions(path)
    assert str(error.value) == (f'{path}: line 1: "gold_sentences" must be a list of non-empty '
                                'strings; line 2: "gold_passages" must be a list of non-empty '
                                "strings")


def test_chatbot_evals_question_files_are_read(tmp_path):
    """One file serves `chatbot eval` and `chatbot index eval` (samples/eval.jsonl's format)."""
    path = tmp_path / "eval.jsonl"
    rows = [{"question": "What port?", "answers": ["7860"], "gold_sources": ["docs/chatting.md"]},
            {"question": "Can I renew?", "scenario": "I live abroad.", "answers": ["Yes."],
             "gold_sources": ["renew.md"]},
            {"question": "Fees?", "scenario": None, "gold_sources": ["fees.md"]},
            {"question": "Slack?", "answers": ["I don't know."], "gold_sources": [],
             "not_answerable": True}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    loaded = load_questions(path)
    assert loaded.not_answerable == 1
    assert loaded.questions == [EvalQuestion("What port?", gold_passages=("docs/chatting.md",)),
                                EvalQuestion("I live abroad. Can I renew?",
                                             gold_passages=("renew.md",)),
                                EvalQuestion("Fees?", gold_passages=("fees.md",))]
    path.write_text(json.dumps({"question": "q", "gold_sources": ["a.md"],
                                "gold_passages": ["b.md"]}) + "\n")
    with pytest.raises(EvalDataError, match='"gold_sources" and "gold_passages" are the same'):
        load_questions(path)


def test_an_empty_file_is_an_error(tmp_path):
    (tmp_path / "q.jsonl").write_text("\n")
    with pytest.raises(EvalDataError, match="no questions with gold items; expected JSONL"):
        load_questions(tmp_path / "q.jsonl")


def test_a_field_that_is_not_read_is_warned_about_once_naming_its_first_line(tmp_path,
                                                                            monkeypatch):
    """A misspelt "gold_sentence" was dropped without a word (as ``chatbot eval`` warns, through
    one helper); chatbot eval's own fields (answers, id, ...) are expected, not warned about."""
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"question": "q", "gold_sentences": ["a"], "sorce": "a.md",
                                "answers": ["x"], "id": 3, "evidences_html": []}) + "\n"
                    + json.dumps({"question": "r", "gold_passages": ["a.md"], "sorce": "b",
                                  "note": "?"}) + "\n")
    read = ("the fields read are question, gold_sentences, gold_passages, gold_sources, "
            "gold_ids, doc_id, source, scenario, not_answerable")
    assert load_questions(path).warnings == (
        f'{path}, line 1: field "sorce" is not read, so it is ignored (a typo?); {read}',
        f'{path}, line 2: field "note" is not read, so it is ignored (a typo?); {read}')
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\na\n")
    config = tmp_path / "bot.yaml"
    config.write_text('models:\n  embedder: "hash:256"\nindex:\n  paths: [docs]\n')
    runner = CliRunner()
    assert runner.invoke(main, ["index", "sync", "--config", str(config)]).exit_code == 0
    for json_flag in ([], ["--json"]):
        result = runner.invoke(main, ["index", "eval", "--data", str(path), *json_flag,
                                      "--config", str(config)], catch_exceptions=False)
        assert result.exit_code == 0
        assert result.stderr.count("warning: ") == 2 and '"sorce" is not read' in result.stderr


def test_a_chatbot_eval_question_file_raises_no_field_warning(tmp_path):
    """Both commands read one file: what either reads, the other expects."""
    from training.eval.evalset import load_items

    row = {"id": "a", "question": "q", "scenario": "s", "answers": ["x"], "answer": "x",
           "gold_sources": ["a.md"], "not_answerable": False, "doc_id": "a",
           "evidences_html": ["<p>x</p>"], "url": "u", "title": "t", "evidence_passage_ids": []}
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps(row) + "\n")
    warnings = []
    load_items(str(path), tmp_path, warn=warnings.append)
    assert warnings == [] and load_questions(path).warnings == ()
    path.write_text(json.dumps({"question": "q", "gold_sentences": ["a"], "source": "a.md"})
                    + "\n" + json.dumps({"question": "q", "gold_passages": ["a.md#A"]}) + "\n")
    load_items(str(path), tmp_path, warn=warnings.append)  # and the other way round
    assert warnings == []


def test_chatbot_evals_gold_ids_are_read_and_what_cant_be_scored_is_named(tmp_path):
    """A file `chatbot eval` reads is read here too: its gold_ids (or ConditionalQA's doc_id),
    one given without a list or as a number, as gold passages; a question with no gold item and
    a conversation are left out, each with its line and why, instead of refusing the file."""
    path = tmp_path / "eval.jsonl"
    rows = [{"question": "How to index?", "answers": ["sync"], "gold_ids": ["indexing"]},
            {"question": "Fees?", "gold_ids": "docs/fees.md", "gold_sources": ["x.md"]},
            {"id": "dev-5", "question": "Leave?", "doc_id": "parental-leave"},
            {"question": "Port?", "answers": ["7860"]},
            {"messages": [{"role": "user", "content": "hi"},
                          {"role": "assistant", "content": "hello"}]},
            {"question": "Row?", "gold_ids": [7]},
            {"question": "Nothing?", "gold_ids": [], "answers": ["x"]}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    loaded = load_questions(path)
    assert loaded.questions == [EvalQuestion("How to index?", gold_passages=("indexing",)),
                                EvalQuestion("Fees?", gold_passages=("docs/fees.md",)),
                                EvalQuestion("Leave?", gold_passages=("parental-leave",)),
                                EvalQuestion("Row?", gold_passages=("7",))]
    assert loaded.left_out == {"no_gold": [4, 7], "conversation": [5]}
    # chatbot data synth's test sets give both: the document, and the passage in it
    path.write_text(json.dumps({"question": "q", "gold_ids": ["a.md"],
                                "gold_passages": ["a.md#A > Fees"]}))
    assert load_questions(path).questions == [EvalQuestion("q", gold_passages=("a.md#A > Fees",))]
    path.write_text(json.dumps({"question": "q", "answers": ["a"], "gold_sentence": ["a"]}))
    with pytest.raises(EvalDataError) as error:
        load_questions(path)
    assert str(error.value).endswith('no questions with gold items; expected JSONL lines such as '
                                     '{"question": "...", "gold_sentences": ["..."]} (fields '
                                     'not read: "gold_sentence"; a typo?)')


def test_a_gold_id_is_matched_as_chatbot_eval_matches_it():
    """A file name without its extension, a path's end, or a chunk id (of a merged passage
    too): what `chatbot eval`'s hit_at_k counts, so both commands score one file alike."""
    merged = Hit(Chunk("c1+c2", "docs/fees.md", "Costs 10 pounds.", "Fees", "",
                       {"parts": ["c1", "c2"]}), 1.0, 1)
    for gold in ("fees", "fees.md", "docs/fees.md", "c2", "c1+c2"):
        question = [EvalQuestion("q", gold_passages=(gold,))]
        assert evaluate(lambda query, k: [merged], question, (1,)).hit == {1: 1.0}, gold
    for gold in ("fee", "other/fees.md", "c3"):
        question = [EvalQuestion("q", gold_passages=(gold,))]
        assert evaluate(lambda query, k: [merged], question, (1,)).hit == {1: 0.0}, gold
    chunks = [Chunk("c1", "docs/fees.md", "Costs 10 pounds.", "Fees", "")]
    assert gold_not_indexed([EvalQuestion("q", gold_passages=("fees", "c1", "c9"))],
                            chunks) == ("c9",)
