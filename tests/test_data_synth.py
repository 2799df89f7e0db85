"""``chatbot data synth`` on the tiny model's tokenizer over a real (hash-embedded) index, with a
small real teacher that copies sentences of the passage it is shown: the dataset's structure,
the filters, the split by document, resuming, and the errors a user meets."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from app.build import bot_index, build_attributor, build_variants
from app.cli import main
from app.commands.data_synth import synth_settings
from chatbot.config_file import load_config
from chatbot.answer_stream import RetrievalPolicy
from chatbot.engine import Engine
from chatbot.errors import ModelError
from chatbot.generate import GenerationSettings
from chatbot.indexing import IndexSearch, open_embedder, sync_paths
from chatbot.types import Message
from chatbot.variants import Variant
from index.evaluate import load_questions
from training.data.dataset import load_training_data
from training.errors import DataError
from training.eval.evalset import load_items
from training.synth.run import synthesize
from training.synth.settings import SynthRequest

TOPICS = ["solar panels", "river boats", "bread ovens", "glass kilns", "paper mills",
          "wind pumps"]
INVENTED = "Purple elephants migrate across the frozen desert every spring with golden maps."


def _document(topic: str) -> str:
    return (f"# {topic.title()}\n\n"
            f"The {topic} workshop opens at seven every weekday morning. "
            f"Each visitor to the {topic} workshop receives a printed safety card. "
            f"Repairs of {topic} equipment are booked through the front desk. "
            f"Old {topic} parts are recycled at the depot behind the station.\n")


class CopyTeacher:
    """A generator that writes questions about the passage it is shown and answers with the
    passage sentence sharing most words with the question; ``invent(n)`` makes the n-th answer
    an invented one, ``junk(n)`` the n-th question response unreadable, ``fail_after`` raises
    like a remote server going away."""

    model_id = "copy-teacher"
    context_window = 4096
    fingerprint = "copy-teacher"
    template_hash = "copy-teacher"

    def __init__(self, invent=lambda n: False, junk=lambda n: False,
                 fail_after: int | None = None) -> None:
        self.invent, self.junk, self.fail_after = invent, junk, fail_after
        self.calls: list[str] = []
        self.answers = self.question_calls = 0

    def load_adapter(self, name: str, path) -> None:
        pass

    def count_tokens(self, messages: list[Message]) -> int:
        return sum(len(m.content.split()) for m in messages)

    def count_text(self, text: str) -> int:
        return len(text.split())

    def stream(self, messages: list[Message], settings: GenerationSettings,
               adapter: str | None = None,
               cancel: threading.Event | None = None) -> Iterator[str]:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise ModelError("backend 'big' did not answer; check the server")
        prompt = messages[-1].content
        passage, _, question = prompt.partition("\n\nQuestion: ")
        sentences = re.findall(r"[^.\n]+\.", passage.split("\n", 1)[1])
        self.calls.append(prompt)
        if question:
            self.answers += 1
            yield INVENTED if self.invent(self.answers) else max(
                sentences, key=lambda s: len(set(s.lower().split())
                                             & set(question.lower().split()))).strip()
            return
        self.question_calls += 1
        if self.junk(self.question_calls):
            yield "!!! ### ..."
            return
        count = int(re.search(r"Write (\d+)", messages[0].content).group(1))
        for n, sentence in enumerate(sentences[:count], start=1):
            yield f"{n}. What does it say about {' '.join(sentence.split()[1:7])}?\n"


@pytest.fixture
def bot(tmp_path: Path, tiny_model_dir: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    for topic in TOPICS:
        (docs / f"{topic.replace(' ', '_')}.md").write_text(_document(topic))
    config = {"data_dir": str(tmp_path / "data"),
              "models": {"chat": str(tiny_model_dir), "embedder": "hash:64"},
              "index": {"paths": [str(docs)]},
              "retrieval": {"min_score": None, "k": 3},
              "data": {"pii_ner_model": None, "min_tokens": 0}}
    path = tmp_path / "bot.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def settings_with(bot: Path, teacher: CopyTeacher, index: bool = True):
    config = load_config(bot)
    if index:
        sync_paths(bot_index(config))
    embedder = open_embedder(bot_index(config).embedder)
    engine = Engine({**build_variants(config), "big": Variant("big", "copy", "rag", False)},
                    lambda model, backend=None: teacher,
                    search=IndexSearch(bot_index(config), embedder),
                    retrieval=RetrievalPolicy(k=3), attributor=build_attributor(config, embedder))
    return synth_settings(config, engine)


def test_synth_writes_a_dataset_in_the_serving_prompt_that_train_and_eval_read(bot: Path):
    settings = settings_with(bot, CopyTeacher())
    summary = synthesize(settings, SynthRequest("cold", "big", n=12, questions_per_chunk=2,
                                                test_share=0.34))
    assert summary.chunks == 6 and summary.documents == 6  # one chunk of every document
    assert summary.questions == 12 and summary.kept == 12 and not summary.rejected
    data = load_training_data(settings.data.datasets_root.parent, "cold")
    assert len(data.train) + len(data.validation) == 12 and data.train and data.validation
    assert data.manifest.template == "rag" and data.manifest.chat_template_hash
    directory = settings.data.datasets_root / "cold"
    for name in ("export.jsonl", "test.jsonl", "teacher_calls.jsonl", "data_report.md"):
        assert (directory / name).is_file(), name
    system, user, answer = data.train[0]
    question = user["content"].rsplit("Question: ", 1)[1]
    served = settings.engine.answer("s", question, "prompt").result()
    assert system == served.messages[0].as_dict()  # the serving system prompt
    assert all(hit.text in user["content"] for hit in served.hits[:2])  # real distractors
    cited = int(re.search(r"\[(\d)\]$", answer["content"]).group(1))
    passage = user["content"].split(f"[{cited}] ", 1)[1]
    assert answer["content"][:-4].strip() in passage  # the gold chunk is the cited passage
    items = load_items("cold", settings.data.datasets_root.parent)
    assert sorted(i.question for i in items) == sorted(
        m[1]["content"].rsplit("Question: ", 1)[1] for m in data.validation)
    tests = [json.loads(line) for line in (directory / "test.jsonl").read_text().splitlines()]
    assert len(tests) == len(data.validation) and all(t["gold_ids"] for t in tests)
    # `chatbot index eval` reads the same file, and neither command warns of a field it skips
    assert len(load_questions(directory / "test.jsonl").questions) == len(tests)
    assert load_questions(directory / "test.jsonl").warnings == ()
    warnings = []
    load_items(str(directory / "test.jsonl"), settings.data.datasets_root.parent,
               warn=warnings.append)
    assert warnings == []


def test_the_dataset_folder_holds_no_personal_data_and_no_server_paths(bot: Path):
    """test.jsonl and teacher_calls.jsonl travel with the dataset like its examples: redacted
    alike; and documents are named as serving names them, not by the server's folders."""
    (bot.parent / "docs" / "desk.md").write_text(
        "# Desk\n\nThe desk answers bookings on 020 7946 0958 every weekday. Cards such as "
        "4111 1111 1111 1111 are refused at the desk. The desk closes at noon on Fridays.\n")
    settings = settings_with(bot, CopyTeacher())
    synthesize(settings, SynthRequest("private", "big", n=14, questions_per_chunk=2,
                                      test_share=0.5))
    directory = settings.data.datasets_root / "private"
    written = {name: (directory / name).read_text()
               for name in ("export.jsonl", "test.jsonl", "teacher_calls.jsonl")}
    assert "<PHONE>" in written["teacher_calls.jsonl"]
    for name, text in written.items():
        assert "7946 0958" not in text and "4111 1111" not in text, name
        assert str(bot.parent) not in text, name
    assert "[1] docs/" in written["export.jsonl"]


def test_chatbot_train_fine_tunes_on_the_synthetic_dataset(bot: Path):
    synthesize(settings_with(bot, CopyTeacher()),
               SynthRequest("cold", "big", n=12, questions_per_chunk=2, test_share=0.34))
    trained = CliRunner().invoke(main, ["train", "--config", str(bot), "--data", "cold",
                                        "--name", "cold-ft", "--max-steps", "1", "--quiet"])
    assert trained.exit_code == 0, trained.output
    assert (load_config(bot).data_path / "adapters" / "cold-ft").is_dir()


def test_the_split_never_puts_one_document_on_both_sides(bot: Path):
    settings = settings_with(bot, CopyTeacher())
    summary = synthesize(settings, SynthRequest("split", "big", n=18, questions_per_chunk=3,
                                                test_share=0.5))
    data = load_training_data(settings.data.datasets_root.parent, "split")

    train = {_gold_source(messages) for messages in data.train}
    test = {_gold_source(messages) for messages in data.validation}
    assert train and test and train.isdisjoint(test)
    assert summary.train_documents + summary.test_documents == 6


def _gold_source(messages) -> str:
    """The document of the passage the target cites: where the question came from."""
    cited = re.search(r"\[(\d)\]$", messages[2]["content"]).group(1)
    return messages[1]["content"].split(f"[{cited}] ", 1)[1].split()[0]


def test_filters_reject_unsupported_answers_and_junk_without_crashing(bot: Path):
    teacher = CopyTeacher(invent=lambda n: n % 2 == 0, junk=lambda n: n == 1)
    settings = settings_with(bot, teacher)
    summary = synthesize(settings, SynthRequest("filtered", "big", n=12, questions_per_chunk=2,
                                                test_share=0.34))
    assert summary.rejected == {"no question parsed": 1, "unsupported by the chunk": 5}
    assert summary.kept == 5
    data = load_training_data(settings.data.datasets_root.parent, "filtered")
    assert all(INVENTED not in m[2]["content"] for m in data.train + data.validation)
    calls = [json.loads(line) for line in
             (settings.data.datasets_root / "filtered" / "teacher_calls.jsonl").read_text()
             .splitlines()]
    assert len(calls) == len(teacher.calls) == 6 + 10
    unsupported = [c for c in calls if c["reason"] == "unsupported by the chunk"]
    assert len(unsupported) == 5 and all(not c["accepted"] and c["response"] == INVENTED
                                         and c["messages"] and c["seconds"] >= 0
                                         for c in unsupported)


def test_a_rerun_continues_where_a_failed_run_stopped_without_duplicates(bot: Path):
    request = SynthRequest("resumed", "big", n=12, questions_per_chunk=2, test_share=0.34)
    with pytest.raises(ModelError):
        synthesize(settings_with(bot, CopyTeacher(fail_after=7)), request)
    second = CopyTeacher()
    summary = synthesize(settings_with(bot, second, index=False), request)
    assert summary.resumed_chunks == 2 and len(second.calls) == 4 * 3  # only what was left
    again = synthesize(settings_with(bot, CopyTeacher(), index=False),
                       SynthRequest("fresh", "big", n=12, questions_per_chunk=2,
                                    test_share=0.34))
    root = load_config(bot).data_path
    resumed, fresh = load_training_data(root, "resumed"), load_training_data(root, "fresh")
    assert summary.kept == again.kept == 12
    assert sorted(map(str, resumed.train + resumed.validation)) == sorted(
        map(str, fresh.train + fresh.validation))


def test_a_run_that_finished_nothing_gives_way_to_other_settings(bot: Path):
    """A teacher that never answered holds the name with nothing done: other settings start
    over; once chunks are done, they are refused with the flags that continue the run."""
    first = SynthRequest("later", "big", n=12, questions_per_chunk=2, test_share=0.34)
    with pytest.raises(ModelError):
        synthesize(settings_with(bot, CopyTeacher(fail_after=0)), first)
    with pytest.raises(ModelError):  # other settings; this time 1 chunk is done
        synthesize(settings_with(bot, CopyTeacher(fail_after=4), index=False),
                   replace(first, questions_per_chunk=3))
    with pytest.raises(DataError, match=r"holds an earlier run \(1 chunk\(s\) done, 3 item\(s\) "
                                        r"kept\) started with --teacher big --seed 1234 "
                                        r"--questions-per-chunk 3; rerun with those"):
        synthesize(settings_with(bot, CopyTeacher(), index=False), first)
    summary = synthesize(settings_with(bot, CopyTeacher(), index=False),
                         replace(first, questions_per_chunk=3))
    assert summary.resumed_chunks == 1 and summary.kept == 12


def test_a_run_that_kept_nothing_gives_way_and_data_show_points_back_at_synth(bot: Path):
    """Every chunk finished but the filters rejected every item: nothing holds the name, so
    other settings start afresh, and `chatbot data show` says to rerun the synthesis."""
    first = SynthRequest("cold", "big", n=4, questions_per_chunk=2)
    with pytest.raises(DataError, match="none of the generated items passed the filters"):
        synthesize(settings_with(bot, CopyTeacher(invent=lambda n: True)), first)
    shown = CliRunner().invoke(main, ["data", "show", "cold", "--config", str(bot)])
    assert shown.exit_code == 1
    assert "; `chatbot data synth --name cold` left no dataset, only its progress" in shown.stderr
    assert "chatbot data build" not in shown.stderr
    summary = synthesize(settings_with(bot, CopyTeacher(), index=False), replace(first, seed=7))
    assert summary.resumed_chunks == 0 and summary.kept == 4


def test_clear_errors_for_an_empty_index_and_an_unknown_teacher(bot: Path):
    empty = settings_with(bot, CopyTeacher(), index=False)
    with pytest.raises(DataError, match=r"^nothing is indexed yet in .*`chatbot index sync"):
        synthesize(empty, SynthRequest("x", "big", n=4))
    unknown = CliRunner().invoke(main, ["data", "synth", "--config", str(bot), "--name", "x",
                                        "--teacher", "nope", "--n", "4"])
    assert unknown.exit_code == 1
    assert unknown.stderr.startswith("error: teacher variant 'nope' is unknown; variants: "
                                     "prompt. Declare it under `variants:`")


@pytest.mark.parametrize("response, questions", [
    ("1. How do I install it?\n2) Which version? Q3: What is X?", ["How do I install it?",
                                                                   "Which version?"]),
    ("- \"Where are logs kept?\"\n- where are logs kept?\n", ["Where are logs kept?"]),
    ("!!! ### ...", []),
    ("", []),
])
def test_questions_are_read_from_whatever_the_teacher_writes(response, questions):
    from training.synth.parse import parse_questions

    assert parse_questions(response, 2) == questions


def test_an_answer_stops_where_the_teacher_goes_on_to_a_question_of_its_own():
    from training.synth.parse import parse_answer

    assert parse_answer("Answer: It needs 3.11.\n\nQuestion: And then?") == "It needs 3.11."
