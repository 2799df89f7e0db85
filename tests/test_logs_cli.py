"""``chatbot logs list|show|export`` on a real SQLite log written by the engine."""

import json
import sqlite3

import pytest
from click.testing import CliRunner

from app.cli import main
from chatbot.engine import Engine
from chatbot.logs import ConversationLog
from chatbot.variants import Variant
from index.types import Chunk, Hit


def passages(query: str, k: int) -> list[Hit]:
    return [Hit(Chunk("c1", "docs/indexing.md", "Run chatbot index sync.", "Sync", "h"), 0.8, 1)]


@pytest.fixture
def logged(tmp_path, isolated_state, echo) -> dict:
    """Two conversations: one rated with a comment, one with an interrupted answer."""
    config = tmp_path / "bot.yaml"
    config.write_text("name: test-bot\n")
    log = ConversationLog(isolated_state / "logs.sqlite")
    engine = Engine({"prompt": Variant("prompt", "base", "rag", True)}, lambda m: echo,
                    search=passages, log=log)
    first = engine.answer("web-a", "how to sync", "prompt").result()
    second = engine.answer("web-a", "and then what", "prompt").result()
    log.add_feedback(first.turn_id, 1, "spot on")
    log.add_feedback(second.turn_id, -1)
    engine.answer("web-b", "a question", "prompt").result()
    echo.flowing.clear()  # the server stops while answering: the turn is marked interrupted
    stream = engine.answer("web-b", "cut off mid answer please", "prompt")
    next(iter(stream))
    stream.cancel()
    stream.wait()
    return {"config": str(config), "first": first, "second": second}


def without_root_override() -> list[str]:
    """The command prefix that runs a subprocess without root's access to read-only files
    and folders (none for another user)."""
    import os
    import shutil

    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv to drop the file-access override")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}"]


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_list_shows_sessions_newest_first(logged) -> None:
    result = invoke("logs", "list", "--json", "--config", logged["config"])
    sessions = json.loads(result.output)
    assert [(s["id"], s["turns"]) for s in sessions] == [("web-b", 4), ("web-a", 4)]
    text = invoke("logs", "list", "--config", logged["config"]).output
    assert "web-a" in text and "prompt" in text


def test_list_lines_up_each_column_under_its_header(logged) -> None:
    header, *rows = invoke("logs", "list", "--config", logged["config"]).output.splitlines()
    assert header.split() == ["session", "started", "variant", "turns"] and len(rows) == 2
    for row in rows:
        _, started, variant, turns = row.split()
        starts = [row.index(started), row.index(variant), len(row) - len(turns)]
        assert starts == [header.index(name) for name in ("started", "variant", "turns")], row


def test_show_prints_turns_sources_and_feedback(logged) -> None:
    text = invoke("logs", "show", "web-a", "--config", logged["config"]).output
    assert "you> how to sync" in text and "bot> how to sync" in text
    assert "[1] docs/indexing.md (Sync) score 0.8" in text
    assert "feedback: thumbs up: spot on" in text and "feedback: thumbs down" in text
    data = json.loads(invoke("logs", "show", "web-a", "--json", "--config",
                             logged["config"]).output)
    assert data["turns"][1]["messages"] == [m.as_dict() for m in logged["first"].messages]
    assert data["turns"][1]["rating"] == 1 and data["turns"][1]["hits"][0]["score"] == 0.8


def test_no_color_keeps_a_terminal_free_of_colour_codes(logged) -> None:
    """NO_COLOR (no-color.org) in the environment: plain text even on a colour terminal."""
    args = ["logs", "show", "web-a", "--config", logged["config"]]
    coloured = CliRunner().invoke(main, args, color=True)  # as a terminal gets it
    assert "\x1b[" in coloured.output
    plain = CliRunner().invoke(main, args, color=True, env={"NO_COLOR": "1"})
    assert plain.exit_code == 0 and "\x1b[" not in plain.output
    assert plain.output == CliRunner().invoke(main, args).output  # as a pipe gets it


def test_show_unknown_session_is_one_line_error(logged) -> None:
    result = CliRunner().invoke(main, ["logs", "show", "nope", "--config", logged["config"]])
    assert result.exit_code == 1
    assert "no session 'nope'" in result.output and "chatbot logs list" in result.output


def test_export_openai_has_answered_turns_and_feedback_metadata(logged, tmp_path) -> None:
    out = tmp_path / "out" / "chats.jsonl"
    result = invoke("logs", "export", "--format", "openai", "--out", str(out),
                    "--config", logged["config"])
    assert result.output.strip() == f"wrote 2 conversations, 3 answers to {out}"
    records = [json.loads(line) for line in out.read_text().splitlines()]
    first = records[0]
    assert first["messages"] == [
        {"role": "user", "content": "how to sync"}, {"role": "assistant", "content": "how to sync"},
        {"role": "user", "content": "and then what"},
        {"role": "assistant", "content": "and then what"}]
    assert first["metadata"]["session_id"] == "web-a"
    assert [(f["answer"], f["rating"], f["comment"]) for f in first["metadata"]["feedback"]] == [
        (0, 1, "spot on"), (1, -1, None)]
    # the interrupted answer and its question are left out
    assert [m["content"] for m in records[1]["messages"]] == ["a question", "a question"]


def test_export_sharegpt(logged, tmp_path) -> None:
    out = tmp_path / "chats.jsonl"
    invoke("logs", "export", "--format", "sharegpt", "--out", str(out), "--config",
           logged["config"])
    record = json.loads(out.read_text().splitlines()[0])
    assert record["id"] == "web-a"
    assert [t["from"] for t in record["conversations"]] == ["human", "gpt", "human", "gpt"]
    assert record["metadata"]["variants"] == ["prompt"]


def test_export_through_a_symlink_or_into_a_pipe_writes_where_it_points(logged,
                                                                         tmp_path) -> None:
    """`--out /dev/stdout` is a symlink to a pipe or terminal: the export must reach it, not
    replace the link with a file (as root, in /dev)."""
    import os
    import threading

    target = tmp_path / "exports" / "chats.jsonl"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "latest.jsonl"
    link.symlink_to(target)
    invoke("logs", "export", "--out", str(link), "--config", logged["config"])
    assert link.is_symlink() and len(target.read_text().splitlines()) == 2
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    received = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_text()), daemon=True)
    reader.start()
    result = invoke("logs", "export", "--out", str(pipe), "--config", logged["config"])
    reader.join(timeout=30)
    assert result.output.startswith("wrote 2 conversations")
    assert pipe.is_fifo() and received == [target.read_text()]


def test_export_to_dash_writes_the_jsonl_to_stdout_and_the_summary_to_stderr(
        logged, tmp_path, monkeypatch) -> None:
    """`--out - | jq ...`: nothing but the records on stdout, and no file named '-'."""
    monkeypatch.chdir(tmp_path)
    file_export = tmp_path / "chats.jsonl"
    invoke("logs", "export", "--out", str(file_export), "--config", logged["config"])
    result = invoke("logs", "export", "--out", "-", "--config", logged["config"])
    assert result.stdout == file_export.read_text()
    assert result.stderr.startswith("wrote 2 conversations, ") and "to stdout" in result.stderr
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("out, refusal", [
    ("data/logs.sqlite", "is the bot's conversation log; choose another --out path"),
    ("data/logs.sqlite-wal", "is the bot's conversation log; choose another --out path"),
    ("link.jsonl", "is the bot's conversation log; choose another --out path"),
    ("bot.yaml", "is the bot's config file; choose another --out path"),
    ("data/index/chats.jsonl", "is inside the bot's search index"),
    ("data/logs.sqlite/chats.jsonl", "logs.sqlite is a file, not a folder")],
    ids=["log", "wal", "symlink", "config", "index", "under-a-file"])
def test_export_never_writes_over_the_bots_own_files(logged, tmp_path, out, refusal) -> None:
    """A mistyped --out must not replace the log being exported (or the config) with JSONL."""
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "data" / "logs.sqlite")
    sessions = invoke("logs", "list", "--json", "--config", logged["config"]).output
    config = (tmp_path / "bot.yaml").read_bytes()
    result = CliRunner().invoke(main, ["logs", "export", "--out", str(tmp_path / out),
                                       "--config", logged["config"]])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{tmp_path / out}" in result.output and refusal in result.output
    assert (tmp_path / "bot.yaml").read_bytes() == config
    # the log's bytes may move as SQLite folds its WAL in; what it holds may not
    assert (tmp_path / "data" / "logs.sqlite").read_bytes().startswith(b"SQLite format 3")
    assert invoke("logs", "list", "--json", "--config", logged["config"]).output == sessions
    assert not (tmp_path / "data" / "index").exists()


def test_no_log_yet_says_how_to_make_one(tmp_path) -> None:
    config = tmp_path / "bot.yaml"
    config.write_text("{}\n")
    result = CliRunner().invoke(main, ["logs", "list", "--config", str(config)])
    assert result.exit_code == 1 and "no conversation log at" in result.output


def test_a_failed_export_leaves_the_file_it_would_replace(tmp_path) -> None:
    config = tmp_path / "bot.yaml"
    config.write_text("{}\n")
    backup = tmp_path / "backup.jsonl"
    backup.write_text('{"messages": []}\n')
    result = CliRunner().invoke(main, ["logs", "export", "--out", str(backup), "--config",
                                       str(config)])
    assert result.exit_code == 1 and "no conversation log at" in result.output
    assert backup.read_text() == '{"messages": []}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.jsonl", "bot.yaml"]


def test_a_damaged_log_is_one_line_naming_it_and_is_left_as_it_was(tmp_path,
                                                                   isolated_state) -> None:
    config = tmp_path / "bot.yaml"
    config.write_text("{}\n")
    damaged = isolated_state / "logs.sqlite"
    damaged.parent.mkdir()
    damaged.write_bytes(b"not a database, " * 64)
    result = CliRunner().invoke(main, ["logs", "list", "--config", str(config)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith(f"error: the conversation log {damaged} can't be read (file "
                                    "is not a database); restore it from a backup, or move it "
                                    f"aside (mv {damaged} {damaged}.broken)")
    assert damaged.read_bytes() == b"not a database, " * 64


def test_show_says_why_an_answer_ended_in_error(tmp_path, isolated_state, echo) -> None:
    """An operator reading the log later sees what the user was shown, not just ``error``."""
    from chatbot.errors import ModelError

    def failing_stream(messages, settings, adapter=None, cancel=None):
        yield "Run "
        raise ModelError("backend 'remote' did not answer within 120 s")

    echo.stream = failing_stream
    log = ConversationLog(isolated_state / "logs.sqlite")
    engine = Engine({"prompt": Variant("prompt", "base", "rag", True)}, lambda m: echo,
                    search=passages, log=log)
    with pytest.raises(ModelError):
        engine.answer("web-c", "how to sync", "prompt").result()
    [answer] = [t for t in log.conversation("web-c").turns if t.role == "assistant"]
    assert answer.status == "error" and answer.error == (
        "backend 'remote' did not answer within 120 s")
    (tmp_path / "bot.yaml").write_text("name: test-bot\n")
    text = invoke("logs", "show", "web-c", "--config", str(tmp_path / "bot.yaml")).output
    assert "error: backend 'remote' did not answer within 120 s" in text


def test_delete_erases_a_persons_sessions_from_the_log_file_itself(logged, isolated_state,
                                                                   tmp_path) -> None:
    """What someone wrote must be gone from the disk, not only from `logs list`."""
    path = isolated_state / "logs.sqlite"
    with sqlite3.connect(path) as db:  # the conversations in the database file, not the WAL
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    asked = CliRunner().invoke(main, ["logs", "delete", "--containing", "HOW TO SYNC",
                                      "--config", logged["config"]], input="n\n")
    assert asked.exit_code == 1 and asked.output.startswith("web-a\t")  # it asks first
    result = invoke("logs", "delete", "--containing", "HOW TO SYNC", "--yes",
                    "--config", logged["config"])
    assert "erased 1 session: 4 turns, 2 ratings, 0 corrections" in result.output
    sessions = json.loads(invoke("logs", "list", "--json", "--config", logged["config"]).output)
    assert [s["id"] for s in sessions] == ["web-b"]
    on_disk = b"".join(p.read_bytes() for p in path.parent.glob("logs.sqlite*"))
    assert b"how to sync" not in on_disk and b"spot on" not in on_disk
    assert b"a question" in on_disk  # the other session is kept
    missing = CliRunner().invoke(main, ["logs", "delete", "web-zz", "--yes", "--config",
                                        logged["config"]])
    assert missing.exit_code == 1 and "no session 'web-zz'" in missing.output


def test_delete_not_confirmed_says_nothing_was_erased_and_how_to_skip_asking(logged) -> None:
    """A script with no one to answer (stdin closed) learns about --yes, not a bare
    "Aborted!"."""
    for answer in ("n\n", ""):
        asked = CliRunner().invoke(main, ["logs", "delete", "web-a", "--config",
                                          logged["config"]], input=answer)
        assert asked.exit_code == 1
        assert asked.stderr.splitlines()[-1] == (
            "error: nothing erased; answer y to erase, or pass --yes to erase without asking")
    sessions = json.loads(invoke("logs", "list", "--json", "--config", logged["config"]).output)
    assert {s["id"] for s in sessions} == {"web-a", "web-b"}


def test_a_log_that_cant_be_written_is_read_but_answered_into_by_nobody(tmp_path) -> None:
    """A read-only log: `logs list` reads it (a pending answer it can't close is left as
    it is); a bot that would answer into it refuses to start, naming it."""
    import socket
    import subprocess
    import sys

    config = tmp_path / "bot.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\nmodels: {{embedder: 'hash:64'}}\n")
    path = tmp_path / "data" / "logs.sqlite"
    log = ConversationLog(path)
    log.ensure_session("web-a")
    orphan = log.add_turn("web-a", "assistant", "", status="pending")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    log._db.execute("UPDATE turns SET writer = ? WHERE id = ?",
                    (f"{socket.gethostname()}:{gone}", orphan))
    log._db.commit()
    log.close()
    path.chmod(0o444)
    as_user = without_root_override()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*as_user, sys.executable, "-m", "app", *args, "--config",
                               str(config)], capture_output=True, text=True, timeout=300)

    listed = run("logs", "list")
    assert listed.returncode == 0 and "web-a" in listed.stdout, listed.stderr
    asked = run("ask", "hi")
    assert asked.returncode == 1 and asked.stderr == (
        f"error: the conversation log {path} can't be written (attempt to write a readonly "
        "database); give this user write access to it and its folder, or set "
        "logging.enabled: false\n")


def test_delete_containing_matches_any_case_beyond_ascii(tmp_path, isolated_state) -> None:
    """`--containing` is a person's name or address as someone else typed it: Élodie's
    request spelt ÉLODIE MÜLLER must still find what she wrote."""
    config = tmp_path / "bot.yaml"
    config.write_text("name: test-bot\n")
    log = ConversationLog(isolated_state / "logs.sqlite")
    log.ensure_session("web-e")
    log.add_turn("web-e", "user", "I am Élodie Müller, élodie@exämple.de")
    log.ensure_session("web-f")
    log.add_turn("web-f", "user", "unrelated")
    log.close()
    for spelt in ("ÉLODIE MÜLLER", "ÉLODIE@EXÄMPLE.DE"):
        found = CliRunner().invoke(main, ["logs", "delete", "--containing", spelt,
                                          "--config", str(config)], input="n\n")
        assert found.output.startswith("web-e\t"), (spelt, found.output)
    result = invoke("logs", "delete", "--containing", "élodie müller", "--yes",
                    "--config", str(config))
    assert "erased 1 session: 1 turn" in result.output
    remaining = json.loads(invoke("logs", "list", "--json", "--config", str(config)).output)
    assert [s["id"] for s in remaining] == ["web-f"]


def test_list_with_a_limit_too_large_for_sqlite_lists_everything(logged) -> None:
    """`--limit 99999999999999999999` means "all of them", not a traceback."""
    result = CliRunner().invoke(main, ["logs", "list", "--limit", "99999999999999999999",
                                       "--config", logged["config"]])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert [line.split()[0] for line in result.output.splitlines()[1:]] == ["web-b", "web-a"]


def test_export_into_a_read_only_folder_names_the_file_asked_for(logged, tmp_path) -> None:
    """Not the hidden temporary file the export writes first, which the user never named."""
    import subprocess
    import sys

    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    out = folder / "chats.jsonl"
    result = subprocess.run([*without_root_override(), sys.executable, "-m", "app", "logs",
                             "export", "--out", str(out), "--config", logged["config"]],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and result.stderr == f"error: {out}: Permission denied\n"
    assert list(folder.iterdir()) == []


def test_a_log_another_process_keeps_locked_is_one_line_and_left_unchanged(
        logged, isolated_state, monkeypatch) -> None:
    """A write held open past SQLite's busy timeout (a stuck process, a `sqlite3` shell in a
    transaction): `logs correct` and `logs delete` say so and change nothing, where both were
    a `database is locked` traceback."""
    from chatbot import migrations

    monkeypatch.setattr(migrations, "BUSY_TIMEOUT_S", 0.2)
    path = isolated_state / "logs.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        for command in (["correct", str(logged["first"].turn_id), "--text", "Run it twice."],
                        ["delete", "web-a", "--yes"]):
            result = CliRunner().invoke(main, ["logs", *command, "--config", logged["config"]])
            assert result.exit_code == 1 and result.output.splitlines()[-1] == (
                f"error: the conversation log {path} is locked by another process that has "
                "been writing to it for over 0.2 s (database is locked); nothing was changed: "
                "try again once it is done"), result.output
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    log = ConversationLog(path)
    assert log.conversation("web-a").turns[1].correction is None
    log.close()
