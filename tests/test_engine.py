"""The engine with an echo generator: streaming, prompts, history, policies, filters, logging."""

import json
import os
import signal
import sqlite3
import threading
import time

import pytest

from chatbot.answer_stream import AnswerStream, RetrievalPolicy
from chatbot.engine import Engine
from chatbot.errors import InputError, ModelError
from chatbot.filters import blocklist_filter
from chatbot.generate import GenerationSettings
from chatbot.logs import ConversationLog
from chatbot.types import Message
from chatbot.variants import Variant
from index.types import Chunk, Hit

PROMPT = Variant("prompt", "base", "rag", retrieval=True)
PLAIN = Variant("plain", "base", "plain", retrieval=False)


def hit(n: int, text: str = "Run chatbot index sync docs/.") -> Hit:
    return Hit(Chunk(f"c{n}", "docs/indexing.md", text, "Indexing > Sync", "h"), 0.8, n)


def make_engine(echo, search=None, **kwargs) -> Engine:
    loads = []

    def load(model):
        loads.append(model)
        return echo

    settings = kwargs.pop("settings", GenerationSettings(max_new_tokens=40))
    engine = Engine({"prompt": PROMPT, "plain": PLAIN}, load, search=search, settings=settings,
                    **kwargs)
    engine.loads = loads
    return engine


def test_streamed_pieces_make_the_reply_and_the_prompt_is_exact(echo) -> None:
    engine = make_engine(echo, search=lambda q, k: [hit(1), hit(2, "Use --mode bm25.")][:k])
    stream = engine.answer("s1", "how do I sync my docs", "prompt")
    pieces = list(stream)
    reply = stream.reply
    assert "".join(pieces) == reply.text == "how do I sync my docs"
    assert reply.messages == echo.calls[0][0]
    assert reply.messages[0].role == "system" and "cite" in reply.messages[0].content.lower()
    user = reply.messages[-1].content
    assert "[1] docs/indexing.md (Indexing > Sync)\nRun chatbot index sync docs/." in user
    assert "[2] docs/indexing.md" in user and "<<<SOURCES" in user
    assert [h.rank for h in reply.hits] == [1, 2]
    assert reply.variant == "prompt" and reply.model_id == "base" and reply.adapter_id is None
    assert set(reply.timings) >= {"retrieval_ms", "prompt_ms", "first_token_ms", "total_ms",
                                  "tokens", "tokens_per_s"}


def test_variant_without_retrieval_gets_no_sources(echo) -> None:
    engine = make_engine(echo, search=lambda q, k: [hit(1)])
    reply = engine.answer("s", "hello there", "plain").result()
    assert reply.hits == [] and "SOURCES" not in reply.messages[-1].content


def test_the_callers_history_is_sent_and_trimmed_oldest_first(echo) -> None:
    echo.context_window = 80  # a 40-token prompt budget after 40 new tokens
    engine = make_engine(echo)
    history = []
    for question in ["one two three four five", "six seven eight nine ten", "eleven twelve"]:
        reply = engine.answer("s", question, "plain", history=history).result()
        history += [Message("user", question), Message("assistant", reply.text)]
    assert engine.answer("s", "alone", "plain").result().messages[1:] == [
        Message("user", "alone")]  # the engine keeps no conversation of its own
    # system prompt (18) + question (4) + newest pair (8) fit in 40; the older pairs don't.
    reply = engine.answer("s", "last question", "plain", history=history).result()
    contents = [m.content for m in reply.messages]
    assert contents[0].startswith("You are") and contents[-1] == "last question"
    assert contents[1:] == ["eleven twelve", "eleven twelve", "last question"]


def test_max_prompt_tokens_trims_history_within_a_larger_window(echo) -> None:
    """A long conversation must not hold the model for minutes: the prompt stays within
    ``generation.max_prompt_tokens`` however large the model's window."""
    history = [Message(role, f"turn {n} " + "word " * 20)
               for n in range(40) for role in ("user", "assistant")]
    full = make_engine(echo).answer("s", "now?", "plain", history=history).result()
    capped = make_engine(echo, settings=GenerationSettings(max_new_tokens=40,
                                                           max_prompt_tokens=100))
    reply = capped.answer("s", "now?", "plain", history=history).result()
    assert len(full.messages) > 30 and reply.messages[-1].content == "now?"
    assert 2 < len(reply.messages) < 10 and echo.count_tokens(reply.messages) <= 100
    assert reply.messages[-2].content.startswith("turn 39")  # the newest history is kept


def test_message_too_long_for_the_context_is_a_clear_error(echo) -> None:
    engine = make_engine(echo)
    with pytest.raises(InputError, match="more than the 960 a prompt may hold"):
        engine.answer("s", " ".join(["word"] * 1000), "plain").result()


def test_a_passage_too_long_for_the_window_is_left_out_and_the_others_answer(echo) -> None:
    """One document of a single unbroken string, or a k too large for the model, must not
    turn every question that finds it into an error."""
    huge = "word " * 2000  # more than the 960-token prompt budget on its own
    found = [hit(1, "Run chatbot index sync docs/."), hit(2, huge), hit(3, "Use --mode bm25.")]
    engine = make_engine(echo, search=lambda q, k: found[:k])
    reply = engine.answer("s", "how do I sync", "prompt").result()
    assert [h.chunk.chunk_id for h in reply.hits] == ["c1", "c3"]
    user = reply.messages[-1].content
    assert "[2] docs/indexing.md (Indexing > Sync)\nUse --mode bm25." in user
    assert "word word" not in user and reply.text == "how do I sync"


def test_no_hits_refuse_policy_answers_without_the_model(echo) -> None:
    engine = make_engine(echo, search=lambda q, k: [],
                         retrieval=RetrievalPolicy(no_hits="refuse", refusal="Not covered."))
    reply = engine.answer("s", "what is the weather", "prompt").result()
    assert reply.text == "Not covered." and reply.refused and echo.calls == []


def test_no_hits_answer_policy_generates_without_context(echo) -> None:
    engine = make_engine(echo, search=lambda q, k: [])
    reply = engine.answer("s", "what is the weather", "prompt").result()
    assert reply.text == "what is the weather" and not reply.refused


@pytest.mark.parametrize("message, error", [
    ("", "the message is empty"),
    ("  \n\t ", "the message is empty"),
    ("\x00\x07", "the message is empty"),
    ("x" * 101, "the message has 101 characters; the limit is 100"),
])
def test_bad_messages_are_rejected_with_the_reason(echo, message, error) -> None:
    engine = make_engine(echo, max_message_chars=100)
    with pytest.raises(InputError, match=error):
        engine.answer("s", message, "prompt")


def test_control_characters_are_dropped(echo) -> None:
    reply = make_engine(echo).answer("s", "hi\x00 there\x1b", "plain").result()
    assert reply.text == "hi there"


def test_unknown_variant_names_the_known_ones(echo) -> None:
    with pytest.raises(InputError, match="unknown variant 'nope'; variants: prompt, plain"):
        make_engine(echo).answer("s", "hi", "nope")


def test_blocklist_replaces_the_answer_and_never_streams_the_phrase(echo) -> None:
    engine = make_engine(echo, filters=[blocklist_filter(["secret plan"], "Blocked.")])
    stream = engine.answer("s", "the secret plan is here", "plain")
    shown = "".join(stream)
    assert "secret plan" not in shown
    assert stream.reply.text == "Blocked." and stream.reply.filtered == ["blocklist"]


def test_an_adapter_whose_base_model_cant_load_names_the_variant_and_its_adapter(echo,
                                                                                 tmp_path):
    def load(model: str):
        if model == "Qwen/other-base":
            raise ModelError("could not load chat model 'Qwen/other-base': not found")
        return echo

    tuned = Variant("tuned", "Qwen/other-base", "rag", True, adapter_dir=tmp_path / "tuned")
    engine = Engine({"prompt": PROMPT, "tuned": tuned}, load)
    with pytest.raises(ModelError, match=r"^variant 'tuned' runs its adapter \(.*tuned\) on base "
                                         r"model 'Qwen/other-base', which can't be loaded: "
                                         r"could not load chat model"):
        engine.answer("s", "hi", "tuned").result()
    assert engine.answer("s2", "hi", "prompt").result().text  # the other variants still answer


def test_two_variants_on_one_base_model_load_it_once(echo) -> None:
    engine = make_engine(echo)
    threads = [threading.Thread(target=lambda v=v: engine.answer("s" + v, "hi", v).result())
               for v in ["prompt", "plain", "prompt", "plain"]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert engine.loads == ["base"]


def test_turns_are_logged_before_and_after_generation(echo, tmp_path) -> None:
    log = ConversationLog(tmp_path / "logs.sqlite")
    engine = make_engine(echo, search=lambda q, k: [hit(1)], log=log)
    echo.flowing.clear()  # the model is still answering
    stream = engine.answer("s1", "alpha beta gamma delta", "prompt")
    iterator = iter(stream)
    next(iterator)
    db = sqlite3.connect(tmp_path / "logs.sqlite")
    rows = db.execute("SELECT role, status FROM turns ORDER BY position").fetchall()
    assert rows == [("user", "complete"), ("assistant", "pending")]
    echo.flowing.set()
    list(iterator)
    role, status, text, messages, hits = db.execute(
        "SELECT role, status, text, messages_json, hits_json FROM turns WHERE position = 1").fetchone()
    assert (status, text) == ("complete", "alpha beta gamma delta")
    assert json.loads(messages)[-1]["content"] == stream.reply.messages[-1].content
    assert json.loads(hits)[0]["source"] == "docs/indexing.md"
    assert stream.reply.turn_id is not None


def test_an_abandoned_answer_is_marked_interrupted(echo, tmp_path) -> None:
    log = ConversationLog(tmp_path / "logs.sqlite")
    echo.flowing.clear()
    stream = make_engine(echo, log=log).answer("s1", "alpha beta gamma delta", "plain")
    iterator = iter(stream)
    assert next(iterator) == "alpha"
    iterator.close()
    assert stream.wait(5).text == "alpha"
    turn = log.conversation("s1").turns[1]
    assert turn.status == "interrupted" and turn.text == "alpha"


@pytest.mark.parametrize("leave", ["close", "cancel_all"])
def test_an_answer_its_reader_left_is_logged_as_far_as_the_reader_took_it(echo, tmp_path,
                                                                          leave) -> None:
    """Words generated after the last one the terminal printed were never seen: the log keeps
    what the user saw, as a correction or a dataset must. The reader leaves by closing the
    stream (a closed tab) or, in the terminal, by a Ctrl-C that the command answers with
    ``Engine.cancel_all``."""
    def three_words_then_more_to_come(messages, settings, adapter=None, cancel=None):
        yield from ["alpha ", "beta ", "gamma ", "delta "]
        cancel.wait(10)

    echo.stream = three_words_then_more_to_come
    log = ConversationLog(tmp_path / "logs.sqlite")
    engine = make_engine(echo, log=log)
    stream = engine.answer("s1", "a question", "plain")
    iterator = iter(stream)
    assert next(iterator) == "alpha"
    deadline = time.monotonic() + 5
    while log.conversation("s1").turns[1].text != "alpha beta gamma delta" and (
            time.monotonic() < deadline):  # saved once a second; the words after alpha wait
        time.sleep(0.05)
    iterator.close() if leave == "close" else engine.cancel_all()
    assert stream.wait(5).text == "alpha"
    turn = log.conversation("s1").turns[1]
    assert turn.status == "interrupted" and turn.text == "alpha"


def test_ctrl_c_while_waiting_for_an_answer_comes_back_once_it_has_stopped(echo,
                                                                          tmp_path) -> None:
    """`chatbot eval` exits on Ctrl-C: a model thread still running then aborts the process."""
    log = ConversationLog(tmp_path / "logs.sqlite")
    echo.flowing.clear()
    stream = make_engine(echo, log=log).answer("s1", "alpha beta gamma delta", "plain")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            stream.result()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert stream.wait(0) is not None  # ended and logged before the caller got the Ctrl-C
    assert log.conversation("s1").turns[1].status == "interrupted"


def test_adapter_trained_on_another_base_is_refused(echo, tmp_path) -> None:
    adapter = tmp_path / "adapters" / "ft"
    adapter.mkdir(parents=True)
    (adapter / "adapter_manifest.json").write_text(json.dumps(
        {"base_model": "other", "base_model_fingerprint": "not-echo",
         "chat_template_hash": "echo-template"}))
    engine = Engine({"ft": Variant("ft", "base", "rag", True, None, adapter)}, lambda m: echo)
    with pytest.raises(ModelError, match=r"was trained on base model 'other' \(fingerprint "
                                         r"not-echo\), not on 'base' \(fingerprint "
                                         r"echo-fingerprint\); serve it on its own base model"):
        engine.answer("s", "hi", "ft").result()  # both models named


def test_missing_adapter_directory_says_how_to_make_it(echo, tmp_path) -> None:
    engine = Engine({"ft": Variant("ft", "base", "rag", True, None, tmp_path / "nope")},
                    lambda m: echo)
    with pytest.raises(ModelError, match="does not exist; train one with `chatbot train"):
        engine.answer("s", "hi", "ft").result()


def test_matching_adapter_is_attached_and_selected(echo, tmp_path) -> None:
    adapter = tmp_path / "ft"
    adapter.mkdir()
    (adapter / "adapter_manifest.json").write_text(json.dumps(
        {"base_model_fingerprint": "echo-fingerprint", "chat_template_hash": "echo-template"}))
    engine = Engine({"ft": Variant("ft", "base", "rag", True, None, adapter)}, lambda m: echo)
    reply = engine.answer("s", "hi", "ft").result()
    assert echo.adapters == {"ft": str(adapter)} and echo.calls[-1][1] == "ft"
    assert reply.adapter_id == "ft"


def test_pii_in_answers_is_redacted_before_it_is_shown_or_logged(echo, tmp_path) -> None:
    from chatbot.filters import pii_filter

    log = ConversationLog(tmp_path / "logs.sqlite")
    engine = make_engine(echo, filters=[pii_filter()], log=log)
    stream = engine.answer("s", "write to ana@example.org today", "plain")
    shown = "".join(stream)
    assert "ana@example.org" not in shown
    assert stream.reply.text == "write to <EMAIL> today" and stream.reply.filtered == ["pii"]
    assert log.conversation("s").turns[1].text == "write to <EMAIL> today"


def test_personal_data_written_across_words_never_streams_in_part(echo) -> None:
    """A phone number arrives a group at a time: no group of it may reach a streaming client
    before the filter can see the whole number, and the pieces add up to the logged answer."""
    from chatbot.filters import pii_filter

    engine = make_engine(echo, filters=[pii_filter()])
    question = ("Call the office on 020 7946 0018 or write to the team, then wait for a letter "
                "that confirms the appointment date and the documents to bring along.")
    stream = engine.answer("s", question, "plain")
    pieces = list(stream)
    assert "".join(pieces) == stream.reply.text == question.replace("020 7946 0018", "<PHONE>")
    assert len(pieces) > 2 and not any(group in "".join(pieces) for group in ("020", "7946"))


def test_the_answer_never_counts_more_tokens_than_were_allowed(echo) -> None:
    """Counting the decoded text again can give a token more than were generated (a leading
    space joins a word differently); usage must not report more than max_tokens."""
    echo.count_text = lambda text: len(text.split()) + 1
    reply = make_engine(echo).answer("s", "one two three four five", "plain",
                                     settings=GenerationSettings(max_new_tokens=3)).result()
    assert reply.text == "one two three" and reply.timings["tokens"] == 3


@pytest.mark.parametrize("stop, expected", [(("gamma",), "alpha beta"),
                                            (("beta gam", "zzz"), "alpha"),
                                            (("omega",), "alpha beta gamma delta")])
def test_stop_strings_end_the_answer_and_are_never_shown(echo, stop, expected) -> None:
    engine = make_engine(echo)
    stream = engine.answer("s", "alpha beta gamma delta", "plain",
                           settings=GenerationSettings(max_new_tokens=40, stop=stop))
    pieces = list(stream)
    assert "".join(pieces) == stream.reply.text == expected


def test_a_slow_first_load_does_not_count_as_a_reader_gone_quiet(echo, tmp_path,
                                                                 monkeypatch) -> None:
    """The wait for a reader starts with the first piece, not with the question: a model that
    took longer to load than ABANDON_AFTER_S (SmolLM2 from its GGUF takes ~38 s) had its
    answer stopped, logged empty, as soon as two pieces were queued unread at once."""
    monkeypatch.setattr(AnswerStream, "ABANDON_AFTER_S", 0.2)
    log = ConversationLog(tmp_path / "logs.sqlite")

    def slow_load(model):
        time.sleep(0.4)
        return echo

    engine = Engine({"plain": PLAIN}, slow_load, log=log,
                    settings=GenerationSettings(max_new_tokens=40))
    question = "one two three four five six seven"
    stream = engine.answer("s1", question, "plain")
    time.sleep(0.5)  # the reader comes a moment after the first words are queued
    assert "".join(stream).strip() == question
    assert log.conversation("s1").turns[1].status == "complete"

def test_an_answer_nobody_reads_any_more_stops_itself(echo, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(AnswerStream, "ABANDON_AFTER_S", 0.2)
    log = ConversationLog(tmp_path / "logs.sqlite")
    echo.flowing.clear()
    question = "one two three four five six seven"
    stream = make_engine(echo, log=log).answer("s1", question, "plain")
    iterator = iter(stream)
    assert next(iterator) == "one"  # the reader takes the first word, then goes quiet
    time.sleep(0.4)
    echo.flowing.set()
    assert stream.wait(5).text != question
    assert log.conversation("s1").turns[1].status == "interrupted"

