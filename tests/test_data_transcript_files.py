"""Transcript files in the shapes other tools save them: UTF-16 text, a JSON array."""

from __future__ import annotations

import json

import pytest

from training.data.transcripts import read_file, read_transcripts

CHAT = {"messages": [{"role": "user", "content": "How do I sync?"},
                     {"role": "assistant", "content": "Run chatbot index sync."}]}
LINES = json.dumps(CHAT) + "\n" + json.dumps(CHAT).replace("sync?", "index?") + "\n"


def test_utf16_with_a_byte_order_mark_is_read_as_the_index_reads_it(tmp_path):
    """PowerShell's `>` and Notepad's "Unicode" save UTF-16 with a mark: the text is plain."""
    for encoding in ("utf-16", "utf-16-be", "utf-32"):
        path = tmp_path / f"{encoding}.jsonl"
        data = LINES.encode(encoding)
        path.write_bytes(data if encoding != "utf-16-be" else b"\xfe\xff" + data)
        result = read_file(path)
        assert result.problems == [] and len(result.conversations) == 2, encoding
    csv = tmp_path / "faq.csv"
    csv.write_bytes("question,answer\nWhat port?,Port 7860.\n".encode("utf-16"))
    assert [c.messages[1].content for c in read_file(csv).conversations] == ["Port 7860."]


def test_utf16_without_a_byte_order_mark_is_read_as_the_index_reads_it(tmp_path):
    """`chatbot index sync` read such a file and `chatbot data build` refused it ('UTF-16 text
    without a byte-order mark ...; re-save it as UTF-8'): both now read it."""
    for order in ("le", "be"):
        path = tmp_path / f"chats-{order}.jsonl"
        path.write_bytes(LINES.encode(f"utf-16-{order}"))
        result = read_file(path)
        assert result.problems == [] and len(result.conversations) == 2, order


def test_a_binary_file_is_one_problem_worded_as_the_index_words_it(tmp_path):
    """Bytes with NULs that are no UTF-16 (a zip named .jsonl) read as 'malformed JSON' on
    line after line; now one problem, as `chatbot index sync` reports such a file."""
    path = tmp_path / "chats.jsonl"
    path.write_bytes(LINES.encode() + b"PK\x03\x04\x00\x00\x08\x00garbage\n")
    result = read_transcripts([path])
    nul = len(LINES.encode()) + 4
    assert [str(p) for p in result.problems] == [
        f"{path}: binary file, not text: a NUL byte at byte {nul} (check its extension)"]
    assert result.conversations == []


def test_a_json_array_of_conversations_is_read_as_its_lines_would_be(tmp_path):
    """Many tools export a list of conversations as one .json file; it was refused."""
    broken = {"messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "?"}]}
    sharegpt = {"conversations": [{"from": "human", "value": "Port?"},
                                  {"from": "gpt", "value": "7860."}]}
    path = tmp_path / "chats.json"
    path.write_text(json.dumps([CHAT, broken, "hello", sharegpt], indent=2), encoding="utf-8")
    result = read_file(path)
    assert [c.id for c in result.conversations] == ["chats.json[0]", "chats.json[3]"]
    assert result.conversations[1].meta == {"format": "sharegpt", "element": 3}
    assert [m.content for m in result.conversations[1].messages] == ["Port?", "7860."]
    assert [str(p) for p in result.problems] == [
        f"{path}[1]: messages[1]: two user messages in a row (messages[0] and messages[1])",
        f"{path}[2]: expected a JSON object, got a string"]
    assert result.records == 4 and result.skipped == 2


@pytest.mark.parametrize("content", [json.dumps([CHAT, CHAT], indent=2), json.dumps([CHAT])])
def test_a_json_array_saved_as_jsonl_is_one_problem_saying_to_name_it_json(tmp_path, content):
    """It read as 'malformed JSON' on each of its many lines (70 problems for 3 conversations
    written with an indent), where the other way round says to name the file .jsonl."""
    path = tmp_path / "chats.jsonl"
    path.write_text(content, encoding="utf-8")
    result = read_transcripts([path])
    assert [str(p) for p in result.problems] == [
        f"{path}: this holds a JSON array of conversations ([{{...}}, {{...}}]), not one JSON "
        "object a line: name it .json"]
    assert read_file(path.rename(tmp_path / "chats.json")).problems == []


@pytest.mark.parametrize("content, expected", [
    ('[{"messages": []}', "malformed JSON (Expecting ',' delimiter, line 1, column 18)"),
    (LINES, "expected a JSON array of conversations ([{...}, {...}]); a file of one JSON "
            "object a line is JSON Lines: name it .jsonl"),
    ("[" * 3000 + "]" * 3000, "JSON nested too deeply to read; a conversation needs only a "
                              "few levels"),
])
def test_a_json_file_that_is_no_array_of_conversations_is_one_problem(tmp_path, content,
                                                                     expected):
    path = tmp_path / "chats.json"
    path.write_text(content, encoding="utf-8")
    result = read_transcripts([path])
    assert [str(p) for p in result.problems] == [f"{path}: {expected}"]
    assert result.conversations == []
