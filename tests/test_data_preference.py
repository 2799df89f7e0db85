"""`chatbot data build --kind preference`: KTO rows and DPO pairs from thumbs, corrections and
arena votes, in TRL's conversational formats, PII scrubbed, loaded back by the trainer's loader."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from app.build import data_settings
from app.cli import main
from chatbot.ab import AbStore
from chatbot.config import BotConfig
from chatbot.logs import ConversationLog
from chatbot.types import Message
from log_support import log_exchanges
from index.types import Chunk, Hit
from training.data.build import build_dataset, export_dataset
from training.data.preference import FILES, load_preference_dataset
from training.data.preference_build import build_preference_dataset
from training.data.redact import Redactor
from training.errors import DatasetError
from training.data.dataset import load_examples, load_training_data

GOOD = "Run `chatbot index sync docs/` from the project folder."
WRONG = "Delete it from the folder and sync again; it is dropped from the index."
FIXED = "Run `chatbot index remove PATH`, or delete the file and run `chatbot index sync`."


@pytest.fixture
def config(tmp_path, monkeypatch) -> BotConfig:
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "bot"))
    return BotConfig(data={"pii_ner_model": "no_such_spacy_model", "validation_share": 0.0})


@pytest.fixture
def logged(config) -> dict:
    """Thumbs up, a corrected thumbs-down, a thumbs-down with an email, and an arena battle
    won by A whose answers were sent the same prompt."""
    path = config.data_path / "logs.sqlite"
    log = ConversationLog(path)
    up, down = log_exchanges(log, "s1", [("How do I sync my docs folder?", GOOD, 1),
                                         ("And remove a document?", WRONG, -1)])
    log.add_correction(down, FIXED, author="ana")
    log_exchanges(log, "s2", [("Mail the export to dana.k@example.com please", "Sent to "
                               "dana.k@example.com, the export is attached.", -1)])
    a = log_exchanges(log, "arena-1-a", [("Which port does the UI use?", "Port 7860.", None)])[0]
    b = log_exchanges(log, "arena-1-b", [("Which port does the UI use?", "Port 80.", None)])[0]
    prompt = log.conversation("arena-1-a").turns[1].messages
    log.close()
    store = AbStore(path)
    battle = store.start_battle("arena-1", "Which port does the UI use?", "prompt", "plain")
    store.record_turns(battle.id, a, b)
    store.vote(battle.id, "ana", "a")
    store.close()
    return {"up": up, "down": down, "arena_prompt": prompt}


def test_rows_come_from_thumbs_corrections_and_the_arena(config, logged) -> None:
    summary = build_preference_dataset(data_settings(config), "prefs")
    data = load_preference_dataset(config.data_path / "datasets" / "prefs")
    kto, dpo = data.kto["train"], data.dpo["train"]
    assert sorted((row.completion, row.label) for row in kto) == sorted([
        (GOOD, True), (WRONG, False), (FIXED, True),
        ("Sent to <EMAIL>, the export is attached.", False)])
    assert sorted((p.chosen, p.rejected) for p in dpo) == [("Port 7860.", "Port 80."),
                                                           (FIXED, WRONG)]
    assert (summary.desirable, summary.undesirable, summary.desirable_share) == (2, 2, 0.5)
    assert summary.sources == {"kto thumbs up": 1, "kto thumbs down": 2, "kto correction": 1,
                               "dpo correction": 1, "dpo arena": 1}
    report = (config.data_path / "datasets" / "prefs" / "data_report.md").read_text()
    assert "**2** desirable and **2** undesirable KTO rows (50% desirable)" in report


def test_an_answer_liked_then_corrected_is_only_the_rejected_side(config) -> None:
    """Its correction replaced it: a desirable row of it would contradict the pair."""
    log = ConversationLog(config.data_path / "logs.sqlite")
    [liked] = log_exchanges(log, "s1", [("And remove a document?", WRONG, 1)])
    log.add_correction(liked, FIXED, author="ana")
    log.close()
    build_preference_dataset(data_settings(config), "prefs")
    data = load_preference_dataset(config.data_path / "datasets" / "prefs")
    assert [(row.completion, row.label) for row in data.kto["train"]] == [(FIXED, True)]
    assert [(p.chosen, p.rejected) for p in data.dpo["train"]] == [(FIXED, WRONG)]


def test_eval_names_a_preference_dataset_as_such(config, logged) -> None:
    from chatbot.errors import InputError
    from training.eval.evalset import load_items

    build_preference_dataset(data_settings(config), "prefs")
    with pytest.raises(InputError, match="dataset 'prefs' is a preference dataset; chatbot eval "
                                         "asks questions from a JSONL file or a dataset built"):
        load_items("prefs", config.data_path)


def test_a_pair_has_one_prompt_the_exact_one_both_answers_were_sent(config, logged) -> None:
    build_preference_dataset(data_settings(config), "prefs")
    folder = config.data_path / "datasets" / "prefs"
    pairs = [json.loads(line) for line in (folder / FILES["dpo"]["train"]).open()]
    arena = next(p for p in pairs if p["chosen"][0]["content"] == "Port 7860.")
    assert set(arena) == {"prompt", "chosen", "rejected"}
    assert arena["prompt"] == logged["arena_prompt"]
    assert arena["rejected"] == [{"role": "assistant", "content": "Port 80."}]
    fixed = next(p for p in pairs if p["rejected"][0]["content"] == WRONG)
    kto = [json.loads(line) for line in (folder / FILES["kto"]["train"]).open()]
    assert {json.dumps(r["prompt"]) for r in kto if r["completion"][0]["content"] in
            (WRONG, FIXED)} == {json.dumps(fixed["prompt"])}
    assert all(set(r) == {"prompt", "completion", "label"} for r in kto)


def test_arena_answers_sent_different_prompts_make_no_pair(config, logged) -> None:
    log = ConversationLog(config.data_path / "logs.sqlite")
    a = log_exchanges(log, "arena-2-a", [("Is there an API?", "Yes, /v1.", None)])[0]
    b = log_exchanges(log, "arena-2-b", [("Is there an API", "No.", None)])[0]
    log.close()
    store = AbStore(config.data_path / "logs.sqlite")
    battle = store.start_battle("arena-2", "Is there an API?", "prompt", "plain")
    store.record_turns(battle.id, a, b)
    store.vote(battle.id, "ana", "a")
    store.close()
    summary = build_preference_dataset(data_settings(config), "prefs")
    assert summary.dropped == {"arena answers sent different prompts": 1}
    assert summary.sources["dpo arena"] == 1


def test_personal_data_never_reaches_a_preference_file(config, logged) -> None:
    summary = build_preference_dataset(data_settings(config), "prefs")
    folder = config.data_path / "datasets" / "prefs"
    written = "".join(p.read_text() for p in folder.glob("*.jsonl"))
    assert "dana.k@example.com" not in written and "<EMAIL>" in written
    assert summary.pii == {"EMAIL": 2}


def test_cli_builds_it_and_the_sft_trainer_refuses_it(config, logged, tmp_path) -> None:
    path = tmp_path / "bot.yaml"
    path.write_text("name: test-bot\ndata:\n  pii_ner_model: no_such_spacy_model\n")
    result = CliRunner().invoke(main, ["data", "build", "--kind", "preference", "--name", "p",
                                       "--config", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "balance: 2 desirable, 2 undesirable (50% desirable)" in result.output
    manifest = json.loads((config.data_path / "datasets" / "p" / "manifest.json").read_text())
    assert manifest["kind"] == "preference" and manifest["files"] == FILES
    # the way to train on it is named, not only the way to build another
    with pytest.raises(DatasetError, match=r"^dataset 'p' is a preference dataset: "
                                           r"`chatbot train --method dpo` or `--method kto` "
                                           r"trains on it; supervised fine-tuning needs one "
                                           r"built by `chatbot data build` without --kind$"):
        load_training_data(config.data_path, "p")
    listed = CliRunner().invoke(main, ["data", "list", "--config", str(path)]).output
    assert listed.split("\t", 2)[0] == "p" and listed.rstrip().endswith(
        "KTO rows train 3, validation 1\tDPO pairs train 2, validation 0")  # not summed


PASSAGES = [Hit(Chunk("c1", "docs/files.md", "Files and folders\nThis will open the Files app; "
                      "pick Sharing.", "Files and folders", "h1"), 0.9, 1),
            Hit(Chunk("c2", "docs/share.md", "To share, Click Share. This will open a dialog.",
                      "Share", "h2"), 0.8, 2)]


def test_names_are_looked_for_in_what_people_said_never_in_the_passages(tmp_path) -> None:
    """With the real NER model, as the SFT build does: the passages reach the KTO row, the SFT
    example and a `--from` re-import of its export as sent; the asker's email does not."""
    config = BotConfig(data={"validation_share": 0.0})
    answer = "Open Files and folders, then Share [1]."
    log = ConversationLog(config.data_path / "logs.sqlite")
    log_exchanges(log, "s1", [("How do I share a folder? Mail me at dana.k@example.com", answer,
                               1)], hits=PASSAGES)
    sent = log.conversation("s1").turns[1].messages
    log.close()
    [(read_whole, _)] = Redactor().scrub([sent[1]["content"]])
    assert "<NAME> and folders" in read_whole  # what NER would make of the passages
    scrubbed = [{**m, "content": m["content"].replace("dana.k@example.com", "<EMAIL>")}
                for m in sent]
    expected = [*scrubbed, {"role": "assistant", "content": answer}]
    settings = data_settings(config)
    summary = build_preference_dataset(settings, "prefs")
    [row] = load_preference_dataset(config.data_path / "datasets" / "prefs").kto["train"]
    assert [*row.prompt, {"role": "assistant", "content": row.completion}] == expected
    assert summary.pii == {"EMAIL": 1} and "spaCy NER" in summary.pii_detector
    build_dataset(settings, "sft", ["logs"])
    export_dataset(settings, "sft", tmp_path / "sft.jsonl")
    again = build_dataset(settings, "again", [str(tmp_path / "sft.jsonl")])
    for name in ("sft", "again"):
        [example] = load_examples(config.data_path / "datasets" / name)["train"]
        assert [Message(**m).as_dict() for m in example["messages"]] == expected, name
    assert again.pii == {}
