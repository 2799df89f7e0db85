"""The Training tab's actions: a dataset from a real SQLite log, real ``chatbot train`` children
on the tiny model (one run to the end, one stopped mid-way)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import gradio as gr
import pytest

from app.build import build_variants
from chatbot.config_file import load_config
from chatbot.engine import Engine
from chatbot.logs import ConversationLog
from chatbot.prompts import build_messages, load_template
from app.ui.training import TrainingActions, build_training_tab, chart_value
from app.training_job import RunRequest, TrainingJob

RATINGS = [1, 1, 1, 1, 1, 1, -1, -1, None, None]
"""Feedback of the ten logged answers: six up, two down (one with a comment), two unrated."""


def log_answers(path: Path) -> None:
    """Ten one-question sessions logged as serving logs them, with feedback."""
    log, template = ConversationLog(path), load_template("rag")
    for number, rating in enumerate(RATINGS):
        session = f"web-{number}"
        question = f"How do I configure feature {number} of the Zorb server?"
        log.ensure_session(session, "prompt")
        log.add_turn(session, "user", question)
        sent = build_messages(template, question, [])
        turn = log.add_turn(session, "assistant", "", variant="prompt",
                            messages=[m.as_dict() for m in sent], status="pending")
        log.finish_turn(turn, f"Set `feature_{number} = true` in zorb.toml and restart the "
                              f"server; it listens on port {4000 + number}.", {}, "complete")
        if rating:
            log.add_feedback(turn, rating, "Wrong port." if number == 7 else None)
    log.close()


@pytest.fixture
def config(tiny_config):
    config = load_config(tiny_config)
    log_answers(config.data_path / "logs.sqlite")
    return config


@pytest.fixture
def warnings(monkeypatch) -> list[str]:
    shown = []
    monkeypatch.setattr(gr, "Warning", shown.append)
    return shown


@pytest.fixture
def actions(config, tiny_config, echo):
    engine = Engine(build_variants(config), lambda model: echo,
                    find_variants=lambda: build_variants(config))
    actions = TrainingActions(config, TrainingJob(tiny_config, config.data_path), engine)
    yield actions
    actions.job.stop(grace_s=5)  # never leave a child behind a failed test


def build(actions, name="v1", feedback="up", share=0.2, **changes):
    values = {"name": name, "use_log": True, "files": None, "feedback": feedback,
              "min_tokens": 0, "max_tokens": 2048, "near_duplicates": 0.8,
              "validation_share": share, **changes}
    return actions.build(**values)


def wait_while_running(actions, seconds=120.0):
    deadline = time.monotonic() + seconds
    while actions.job.running() and time.monotonic() < deadline:
        time.sleep(0.5)


def test_build_from_the_log_keeps_thumbs_up_and_shows_the_report(actions, config, warnings):
    summary, report, histogram, rows, picker, _ = build(actions, feedback="up")
    assert summary.startswith("**dataset v1: train 5, validation 1 conversations")
    assert "read 10: 0 imported, 10 logged answers" in summary
    assert ("| feedback | policy=up, corrections=prefer | 10 → 6 | 10 → 6 | 2 thumbed down, 2 not rated; 1 kept "
            "for review |") in report
    assert "1 thumbed-down answer(s) with a comment" in report
    assert "![" not in report  # the histogram is shown beside, not as a broken link
    assert histogram.format == "PNG" and histogram.width > 100  # the chart, not a file path
    assert [row[0] for row in rows] == ["v1"] and picker["value"] == "v1"
    too_long = build(actions, name="v2", feedback="all", min_tokens=10_000, max_tokens=20_000)
    assert too_long[0].startswith("**Not built:** nothing to train on: none of the 10 "
                                  "conversations passed the curation steps")
    again = build(actions, name="v1")
    assert again[0].startswith("**Not built:** dataset 'v1' already exists at datasets/v1; "
                               'choose another name or tick "Replace a dataset of the same name"')
    assert str(config.data_path) not in summary + report + again[0]  # no server paths shown
    first = build(actions, name="aaa", feedback="all")  # sorts first; the picker takes it
    assert first[4]["value"] == "aaa"
    crossed = build(actions, name="v3", min_tokens=3000, max_tokens=2048)
    assert crossed[0].startswith("**Not built:** token limits 3000..2048 select nothing")
    assert len(warnings) == 3  # the toast says what the status line says, no path, no flag
    assert warnings[1] == again[0].removeprefix("**Not built:** ")
    rebuilt = build(actions, name="v1", feedback="not_down", overwrite=True)
    assert "train 6, validation 2" in rebuilt[0]  # the 2 unrated answers join
    report, histogram, _, picker = actions.datasets()  # as a page opens: the newest's report
    assert picker["value"] == "v1" and "policy=not_down" in report and histogram.format == "PNG"


def test_a_build_that_kept_nothing_names_the_tabs_controls_not_config_keys(actions, warnings):
    """It said 'relax data.feedback, data.min_tokens in the config' beside the tab's own
    controls for both."""
    refused = build(actions, feedback="up", min_tokens=10_000, max_tokens=20_000)
    assert refused[0].endswith('; relax "Keep answers rated", "Min tokens" above, or add '
                               "conversations; no dataset was written")
    assert "in the config" not in warnings[0]


def test_a_build_with_nothing_logged_points_to_the_tabs_upload_not_a_flag(tiny_config,
                                                                         warnings):
    """The page has no --from flag: the words are the transcript files box above."""
    config = load_config(tiny_config)
    actions = TrainingActions(config, TrainingJob(tiny_config, config.data_path))
    assert build(actions)[0] == ("**Not built:** the conversation log has no finished answers "
                                 "yet; chat with the bot first, or add transcript files above")


def transcript(folder: Path, answer: str) -> Path:
    """``support.jsonl`` in ``folder``: ten one-turn conversations answered with ``answer``."""
    folder.mkdir(parents=True)
    lines = [json.dumps({"messages": [
        {"role": "user", "content": f"How do I reset the Zorb router, model {n}?"},
        {"role": "assistant", "content": f"{answer} Model {n} keeps its settings."}]})
        for n in range(10)]
    path = folder / "support.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_transcript_of_a_name_imported_before_never_replaces_it(actions, config, tmp_path,
                                                                  warnings):
    """Anyone may upload a transcript of the name an earlier dataset was built from: the
    earlier file stays as the dataset's manifest names it (path and sha256), whether the new
    build is refused or built."""
    from chatbot.models import file_sha256
    from training.data.dataset import DatasetManifest

    def source(name: str) -> dict:
        manifest = DatasetManifest.load(config.data_path / "datasets" / name)
        return next(s for s in manifest.sources if "sha256" in s)

    first = transcript(tmp_path / "mine", "Hold the reset button for ten seconds.")
    other = transcript(tmp_path / "theirs", "Unplug it and throw it away.")
    first_sha, other_sha = file_sha256(first), file_sha256(other)  # uploads are moved in
    assert "train" in build(actions, name="v1", use_log=False, files=[str(first)])[0]
    kept = source("v1")
    refused = build(actions, name="", use_log=False, files=[str(other)])
    assert refused[0].startswith("**Not built:** give the dataset a name first")
    assert "train" in build(actions, name="v2", use_log=False, files=[str(other)])[0]
    assert file_sha256(Path(kept["path"])) == kept["sha256"] == first_sha
    assert source("v2")["sha256"] == other_sha
    stored = sorted((config.data_path / "transcripts").rglob("*"))
    assert stored == sorted([Path(kept["path"]), Path(kept["path"]).parent,
                             Path(source("v2")["path"]), Path(source("v2")["path"]).parent])


def test_an_uploaded_transcript_is_moved_out_of_the_upload_cache_not_copied(actions, config,
                                                                          tmp_path, warnings):
    """Each transcript was copied under the data dir and its upload left in Gradio's cache for
    a day: twice the disk. A refused build leaves the upload where it was, for the next try;
    a built one empties the box, whose files are now the dataset's."""
    upload = transcript(tmp_path / "gradio-a", "Hold the reset button for ten seconds.")
    refused = build(actions, name="", use_log=False, files=[str(upload)])
    assert refused[0].startswith("**Not built:** give the dataset a name first")
    assert upload.is_file() and not list((config.data_path / "transcripts").rglob("*.jsonl"))
    built = build(actions, name="v1", use_log=False, files=[str(upload)])
    assert "train" in built[0] and built[-1] is None  # the files box emptied
    assert not upload.exists()
    kept = list((config.data_path / "transcripts").rglob("support.jsonl"))
    assert len(kept) == 1 and "Hold the reset button" in kept[0].read_text()
    again = transcript(tmp_path / "gradio-b", "Hold the reset button for ten seconds.")
    assert "train" in build(actions, name="v2", use_log=False, files=[str(again)])[0]
    assert not again.exists()  # the same file kept once, its second upload deleted
    assert list((config.data_path / "transcripts").rglob("support.jsonl")) == kept
    gone = build(actions, name="v3", use_log=False, files=[str(upload)])  # an API caller's
    assert gone[0].startswith("**Not built:** support.jsonl: no longer on the server")
    assert warnings[-1].startswith("support.jsonl: no longer on the server")


EXPORTS = {".jsonl": "{0}\n{1}\n", ".ndjson": "{0}\n{1}\n", ".json": "[{0}, {1}]",
           ".csv": "question,answer\n{2}\n{3}\n", ".tsv": "question\tanswer\n{4}\n{5}\n"}
"""Two conversations in each kind of file the data loader reads."""


def test_the_files_box_takes_and_names_every_kind_of_transcript_file(actions, config,
                                                                     tiny_config, tmp_path,
                                                                     warnings):
    """The box said 'OpenAI or ShareGPT JSONL, question/answer CSV' and its file chooser hid
    .ndjson and .tsv files, though a build reads those and .json arrays too."""
    pairs = [("How do I reset the Zorb router?", "Hold its button for ten seconds."),
             ("Where is the Zorb manual?", "In the box, under the router.")]
    chats = [json.dumps({"messages": [{"role": "user", "content": q},
                                      {"role": "assistant", "content": a}]}) for q, a in pairs]
    rows = [f'"{q}","{a}"' for q, a in pairs] + [f"{q}\t{a}" for q, a in pairs]
    with gr.Blocks() as app:
        build_training_tab(config, tiny_config)
    box = next(block for block in app.blocks.values() if isinstance(block, gr.File))
    built = {}
    for suffix, text in EXPORTS.items():
        upload = tmp_path / f"chats{suffix}"
        upload.write_text(text.format(*chats, *rows))
        summary = build(actions, name=f"from{suffix[1:]}", use_log=False, files=[str(upload)],
                        share=0)[0]
        built[suffix] = summary.splitlines()[0]
    assert built == {suffix: f"**dataset from{suffix[1:]}: train 2, validation 0 conversations "
                             "(2 + 0 assistant turns)**" for suffix in EXPORTS}
    assert sorted(box.file_types) == sorted(EXPORTS)
    assert box.label == ("Transcript files too (optional): OpenAI or ShareGPT chats as JSONL "
                         "or a JSON array (.json), question/answer CSV or TSV")


def test_the_page_opens_on_the_last_built_of_datasets_built_in_one_second(actions, monkeypatch):
    import training.data.build

    monkeypatch.setattr(training.data.build.time, "strftime", lambda *_: "2026-01-01T00:00:00Z")
    for name in ("v1", "aaa"):  # "aaa" sorts first and is built last
        build(actions, name=name, feedback="all")
    _, _, rows, picker = actions.datasets()
    assert [row[1] for row in rows] == ["2026-01-01T00:00:00Z"] * 2 and picker["value"] == "aaa"
    build(actions, name="v1", feedback="not_down", overwrite=True)
    assert actions.datasets()[3]["value"] == "v1"


def test_a_run_trains_charts_its_loss_and_becomes_a_variant(actions, config, warnings):
    build(actions, name="facts", feedback="all", share=0.2)
    started = actions.start("facts", "zorb-lora", "lora", 1, 5e-3, 4, 4, 4, 2)
    assert started.startswith("Started: `--data facts --name zorb-lora --method lora")
    refused = actions.start("facts", "other", "lora", 1, 5e-3, 4, 4, 4, 2)
    assert "Not started:** run 'zorb-lora' is still training" in refused
    assert warnings and "still training" in warnings[0]
    wait_while_running(actions)
    status, chart = actions.poll()
    assert status.startswith("**finished**: Run 'zorb-lora' finished"), status
    assert "Variant **zorb-lora** is served now" in status
    assert sorted(set(chart["series"])) == ["train", "validation"]
    assert list(chart[chart.series == "train"].step) == [1, 2, 3, 4]
    assert list(chart[chart.series == "validation"].step) == [0, 2, 4]
    assert (config.data_path / "adapters/zorb-lora/adapter_manifest.json").is_file()
    assert actions.engine.variant("zorb-lora").adapter_dir.name == "zorb-lora"


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/elsewhere", "team/v2"])
def test_a_name_that_is_no_adapter_name_writes_nothing_anywhere(actions, config, warnings,
                                                               tmp_path, name):
    """The run's log file is named after the adapter: a path there wrote outside the data."""
    started = actions.start("facts", name, "lora", 1, 5e-3, 4, 4, 4, 2)
    assert f"Not started:** adapter name {name!r} is not allowed" in started
    assert not actions.job.running()
    assert not list(config.data_path.parent.rglob("escaped.log"))
    assert not (config.data_path / "runs").exists()


def test_an_adapter_named_after_a_variant_of_the_config_is_not_started(actions, config,
                                                                       warnings):
    """It would train and register, then never be served: the config's variant keeps the name,
    while the tab said to pick it in the chat."""
    build(actions, name="facts", feedback="all", share=0.2)
    variant = next(iter(config.variants))
    started = actions.start("facts", f" {variant} ", "lora", 1, 5e-3, 4, 4, 4, 2)
    assert started.startswith(f"**Not started:** {variant!r} is a variant of the config")
    assert not actions.job.running() and not (config.data_path / "runs").exists()


def test_a_setting_the_command_refuses_is_reported_in_one_line(actions, config, warnings):
    build(actions, name="facts", feedback="all", share=0.2)
    assert actions.start("facts", "wild", "lora", 1, 1e9, 4, 4, 4, 2).startswith("Started:")
    wait_while_running(actions)
    status, _ = actions.poll()
    assert status.startswith("**failed**: Run 'wild' failed (exit code 2): Invalid value for "
                             "'--lr'"), status
    assert "out of range; allowed: above 0 and at most 1" in status and "Usage:" not in status
    for endless in (float("inf"), float("nan")):
        refused = actions.start("facts", "endless", "lora", 1, 5e-3, 4, endless, 4, 2)
        assert refused.startswith(f"**Not started:** {endless} is not a number a run can use")
    assert not (config.data_path / "runs" / "endless").exists()
    nothing = actions.start("facts", "fresh", "lora", 1, 5e-3, 4, 4, 4, 2, True)
    assert nothing.startswith("**Not started:** run 'fresh' has no checkpoint to resume from")
    assert "untick Resume" in nothing and not actions.job.running()


def test_stop_ends_the_child_and_resume_continues_from_the_checkpoint(actions, config):
    build(actions, name="facts", feedback="all", share=0.2)
    # As from a server started in the background (`chatbot serve &`): the child inherits SIGINT
    # ignored, and must still stop at Stop, not train on until it is killed.
    ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        actions.start("facts", "long", "lora", None, 1e-3, 4, 40, 4, 1)
    finally:
        signal.signal(signal.SIGINT, ignored)
    process = actions.job._process
    checkpoint = config.data_path / "runs/long/last.pt"
    deadline = time.monotonic() + 90
    while not (checkpoint.is_file() and len(actions.job.metrics()) >= 3):
        assert process.poll() is None and time.monotonic() < deadline, actions.job.failure()
        time.sleep(0.3)
    assert "**running**" in actions.poll()[0]
    message = actions.stop()
    assert process.poll() == 1  # the child stopped at the interrupt, not left training or killed
    assert "was stopped; its last checkpoint is kept: tick Resume" in message
    status, chart = actions.poll()
    assert status.startswith("**stopped**") and len(chart) >= 3
    assert not (config.data_path / "adapters/long").exists()
    assert actions.stop() == "No run is training."
    # --resume refuses changed settings (the scheduler depends on them): resume with the same
    resumed = actions.start("facts", "long", "lora", None, 1e-3, 4, 40, 4, 1, True)
    assert resumed.endswith("--eval-every 1 --resume`")
    wait_while_running(actions)
    status, chart = actions.poll()
    assert status.startswith("**finished**"), status
    train_steps = list(chart[chart.series == "train"].step)
    assert train_steps == list(range(1, len(train_steps) + 1))  # continued, not restarted


def test_the_tab_builds_inside_blocks_and_the_server_adds_it(config, tiny_config, echo):
    from app.server import training_parts
    from app.ui import build_app

    engine = Engine(build_variants(config), lambda model: echo,
                    find_variants=lambda: build_variants(config))
    with gr.Blocks() as app:
        actions = build_training_tab(config, tiny_config, engine)
    assert actions.job.config_path == tiny_config and app.fns
    assert [function for function, _ in actions.on_page_load] == [actions.datasets,
                                                                  actions.poll]
    tabs = training_parts(engine, config, tiny_config)
    built = build_app(engine, tabs=tabs)
    assert isinstance(built.tab_actions["Training"], TrainingActions)
    assert training_parts(engine, config, None) == []
    assert chart_value([{"step": 0, "val_loss": 10.8}]) is None  # drawn once both curves start
    assert actions.job.command(RunRequest("facts", "zorb", resume=True))[1:] == [
        "-m", "app", "train", "--data", "facts", "--name", "zorb", "--resume",
        "--config", str(tiny_config), "--quiet"]
