"""Reading transcript files: every format, every invalid-input case with its positional message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatbot.types import Message
from training.errors import DataError
from training.data.transcripts import QAFields, read_file, read_transcripts

DATA = Path(__file__).parent / "data" / "transcripts"
INVALID = str(DATA / "invalid.jsonl")


def test_openai_lines_become_conversations_with_file_and_line_ids():
    result = read_file(DATA / "openai.jsonl")
    assert result.problems == [] and result.records == 11 and result.skipped == 0
    first = result.conversations[0]
    assert first.id == "openai.jsonl:1" and first.meta["format"] == "openai"
    assert [m.role for m in first.messages] == ["user", "assistant"]
    assert result.conversations[10].messages[0] == Message("system", "You are a terse assistant.")


def test_sharegpt_roles_are_mapped():
    result = read_file(DATA / "sharegpt.jsonl")
    roles = [m.role for m in result.conversations[1].messages]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    assert result.conversations[1].meta["format"] == "sharegpt"


def test_question_answer_csv_with_default_columns():
    result = read_file(DATA / "faq.csv")
    assert len(result.conversations) == 3
    assert result.conversations[0].messages == (
        Message("user", "What does retrieval.k do?"),
        Message("assistant", "It sets how many passages are put into the prompt; 4 by default."))
    assert result.conversations[0].id == "faq.csv:2"  # the header is line 1


def test_a_spreadsheets_byte_order_mark_and_line_breaks_inside_cells_are_read(tmp_path):
    """Excel's "CSV UTF-8" starts with a byte-order mark; a multi-line answer is one cell."""
    path = tmp_path / "faq.csv"
    path.write_bytes('\ufeffquestion,answer\r\nHow do I return it?,"Steps:\r\n1. Pack it.\n'
                     '2. Send it."\r\nWhy?,Because.\r\n'.encode("utf-8"))
    result = read_file(path)
    assert not result.problems
    assert [m.content for m in result.conversations[0].messages] == [
        "How do I return it?", "Steps:\n1. Pack it.\n2. Send it."]
    assert [c.id for c in result.conversations] == ["faq.csv:2", "faq.csv:5"]  # first lines
    jsonl = tmp_path / "chats.jsonl"
    jsonl.write_bytes(b'\xef\xbb\xbf{"messages": [{"role": "user", "content": "Hi"}, '
                      b'{"role": "assistant", "content": "Hello"}]}\n')
    assert len(read_file(jsonl).conversations) == 1 and not read_file(jsonl).problems


def test_question_answer_jsonl_with_configured_field_names():
    unconfigured = read_file(DATA / "faq_custom.jsonl")
    assert unconfigured.conversations == [] and len(unconfigured.problems) == 2
    result = read_file(DATA / "faq_custom.jsonl", QAFields(question="q", answer="a"))
    assert [m.content for m in result.conversations[1].messages] == [
        "How do I switch the default variant?",
        "Set default_variant in the bot config to the name of one of the variants."]


def test_a_question_or_answer_that_is_not_text_is_a_problem_not_its_python_spelling(tmp_path):
    path = tmp_path / "faq.jsonl"
    rows = [{"question": ["What", "port?"], "answer": "7860"},
            {"question": "What port?", "answer": {"port": 7860}},
            {"question": "Is it on?", "answer": True},
            {"question": "What port?", "answer": 7860, "system": ["be terse"]},
            {"question": "What port?", "answer": 7860}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = read_file(path, QAFields(system="system"))
    assert [str(p) for p in result.problems] == [
        f"{path}:1: 'question' must be a string, got a list",
        f"{path}:2: 'answer' must be a string, got an object",
        f"{path}:3: 'answer' must be a string, got true or false",
        f"{path}:4: 'system' must be a string, got a list"]
    assert [c.messages for c in result.conversations] == [
        (Message("user", "What port?"), Message("assistant", "7860"))]


def test_a_csv_row_with_more_cells_than_the_header_is_a_problem(tmp_path):
    """An answer with an unquoted comma ("Yes, online") was cut at the comma and trained on as
    "Yes", the rest of it dropped without a word."""
    path = tmp_path / "faq.csv"
    path.write_text("question,answer\nCan I renew?,Yes, online or by post\nWhat port?,7860\n")
    result = read_file(path)
    assert [str(p) for p in result.problems] == [
        f"{path}:2: 3 cells where the header has 2 columns; put a cell that holds a comma in "
        "double quotes"]
    assert [c.messages[1].content for c in result.conversations] == ["7860"]


def test_a_csv_quote_never_closed_is_a_problem_not_an_answer_holding_the_rest(tmp_path):
    """Python's csv module reads the rest of the file into that one cell, without a word."""
    path = tmp_path / "faq.csv"
    path.write_text('question,answer\nWhat port?,7860\nHow?,"Run it\nWhere?,Here\n')
    result = read_file(path)
    assert [str(p) for p in result.problems] == [
        f"{path}:3: a double quote opened there is never closed, so the rest of the file read "
        'as one cell; close it, and write a quote inside a quoted cell twice ("")']
    assert [c.messages[1].content for c in result.conversations] == ["7860"]


def test_a_jsonl_answer_holding_a_line_separator_is_one_line(tmp_path):
    """json.dumps(ensure_ascii=False) writes U+2028 and U+0085 as they are, inside a string."""
    answer = "Open\u2028Monday\x85 to Friday."
    path = tmp_path / "faq.jsonl"
    path.write_text(json.dumps({"question": "When?", "answer": answer}, ensure_ascii=False)
                    + "\n", encoding="utf-8")
    result = read_file(path)
    assert result.problems == []
    assert [c.messages[1].content for c in result.conversations] == [answer]


def test_a_csv_cell_over_128_kib_is_read_as_a_long_jsonl_line_is(tmp_path):
    """Python's csv module stops at 131,072 characters a cell; the length step drops a long
    conversation, and the rows after it are read."""
    path = tmp_path / "faq.csv"
    path.write_text(f"question,answer\nSummarise?,{'word ' * 40_000}\nWhat port?,7860\n")
    result = read_file(path)
    assert result.problems == [] and len(result.conversations) == 2
    assert result.conversations[1].messages[1] == Message("assistant", "7860")


def test_sgd_rows_map_user_and_system_turns(tmp_path):
    row = {"uid": "train/1_00001", "turns": [
        {"speaker": "USER", "utterance": "Find me a table for two."},
        {"speaker": "SYSTEM", "utterance": "Which city?"},
        {"speaker": "USER", "utterance": "Phoenix."},
        {"speaker": "SYSTEM", "utterance": "Booked at 7 pm."}]}
    path = tmp_path / "sgd.jsonl"
    path.write_text(json.dumps(row) + "\n")
    conversation = read_file(path).conversations[0]
    assert [m.role for m in conversation.messages] == ["user", "assistant"] * 2
    assert conversation.meta["format"] == "sgd"


def test_openais_weight_marks_an_assistant_message_as_context_only(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Hullo.", "weight": 0},
                          {"role": "user", "content": "Port?"},
                          {"role": "assistant", "content": "4242.", "weight": 1}]},
            {"messages": [{"role": "user", "content": "Hi", "weight": 0},
                          {"role": "assistant", "content": "Hello."}]},
            {"messages": [{"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Hello.", "weight": 0.5}]}]
    path = tmp_path / "weighted.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = read_file(path)
    assert [m.weight for m in result.conversations[0].messages] == [None, 0, None, 1]
    assert [str(p).removeprefix(f"{tmp_path}/") for p in result.problems] == [
        "weighted.jsonl:2: messages[0]: 'weight' is 0; only an assistant message may carry one,"
        " 0 (context only) or 1 (learned)",
        "weighted.jsonl:3: messages[1]: 'weight' is 0.5; only an assistant message may carry "
        "one, 0 (context only) or 1 (learned)"]



def test_an_exported_logs_feedback_that_names_no_answer_is_a_problem_of_its_line(tmp_path):
    chat = [{"role": "user", "content": "Port?"}, {"role": "assistant", "content": "4242."}]
    rows = [{"messages": chat, "metadata": {"feedback": [{"answer": 0, "rating": -1}]}},
            {"messages": chat, "metadata": {"feedback": [{"answer": 1, "rating": 1}]}},
            {"messages": chat, "metadata": {"feedback": [{"answer": 0, "rating": "down"}]}}]
    path = tmp_path / "exported.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = read_file(path)
    assert [c.meta["rating"] for c in result.conversations] == [-1]
    assert [str(p).removeprefix(f"{tmp_path}/") for p in result.problems] == [
        "exported.jsonl:2: metadata.feedback[0]: 'answer' must be the number of one of the "
        "conversation's 1 answers, counted from 0; got 1",
        "exported.jsonl:3: metadata.feedback[0]: 'rating' must be 1 (thumbs up) or -1 (down); "
        "got 'down'"]

EXPECTED_PROBLEMS = [
    "invalid.jsonl:2: malformed JSON (Unterminated string starting at, column 43)",
    "invalid.jsonl:3: messages[1]: unknown role 'bot' (expected one of: system, user, assistant)",
    "invalid.jsonl:4: messages[1]: two user messages in a row (messages[0] and messages[1])",
    "invalid.jsonl:5: messages[1]: empty assistant message",
    "invalid.jsonl:6: conversations[1]: unknown role 'robot' (expected one of: human, gpt, system)",
    "invalid.jsonl:7: messages[2]: the last message must be the assistant's answer "
    "(the training target)",
    "invalid.jsonl:8: expected a JSON object, got a list",
    "invalid.jsonl:9: unrecognised record with the field(s) text: expected 'messages' (OpenAI), "
    "'conversations' (ShareGPT), 'turns' (SGD) or 'question'/'answer' fields (set "
    "data.question_field/data.answer_field in the config to read others)",
    "invalid.jsonl:10: messages[0]: 'content' must be a string, got a number",
    "invalid.jsonl:12: messages[0]: an assistant message must follow a user message",
]


def test_every_invalid_line_is_reported_with_its_position_and_the_rest_is_kept():
    result = read_transcripts([INVALID])
    assert [str(p).removeprefix(str(DATA) + "/") for p in result.problems] == EXPECTED_PROBLEMS
    assert len(result.conversations) == 1  # line 1; the blank line 11 is not a record
    assert result.records == 11 and result.skipped == 10


def test_strict_mode_raises_listing_the_problems():
    with pytest.raises(DataError) as error:
        read_transcripts([DATA / "openai.jsonl", INVALID], strict=True)
    message = str(error.value)
    assert message.startswith("10 problems in the imported transcripts (strict mode;")
    assert "invalid.jsonl:4: messages[1]: two user messages in a row" in message


GOOD_LINE = json.dumps({"messages": [{"role": "user", "content": "How do I index?"},
                                     {"role": "assistant", "content": "Run chatbot index sync."}]})


@pytest.mark.parametrize("name, content, expected", [
    ("missing.jsonl", None, "missing.jsonl: file not found"),
    ("notes.txt", b"hello", "notes.txt: unsupported file type '.txt'; expected .jsonl (one "
     "JSON object a line), .json (an array of them) or .csv/.tsv"),
    ("export.csv", GOOD_LINE.encode() + b"\n", "export.csv: this holds JSON, not CSV; if it is one "
     "JSON object a line, name it .jsonl"),
    ("bad.csv", b"prompt,reply\nhi,hello\n",
     "bad.csv: CSV header has no column(s) question, answer (found: prompt, reply); "
     "set data.question_field/data.answer_field in the config"),
    ("zip.csv", b"PK\x03\x04\x00\x00question,answer\n",
     "zip.csv: binary file, not text: a NUL byte at byte 4 (check its extension)"),
    ("cp1252.csv", "Fr\xe4ge,answer\nWhat port?,7860\n".encode("cp1252"),
     "cp1252.csv: the CSV header is not UTF-8 text (byte 0xe4); re-save the file as UTF-8"),
])
def test_unparseable_files_are_one_problem_at_line_zero(tmp_path, name, content, expected):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    result = read_transcripts([path, DATA / "faq.csv"])
    assert [str(p).removeprefix(str(tmp_path) + "/") for p in result.problems] == [expected]
    assert len(result.conversations) == 3  # the other file is still read


@pytest.mark.parametrize("name, bad_line, expected", [
    ("latin1.jsonl", GOOD_LINE.replace("index?", "caf\xe9?").encode("latin-1"),
     "latin1.jsonl:2: not UTF-8 text (byte 0xe9); re-save the file as UTF-8"),
    ("latin1.csv", "Caf\xe9?,Yes.".encode("latin-1"),
     "latin1.csv:3: not UTF-8 text (byte 0xe9); re-save the file as UTF-8"),
    ("deep.jsonl", b'{"messages": ' + b"[" * 3000 + b"]" * 3000 + b"}",
     "deep.jsonl:2: JSON nested too deeply to read; a conversation needs only a few levels"),
    ("surrogate.jsonl", GOOD_LINE.replace("index?", "index \\ud800?").encode(),
     "surrogate.jsonl:2: messages[0]: a lone surrogate (an unpaired \\ud800-\\udfff escape) "
     "is not text; remove it"),
])
def test_a_line_that_cant_be_read_is_skipped_by_number_and_the_rest_imported(
        tmp_path, name, bad_line, expected):
    first, last = (b"question,answer\nWhat?,That.", b"Why?,Because.") if name.endswith(".csv") \
        else (GOOD_LINE.encode(), GOOD_LINE.replace("How", "Why").encode())
    path = tmp_path / name
    path.write_bytes(b"\n".join([first, bad_line, last]) + b"\n")
    result = read_transcripts([path])
    assert [str(p).removeprefix(str(tmp_path) + "/") for p in result.problems] == [expected]
    assert len(result.conversations) == 2 and result.skipped == 1
    with pytest.raises(DataError) as error:
        read_transcripts([path], strict=True)
    assert expected in str(error.value)


def test_ids_stay_unique_across_files_of_one_name_and_a_file_given_twice(tmp_path):
    for folder in ("v1", "v2"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "export.jsonl").write_text(
            (DATA / "openai.jsonl").read_text().splitlines()[0] + "\n")
    first, second = tmp_path / "v1" / "export.jsonl", tmp_path / "v2" / "export.jsonl"
    result = read_transcripts([first, second, first])
    assert [c.id for c in result.conversations] == [f"{first}:1", f"{second}:1"]
    assert [str(p) for p in result.problems] == [f"{first}: given more than once; read once"]



@pytest.mark.parametrize("separator, name, suffix", [(";", "semicolon", "csv"),
                                                      ("\t", "tab", "csv"), ("\t", "tab", "tsv")])
def test_a_csv_separated_by_semicolons_or_tabs_is_read_as_spreadsheets_save_it(
        tmp_path, separator, name, suffix):
    """Spreadsheets where a comma is the decimal mark save cells separated by ';'."""
    path = tmp_path / f"faq.{suffix}"
    path.write_text(f'question{separator}answer\n"How do I sync?"{separator}"Run sync, then '
                    f'wait."\nWhich port?{separator}7860{separator} or 8080\n', encoding="utf-8")
    result = read_file(path)
    assert [[m.content for m in c.messages] for c in result.conversations] == [
        ["How do I sync?", "Run sync, then wait."]]
    assert [str(p) for p in result.problems] == [
        f"{path}:3: 3 cells where the header has 2 columns; put a cell that holds a {name} in "
        "double quotes"]


def test_openais_content_parts_are_read_as_the_api_reads_them(tmp_path):
    """OpenAI's chat format may give a message's content as a list of parts; the bot's own
    API takes its text parts, joined by line breaks, and so does an import."""
    parts = [{"type": "text", "text": "How do I sync?"}, {"type": "text", "text": "On Linux."}]
    image = [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]
    path = tmp_path / "parts.jsonl"
    path.write_text("\n".join(json.dumps({"messages": [
        {"role": "user", "content": content},
        {"role": "assistant", "content": [{"type": "text", "text": "Run sync."}]}]})
        for content in (parts, image)) + "\n", encoding="utf-8")
    result = read_file(path)
    assert [[m.content for m in c.messages] for c in result.conversations] == [
        ["How do I sync?\nOn Linux.", "Run sync."]]
    assert [str(p) for p in result.problems] == [
        f"{path}:2: messages[0]: 'content' has a part of type 'image_url'; only text can be "
        "trained on"]


@pytest.mark.parametrize("header", ["Question, Answer", "question ,ANSWER", " question,answer"])
def test_csv_columns_are_found_whatever_their_case_and_the_spaces_around_them(tmp_path, header):
    """A spreadsheet's header is typed by a person: "Question, Answer" names the columns."""
    path = tmp_path / "faq.csv"
    path.write_text(f'{header}\nHow do I sync?, "Run sync, then wait."\n', encoding="utf-8")
    result = read_file(path)
    assert result.problems == []
    assert [[m.content for m in c.messages] for c in result.conversations] == [
        ["How do I sync?", "Run sync, then wait."]]



def test_a_wrong_json_value_is_named_as_json_names_it(tmp_path):
    """A person who wrote the file wrote JSON: null, not NoneType; a string, not str."""
    path = tmp_path / "chats.jsonl"
    path.write_text('null\n{"messages": null}\n"hello"\n', encoding="utf-8")
    assert [str(p).removeprefix(f"{path}:") for p in read_file(path).problems] == [
        "1: expected a JSON object, got null", "2: 'messages' must be a list, got null",
        "3: expected a JSON object, got a string"]


def test_an_unrecognised_record_names_its_first_fields_only(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({f"field{n}": n for n in range(30)}) + "\n", encoding="utf-8")
    [problem] = read_file(path).problems
    assert str(problem).startswith(f"{path}:1: unrecognised record with the field(s) field0, "
                                   "field1, field2, field3, field4 and 25 more: expected")


@pytest.mark.parametrize("name", ["empty.csv", "empty.jsonl"])
def test_an_empty_file_holds_no_conversation_and_no_problem(tmp_path, name):
    """An empty CSV has no header to fault: the build says the file holds no conversation."""
    path = tmp_path / name
    path.write_text("\n", encoding="utf-8")
    result = read_file(path)
    assert (result.conversations, result.problems) == ([], [])
