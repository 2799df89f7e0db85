"""The ``chatbot`` command as users run it: a real subprocess on a tiny model."""

import json
import os
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from app.cli import main
from chatbot.config_file import load_config


def run_cli(*args: str, env: dict | None = None, cwd=None,
            stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=900, cwd=cwd,
                          input=stdin)


def test_help_groups_commands_by_what_users_do() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    sections = [line for line in result.output.splitlines() if line.endswith(":")]
    assert sections[0] == "Options:" and sections[1] == "Chat:" and sections[-1] == "Setup:"
    for command in ("ask", "chat", "config", "models"):
        assert f"  {command} " in result.output


def test_ask_json_prints_one_object(tiny_config) -> None:
    result = run_cli("ask", "--config", str(tiny_config), "--json", "How do I index documents?")
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert {"text", "variant", "sources", "timings", "messages"} <= set(reply)
    assert reply["variant"] == "prompt" and isinstance(reply["sources"], list)
    assert reply["messages"][-1]["content"].endswith("How do I index documents?")


def test_ask_dash_reads_the_question_from_standard_input(tiny_config) -> None:
    """`echo q | chatbot ask -` asks q, as other Unix tools read `-`, not the question "-"."""
    result = run_cli("ask", "--config", str(tiny_config), "--json", "-",
                     stdin="How do I index documents?\n")
    assert result.returncode == 0, result.stderr
    question = json.loads(result.stdout)["messages"][-1]["content"]
    assert question.endswith("How do I index documents?") and not question.endswith("-")


def test_clear_in_the_terminal_chat_starts_a_new_conversation_in_the_log(tiny_config) -> None:
    """What the model was sent after /clear has no earlier turns: exported apart, as sent."""
    import sqlite3

    result = CliRunner().invoke(main, ["chat", "--config", str(tiny_config)],
                                input="How do I index?\n/clear\nAnd search?\n/quit\n")
    assert result.exit_code == 0, result.output
    log = load_config(tiny_config).data_path / "logs.sqlite"
    sessions = sqlite3.connect(log).execute(
        "SELECT session_id, COUNT(*) FROM turns GROUP BY session_id").fetchall()
    assert len(sessions) == 2 and [turns for _, turns in sessions] == [2, 2]
    follow_up = CliRunner().invoke(main, ["chat", "--config", str(tiny_config)],
                                   input="How do I index?\nAnd search?\n/quit\n")
    assert "searched: And search? How do I index?" in follow_up.output  # what it refers to


def test_errors_are_one_line_without_traceback(tiny_config) -> None:
    result = run_cli("ask", "--config", str(tiny_config), "--variant", "nope", "hi")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: unknown variant 'nope'; variants: prompt (declare one under variants: in the "
        "config, or train an adapter of that name: chatbot train --name nope)")


def test_missing_config_is_one_line_saying_what_to_do(tmp_path) -> None:
    result = run_cli("ask", "--config", str(tmp_path / "none.yaml"), "hi")
    assert result.returncode == 1
    assert result.stderr == (f"error: config file {tmp_path / 'none.yaml'} not found; "
                             "check the path\n")
    elsewhere = run_cli("logs", "list", cwd=tmp_path)  # outside the project, no --config
    assert elsewhere.returncode == 1
    assert elsewhere.stderr == (f"error: config file configs/default.yaml not found in the "
                                f"current folder ({tmp_path}); run the command from the "
                                "project's folder, or pass --config PATH or set "
                                "$CHATBOT_CONFIG\n")
    from_env = run_cli("logs", "list", env={"CHATBOT_CONFIG": str(tmp_path / "gone.yaml")})
    assert from_env.returncode == 1  # the fix is the variable, not "set" it
    assert from_env.stderr == (f"error: config file {tmp_path / 'gone.yaml'} (from "
                               "$CHATBOT_CONFIG) not found; check the path it holds, or pass "
                               "--config PATH\n")


@pytest.mark.integration
def test_ask_answers_with_the_embedded_default_model(tmp_path) -> None:
    result = run_cli("ask", "--json", "What is chatbot-builder?",
                     env={"CHATBOT_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["model"] == "embedded:smollm2-135m-instruct" and reply["text"].strip()


def test_a_file_the_system_refuses_is_one_line(tiny_config, tmp_path) -> None:
    """An --out path that can't be written (here: inside a regular file) names the path."""
    from chatbot.logs import ConversationLog

    ConversationLog(tmp_path / "data" / "logs.sqlite").close()
    (tmp_path / "plain-file").write_text("")
    out = tmp_path / "plain-file" / "c.jsonl"
    result = run_cli("logs", "export", "--config", str(tiny_config), "--format", "openai",
                     "--out", str(out))
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and str(tmp_path / "plain-file") in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_in_use_is_one_line_before_the_server_says_where_it_listens(tiny_config) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--config", str(tiny_config), "--port", str(port))
    assert result.returncode == 1 and "web UI on" not in result.stdout
    assert result.stderr.startswith(f"error: can't listen on 127.0.0.1:{port} (Address already "
                                    "in use); another server may be using the port")


@pytest.mark.parametrize("host, why", [
    ("not_a_host", "(Name or service not known); 'not_a_host' is no address or host name known "
                   "here: pass --host 127.0.0.1 (this machine only) or 0.0.0.0 (every network)"),
    ("192.0.2.1", "(Cannot assign requested address); no network interface of this machine "
                  "has that address: pass --host 127.0.0.1 (this machine only) or 0.0.0.0 "
                  "(every network)"),
])
def test_a_host_it_cannot_listen_on_is_named_as_the_problem_not_the_port(tmp_path, host,
                                                                         why) -> None:
    """A mistyped --host said "another server may be using the port: stop it, or pass --port
    N": no port change would help."""
    config = tmp_path / "bot.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")
    result = CliRunner().invoke(main, ["serve", "--config", str(config), "--host", host,
                                       "--port", "7999", "--insecure"])
    assert result.exit_code == 1
    assert result.output == f"error: can't listen on {host}:7999 {why}\n"


def test_a_port_only_an_administrator_may_use_is_named_as_the_problem() -> None:
    """`chatbot serve --port 80` as a user: the system refuses the port (these tests may run as
    root, where it would not, so the refusal is made here)."""
    import errno

    from app.commands.serve import _what_to_change

    refused = PermissionError(errno.EACCES, "Permission denied")
    assert _what_to_change(refused, "127.0.0.1") == (
        "ports below 1024 need administrator rights here: pass --port N above 1023")


def test_a_port_out_of_range_is_refused_before_the_model_loads(tiny_config) -> None:
    result = run_cli("serve", "--config", str(tiny_config), "--port", "99999")
    assert result.returncode == 2 and "99999 is not in the range 1<=x<=65535" in result.stderr


def all_commands(command=main, path=("chatbot",)):
    """Every command and group under ``command``, each with its words on the command line."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from all_commands(sub, (*path, name))


def test_every_help_says_what_its_command_and_options_do() -> None:
    """Help text is the terminal's manual: no option listed bare, and a group's summary names
    its commands rather than ones it lacks (`chatbot ab` has only `report`). `chatbot train
    --help` listed --epochs, --lora-r, --device and eight more bare."""
    for path, command in all_commands():
        assert command.help, " ".join(path)
        bare = [opt.opts[0] for opt in command.params
                if isinstance(opt, click.Option) and not opt.help]
        assert not bare, f"{' '.join(path)}: {bare}"
    logs_help = CliRunner().invoke(main, ["logs", "--help"]).output.split("Options:")[0]
    for does in ("list", "show", "export", "correct", "erase"):
        assert does in logs_help, does
    ab_help = CliRunner().invoke(main, ["ab", "--help"]).output.split("Options:")[0]
    assert "report" in ab_help and "traffic split, arena votes, report" not in ab_help


def test_help_lists_each_command_whole_in_the_order_users_meet_them() -> None:
    """`chatbot index --help` listed eval, list, remove, search, stats, sync (by name: the sync
    that comes first, last) and cut each summary at about 60 characters ('Index PATHS (files
    or folders; default: the config's...'), as `chatbot --help` cut 'Compare variants on
    held-out data: metrics with...'."""
    for path, command in all_commands():
        if isinstance(command, click.Group):
            shown = CliRunner().invoke(main, [*path[1:], "--help"], terminal_width=80).output
            assert "Commands:" in shown or "Chat:" in shown, path
            cut = [line for line in shown.splitlines()
                   if line.endswith("...") and not line.startswith("Usage:")]
            assert not cut, f"{' '.join(path)}: {cut}"
    index_help = CliRunner().invoke(main, ["index", "--help"], terminal_width=80).output
    listed = [line.split()[0] for line in index_help.split("Commands:")[1].splitlines()
              if line.startswith("  ") and not line.startswith("   ")]
    assert listed == ["sync", "search", "eval", "list", "remove", "stats"]
    assert "default: the config's index.paths) incrementally." in " ".join(index_help.split())


def test_ask_with_nothing_indexed_says_so(tiny_config) -> None:
    """A fresh data dir answers from no documents: the terminal says why, not just a bare
    answer without sources."""
    result = run_cli("ask", "--config", str(tiny_config), "How do I index documents?")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "note: nothing is indexed yet, so answers use no documents; index them with "
        "`chatbot index sync` (the config's index.paths)")
    empty = run_cli("ask", "--config", str(tiny_config), " ")
    assert empty.stderr == "error: the message is empty; type a question\n"  # the note alone
    docs = load_config(tiny_config).index.paths[0]
    os.makedirs(docs, exist_ok=True)
    with open(os.path.join(docs, "guide.md"), "w") as handle:
        handle.write("# Indexing\n\nRun chatbot index sync to index your documents.\n")
    assert run_cli("index", "sync", "--config", str(tiny_config)).returncode == 0
    indexed = run_cli("ask", "--config", str(tiny_config), "How do I index documents?")
    assert indexed.returncode == 0 and "note:" not in indexed.stderr, indexed.stderr


def test_chat_with_questions_piped_in_prints_a_readable_transcript(tiny_config) -> None:
    """`printf 'q1\\nq2\\n' | chatbot chat`: each question on its own `you>` line and each answer
    on a `bot>` line of its own, as on a terminal, not `you> bot> ...` run together."""
    result = run_cli("chat", "--config", str(tiny_config),
                     stdin="How do I index?\nAnd search?\n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line for line in lines if "you>" in line] == [  # no bare prompt at the input's end
        "you> How do I index?", "you> And search?"]
    assert len([line for line in lines if line.startswith("bot> ")]) == 2


def test_a_question_that_starts_with_a_dash_says_how_to_ask_it(tiny_config) -> None:
    """`chatbot ask "-5 degrees?"` reads as an unknown option -5; the error shows the command
    that asks it, after `--`, and that command works."""
    result = run_cli("ask", "--config", str(tiny_config), "-5 degrees?")
    assert result.returncode == 2
    hint = result.stderr.strip().splitlines()[-1]
    assert hint.endswith("Text that starts with '-' goes after '--': python -m app ask "
                         f"--config {tiny_config} -- '-5 degrees?'"), hint
    asked = run_cli("ask", "--config", str(tiny_config), "--json", "--", "-5 degrees?")
    assert json.loads(asked.stdout)["messages"][-1]["content"].endswith("-5 degrees?")
    search = CliRunner().invoke(main, ["index", "search", "-x"])
    assert "goes after '--': main index search -- -x" in search.output
    typo = CliRunner().invoke(main, ["ask", "--jsn", "hi"])  # a mistyped option: no hint
    assert "Did you mean '--json'?" in typo.output and "goes after" not in typo.output


def test_every_command_shows_a_path_with_a_line_end_or_escape_quoted(tiny_config, tmp_path):
    """A source's file name under an answer, a config file and an output file: each printed raw
    could split its line, forge another or colour the terminal; each is shown as `chatbot index
    list` shows names, quoted with its escapes."""
    import yaml

    config = yaml.safe_load(tiny_config.read_text())
    config.update(models={**config["models"], "embedder": "hash:64"},
                  retrieval={"min_score": None})
    tiny_config.write_text(yaml.safe_dump(config))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "odd\nerror: forged\x1b[31m.md").write_text("# Index\n\nRun chatbot index sync.\n")
    assert run_cli("index", "sync", "--config", str(tiny_config)).returncode == 0
    odd = tmp_path / "no\nerror: forged\x1b[2J"
    outputs = [run_cli("ask", "--config", str(tiny_config), "How do I index?").stdout,
               run_cli("config", "check", str(odd)).stderr,
               run_cli("ask", "--config", str(odd), "hi").stderr,
               run_cli("logs", "export", "--config", str(tiny_config), "--format", "openai",
                       "--out", str(odd / "out.jsonl")).stdout]
    for output in outputs:
        assert "\x1b" not in output and "\nerror: forged" not in output, output
    assert repr("docs/odd\nerror: forged\x1b[31m.md") in outputs[0]
    assert all(repr(str(odd)) in output for output in outputs[1:3])
    assert repr(str(odd / "out.jsonl")) in outputs[3]


def test_questions_piped_in_with_a_byte_that_is_not_utf8_are_asked(tiny_config) -> None:
    """`chatbot ask -` and a piped `chatbot chat` read bytes that are not UTF-8 (a Latin-1 file)
    as U+FFFD and answer, as the shell's arguments are answered, instead of a traceback."""
    def piped(*args: str, stdin: bytes) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "app", *args, "--config", str(tiny_config)],
                              input=stdin, capture_output=True, timeout=900)

    asked = piped("ask", "--json", "-", stdin=b"Caf\xe9 hours?\n")
    assert asked.returncode == 0, asked.stderr.decode()
    assert json.loads(asked.stdout)["messages"][-1]["content"].endswith("Caf\ufffd hours?")
    chatted = piped("chat", stdin=b"Caf\xe9 hours?\n")
    assert chatted.returncode == 0, chatted.stderr.decode()
    assert "you> Caf\ufffd hours?\n" in chatted.stdout.decode()


def test_ctrl_c_while_a_piped_chat_waits_for_its_next_question_ends_it_as_at_a_prompt(
        tiny_config) -> None:
    """`slow-producer | chatbot chat`, Ctrl-C while it waits: the session ends as Ctrl-C at the
    terminal's prompt ends it (exit 0), not with click's `Aborted!` and exit 1, and not only
    when the kernel hands the SIGINT to the main thread: here another thread takes it (Linux
    prefers the thread whose id kill(2) is given), which left the main thread in read(2)."""
    import signal

    process = subprocess.Popen([sys.executable, "-m", "app", "chat", "--config", str(tiny_config)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        header = process.stdout.readline()
        assert header.endswith("/clear, /quit\n"), process.communicate()[1]
        _wait_until_it_waits_for_a_line(process)
        other = next(tid for tid in map(int, os.listdir(f"/proc/{process.pid}/task"))
                     if tid != process.pid)
        os.kill(other, signal.SIGINT)
        process.wait(timeout=60)  # its input still open: only the Ctrl-C can end it
    finally:
        process.kill()
    stdout, stderr = process.communicate()
    assert process.returncode == 0 and "Aborted!" not in stderr, stderr
    assert stdout == "\n"


def _wait_until_it_waits_for_a_line(process: subprocess.Popen, limit_s: float = 300) -> None:
    """Until the main thread sleeps in the kernel waiting on its input pipe: in select(2) or
    poll(2), or in read(2) on the pipe (Linux's name of where it sleeps)."""
    import time

    deadline = time.monotonic() + limit_s
    while True:
        assert process.poll() is None, process.communicate()[1]
        with open(f"/proc/{process.pid}/task/{process.pid}/wchan") as wchan:
            waits_in = wchan.read()
        if waits_in.startswith("poll_schedule_timeout") or "pipe_read" in waits_in:
            return
        assert time.monotonic() < deadline, f"not waiting for input after {limit_s} s: {waits_in}"


def test_ask_dash_with_nothing_piped_in_says_to_pipe_the_question(tmp_path) -> None:
    """`chatbot ask - < /dev/null` said "the message is empty; type a question": there was
    nothing to type into. It now names standard input and how to pass the question."""
    config = tmp_path / "bot.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")
    for piped in ("", " \n\n"):
        result = CliRunner().invoke(main, ["ask", "--config", str(config), "-"], input=piped)
        assert result.exit_code == 1
        assert result.output == ("error: nothing on standard input to ask; pipe the question "
                                 "in (echo 'How do I index?' | chatbot ask -), or give it "
                                 "in place of -\n")
