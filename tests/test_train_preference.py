"""``chatbot train --method dpo|kto`` on a tiny Llama: it learns the preference, registers an
adapter the engine serves, resumes, and refuses data that cannot teach the objective."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner

from chatbot.errors import InputError
from training.errors import DatasetError, TrainingError
from training.train.finetune import FinetuneRequest
from training.train.loop import LoopSettings
from training.train.model_setup import MethodSettings
from training.train.preference import PreferenceRequest, train_preference
from ctrl_c import a_dropped_ctrl_c
from train_support import FACTS, conversation, fact_dataset, make_tiny_model

WRONG = "I am not sure, sorry."


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(autouse=True)
def one_thread():
    """The runs set one torch thread (tiny matrices: a second thread only waits on a busy
    core); the rest of the suite gets its setting back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def preference_dataset(data_dir, model_dir, name="prefs", kto=None, dpo=None,
                       validation_dpo=None):
    """A preference dataset as ``chatbot data build --kind preference`` writes it: by default
    the facts' right answers preferred to a non-answer (DPO pairs; KTO rows of both labels)."""
    from transformers import AutoTokenizer

    from chatbot.models import chat_template_hash, model_fingerprint
    from chatbot.paths import DataPaths
    from training.data.dataset import DatasetManifest
    from training.data.preference import DPOPair, KTORow, save_preference_rows

    prompts = [(tuple(conversation(q, "")[:2]), a) for q, a in FACTS]
    if dpo is None:
        dpo = [DPOPair(prompt, answer, WRONG) for prompt, answer in prompts]
    if kto is None:
        kto = [KTORow(prompt, text, text == answer) for prompt, answer in prompts
               for text in (answer, WRONG)]
    root = DataPaths(data_dir).dataset(name)
    root.mkdir(parents=True)
    files = save_preference_rows(root, {"train": kto, "validation": kto[:4]},
                                 {"train": dpo, "validation": validation_dpo or dpo[:2]})
    DatasetManifest(name=name, kind="preference", files=files, chat_model=str(model_dir),
                    chat_model_fingerprint=model_fingerprint(model_dir),
                    chat_template_hash=chat_template_hash(AutoTokenizer.from_pretrained(model_dir)),
                    counts={"kto": len(kto), "dpo": len(dpo)}).save(root)
    return root


def request_for(data_dir, model_dir, objective="dpo", name="zorb-pref", from_adapter=None,
                dataset="prefs", **loop) -> PreferenceRequest:
    settings = {"learning_rate": 2e-2, "batch_size": 4, "max_steps": 4, "eval_every": 2,
                "patience": None, "warmup": 0, "seed": 7, "scheduler": "constant", **loop}
    run = FinetuneRequest(data_dir=data_dir, dataset=dataset, name=name,
                          base_model=str(model_dir),
                          method=MethodSettings(lora_r=8, lora_alpha=16, lora_dropout=0.0),
                          loop=LoopSettings(**settings), max_seq_len=256, device="cpu",
                          threads=1)
    return PreferenceRequest(run, objective=objective, beta=0.1, from_adapter=from_adapter)


def sft_adapter(data_dir, model_dir, name="zorb-sft"):
    """A registered LoRA adapter, as ``chatbot train`` leaves one."""
    from transformers import AutoTokenizer

    from chatbot.adapters import AdapterManifest
    from chatbot.models import chat_template_hash, model_fingerprint
    from lora import save_lora_adapter

    folder = save_lora_adapter(model_dir, data_dir / "adapters" / name)
    AdapterManifest(name=name, method="lora", base_model=str(model_dir),
                    base_model_fingerprint=model_fingerprint(model_dir),
                    chat_template_hash=chat_template_hash(AutoTokenizer.from_pretrained(model_dir))
                    ).save(folder)
    return folder


def records(adapter_dir) -> list[dict]:
    return [json.loads(line) for line in (adapter_dir / "metrics.jsonl").read_text().splitlines()]


def adapter_weights(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def test_dpo_on_an_sft_adapter_learns_the_pairs_and_registers_a_servable_variant(tmp_path,
                                                                                tiny_model):
    from chatbot.adapters import AdapterManifest
    from chatbot.generate import GenerationSettings, TransformersGenerator
    from chatbot.types import Message

    sft = sft_adapter(tmp_path, tiny_model)
    preference_dataset(tmp_path, tiny_model)
    result = train_preference(request_for(tmp_path, tiny_model, from_adapter="zorb-sft"),
                              progress=False)
    folder = tmp_path / "adapters/zorb-pref"
    losses = [r["train_loss"] for r in records(folder) if "train_loss" in r]
    # the first step scores log 2: the reference is the SFT adapter itself, not the base model
    assert losses[0] == pytest.approx(0.6931, abs=1e-3)
    assert len(losses) == 4 and losses == sorted(losses, reverse=True) and losses[-1] < 0.68
    assert result.validation["val_reward_accuracy"] == 1.0
    assert result.validation["val_reward_margin"] > 0
    manifest = json.loads((folder / "adapter_manifest.json").read_text())
    assert manifest["method"] == "dpo" and manifest["hyperparameters"]["beta"] == 0.1
    assert manifest["hyperparameters"]["from_adapter"] == "zorb-sft"
    assert manifest["dataset"]["name"] == "prefs" and manifest["dataset"]["objective"] == "dpo"
    # the SFT adapter was continued (same LoRA tensors, new values), not TRL's "ref" copy saved
    assert adapter_weights(folder).keys() == adapter_weights(sft).keys()
    assert not (folder / "ref").exists()
    generator = TransformersGenerator(str(tiny_model), "tiny", device="cpu")
    AdapterManifest.load(folder).check_serves_on(folder, str(tiny_model), generator.fingerprint,
                                                 generator.template_hash)
    generator.load_adapter("zorb-pref", folder)
    messages = [Message(m["role"], m["content"]) for m in conversation(*FACTS[0])[:2]]
    answer = "".join(generator.stream(messages, GenerationSettings(max_new_tokens=4),
                                      adapter="zorb-pref"))
    assert answer


def test_kto_on_the_base_model_learns_the_labels_and_registers(tmp_path, tiny_model):
    preference_dataset(tmp_path, tiny_model)
    result = train_preference(request_for(tmp_path, tiny_model, objective="kto"), progress=False)
    folder = tmp_path / "adapters/zorb-pref"
    losses = [r["train_loss"] for r in records(folder) if "train_loss" in r]
    evals = [r["val_loss"] for r in records(folder) if "val_loss" in r]
    assert losses[0] == pytest.approx(0.5, abs=1e-3)  # the policy starts as its reference
    assert len(evals) == 2 and evals == sorted(evals, reverse=True) and evals[-1] < 0.49
    assert result.validation["val_reward_margin"] > 0
    assert result.data == {"train": {"rows": 8, "desirable": 4},
                           "validation": {"rows": 4, "desirable": 2}}
    manifest = json.loads((folder / "adapter_manifest.json").read_text())
    assert manifest["method"] == "kto" and manifest["hyperparameters"]["from_adapter"] is None
    assert (folder / "adapter_config.json").is_file() and (folder / "loss.png").is_file()


@pytest.mark.parametrize("objective", ["dpo", "kto"])
def test_preference_training_shows_no_library_deprecation_notice(tmp_path, tiny_model, objective):
    """TRL's settings and steps use gradient-checkpointing names transformers is retiring:
    their FutureWarnings are no part of what `chatbot train` prints."""
    preference_dataset(tmp_path, tiny_model)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        train_preference(request_for(tmp_path, tiny_model, objective=objective, max_steps=1,
                                     eval_every=1), progress=False)
    assert [str(w.message) for w in said if issubclass(w.category, FutureWarning)] == []


def test_a_ctrl_c_python_dropped_still_stops_preference_training(tmp_path, tiny_model):
    preference_dataset(tmp_path, tiny_model)
    with a_dropped_ctrl_c(), pytest.raises(KeyboardInterrupt):
        train_preference(request_for(tmp_path, tiny_model, max_steps=40), progress=False)
    assert not (tmp_path / "adapters" / "zorb-pref").exists()


def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path, tiny_model):
    preference_dataset(tmp_path, tiny_model)
    train_preference(request_for(tmp_path, tiny_model, name="straight"), progress=False)

    def interrupt(record):
        if record["step"] == 3:  # after the step-2 checkpoint, like a Ctrl-C
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_preference(request_for(tmp_path, tiny_model, name="resumed"), on_record=interrupt,
                         progress=False)
    assert not (tmp_path / "adapters/resumed").exists()
    with pytest.raises(TrainingError, match="exists at .*; continue it with --resume"):
        train_preference(request_for(tmp_path, tiny_model, name="resumed"), progress=False)
    from training.train.finetune import finetune

    fact_dataset(tmp_path, tiny_model)
    sft = replace(request_for(tmp_path, tiny_model, name="resumed").run, dataset="facts")
    with pytest.raises(TrainingError, match="exists at .*; continue it with --resume"):
        finetune(sft, progress=False)  # an SFT run of that name must not delete it either
    (tmp_path / "runs/sft-left").mkdir(parents=True)
    (tmp_path / "runs/sft-left/last.pt").write_bytes(b"an interrupted SFT run's checkpoint")
    with pytest.raises(TrainingError, match="exists at .*; continue it with --resume"):
        train_preference(request_for(tmp_path, tiny_model, name="sft-left"), progress=False)
    assert (tmp_path / "runs/sft-left/last.pt").exists()
    with pytest.raises(TrainingError, match=r"changed: beta \(0.1 -> 0.5\)"):
        changed = request_for(tmp_path, tiny_model, name="resumed")
        train_preference(replace(changed, beta=0.5, run=replace(changed.run, resume=True)),
                         progress=False)
    import shutil

    saved = sorted((tmp_path / "runs/resumed").glob("checkpoint-*"))[-1]
    torn = saved.with_name("checkpoint-99")  # a save cut short by Ctrl-C: no trainer state
    shutil.copytree(saved, torn)
    (torn / "trainer_state.json").unlink()
    resumed = request_for(tmp_path, tiny_model, name="resumed")
    train_preference(replace(resumed, run=replace(resumed.run, resume=True)), progress=False)
    straight = adapter_weights(tmp_path / "adapters/straight")
    again = adapter_weights(tmp_path / "adapters/resumed")
    for name in straight:
        torch.testing.assert_close(again[name], straight[name], rtol=1e-4, atol=1e-5)
    steps = [r["step"] for r in records(tmp_path / "adapters/resumed") if "train_loss" in r]
    assert steps == list(range(1, 5))


BUDGET_INSIDE_AN_EPOCH = {"batch_size": 2, "max_steps": 3, "eval_every": 2}
"""3 steps: an epoch is 2 steps of DPO pairs, 4 of KTO rows."""
STOPPED_EARLY = {"batch_size": 2, "max_steps": 12, "eval_every": 1, "patience": 1,
                 "learning_rate": 0.2}
"""A learning rate that overshoots, so the validation loss soon stops improving."""


@pytest.mark.parametrize("objective, settings", [
    ("dpo", BUDGET_INSIDE_AN_EPOCH), ("kto", BUDGET_INSIDE_AN_EPOCH), ("dpo", STOPPED_EARLY)],
    ids=["dpo-max-steps", "kto-max-steps", "dpo-stopped-early"])
def test_a_run_resumed_after_its_last_checkpoint_trains_no_further(tmp_path, tiny_model,
                                                                   objective, settings):
    """Ctrl-C after the final checkpoint (while --eval-gate evaluates the adapter, say): the
    resumed run registers what was trained, with no step past --max-steps or past where early
    stopping ended it."""
    preference_dataset(tmp_path, tiny_model)
    settings = {"objective": objective, **settings}
    straight = train_preference(request_for(tmp_path, tiny_model, name="straight", **settings),
                                progress=False)
    assert straight.stopped_early == ("patience" in settings)

    def interrupt(staged):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_preference(request_for(tmp_path, tiny_model, name="resumed", **settings),
                         progress=False, before_register=interrupt)
    assert (tmp_path / f"runs/resumed/checkpoint-{straight.steps}/trainer_state.json").is_file()
    resumed = request_for(tmp_path, tiny_model, name="resumed", **settings)
    result = train_preference(replace(resumed, run=replace(resumed.run, resume=True)),
                              progress=False)
    assert (result.steps, result.stopped_early) == (straight.steps, straight.stopped_early)
    steps = [r["step"] for r in records(tmp_path / "adapters/resumed")]
    assert steps == [r["step"] for r in records(tmp_path / "adapters/straight")]
    assert max(steps) == straight.steps
    manifest = json.loads((tmp_path / "adapters/resumed/adapter_manifest.json").read_text())
    assert manifest["metrics"]["steps"] == straight.steps
    straight_weights = adapter_weights(tmp_path / "adapters/straight")
    again = adapter_weights(tmp_path / "adapters/resumed")
    for name in straight_weights:
        torch.testing.assert_close(again[name], straight_weights[name], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("objective, rows, message", [
    ("dpo", {"dpo": []}, "has no DPO pairs .*; collect some, or train on the thumbs with "
                         "--method kto"),
    ("kto", {"kto": "up"}, "has no undesirable rows .* among its 4 training rows; KTO needs "
                           "both kinds"),
    ("kto", {"kto": "down"}, "has no desirable rows .* among its 4 training rows; KTO needs "
                             "both kinds"),
])
def test_data_that_cannot_teach_the_objective_is_refused(tmp_path, tiny_model, objective,
                                                         rows, message):
    from training.data.preference import KTORow

    if "kto" in rows:
        label = rows["kto"] == "up"
        rows = {"kto": [KTORow(tuple(conversation(q, "")[:2]), a, label) for q, a in FACTS]}
    preference_dataset(tmp_path, tiny_model, **rows)
    with pytest.raises(DatasetError, match=message):
        train_preference(request_for(tmp_path, tiny_model, objective=objective), progress=False)
    assert not (tmp_path / "runs").exists()


def test_a_max_seq_len_that_every_validation_prompt_fills_is_refused_before_training(
        tmp_path, tiny_model):
    """TRL drops the rows whose prompt alone fills ``max_length``: a split left with none would
    train and then fail at its first evaluation with a KeyError from the Trainer."""
    from training.data.preference import DPOPair

    question = "Which port does Zorb use? " + "Please explain it in full detail. " * 40
    long_prompt = tuple(conversation(question, "")[:2])
    preference_dataset(tmp_path, tiny_model,
                       validation_dpo=[DPOPair(long_prompt, "Port 4242.", WRONG)])
    with pytest.raises(TrainingError, match=r"every validation pair's prompt fills --max-seq-len "
                                            r"256.*raise --max-seq-len"):
        train_preference(request_for(tmp_path, tiny_model, max_steps=1, eval_every=1),
                         progress=False)
    assert not (tmp_path / "adapters" / "zorb-pref").exists()


def test_an_sft_dataset_and_an_unknown_adapter_are_refused(tmp_path, tiny_model):
    fact_dataset(tmp_path, tiny_model)
    with pytest.raises(DatasetError, match="'facts' is a sft dataset, not a preference one"):
        train_preference(request_for(tmp_path, tiny_model, dataset="facts"), progress=False)
    preference_dataset(tmp_path, tiny_model)
    with pytest.raises(TrainingError, match=r"--from-adapter 'nope' is not a registered adapter "
                                            r"\(registered: none yet\)"):
        train_preference(request_for(tmp_path, tiny_model, from_adapter="nope"), progress=False)
    with pytest.raises(InputError, match=r"adapter name '../adapters/sft' is not allowed"):
        train_preference(request_for(tmp_path, tiny_model, from_adapter="../adapters/sft"),
                         progress=False)  # a name, not a path, whose hint would be no name


def test_the_command_line_trains_dpo_merges_it_and_prints_one_line_errors(tmp_path, tiny_model,
                                                               monkeypatch):
    from app.cli import main

    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "data"))
    preference_dataset(tmp_path / "data", tiny_model)
    config = tmp_path / "bot.yaml"
    config.write_text(f"models: {{chat: {tiny_model}, embedder: 'hash:64'}}\n")
    args = ["train", "--config", str(config), "--data", "prefs", "--name", "zorb-dpo",
            "--method", "dpo", "--beta", "0.2", "--max-steps", "2", "--eval-every", "2",
            "--lora-r", "4", "--device", "cpu", "--threads", "1", "--quiet"]
    result = CliRunner().invoke(main, args + ["--from-adapter", "missing"])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: --from-adapter 'missing' is not a registered")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "examples/s" not in result.stderr  # --quiet: no tokenizing bars either
    summary = json.loads(result.stdout)
    assert summary["objective"] == "dpo" and summary["steps"] == 2
    manifest = json.loads((tmp_path / "data/adapters/zorb-dpo/adapter_manifest.json").read_text())
    assert manifest["hyperparameters"]["beta"] == 0.2
    merged = CliRunner().invoke(main, ["train", "merge", "zorb-dpo", "--config", str(config),
                                       "--out", str(tmp_path / "merged")])
    assert merged.exit_code == 0, merged.output  # a LoRA adapter like any other
    assert (tmp_path / "merged/config.json").is_file()


def test_quiet_kto_on_unbalanced_labels_prints_only_the_summary(tmp_path, tiny_model):
    """TRL advises on KTO's loss weights (settings chatbot does not take) when the labels are
    unbalanced; `--quiet` printed that advice on stderr all the same."""
    import os
    import subprocess
    import sys

    from training.data.preference import KTORow

    liked = [KTORow(tuple(conversation(q, "")[:2]), a, True) for q, a in FACTS]
    disliked = KTORow(tuple(conversation(FACTS[0][0], "")[:2]), WRONG, False)
    preference_dataset(tmp_path / "data", tiny_model, kto=[*liked, disliked])
    config = tmp_path / "bot.yaml"
    config.write_text(f"models: {{chat: {tiny_model}, embedder: 'hash:64'}}\n")
    run = subprocess.run(
        [sys.executable, "-m", "app", "train", "--config", str(config), "--data", "prefs",
         "--name", "zorb-kto", "--method", "kto", "--max-steps", "1", "--eval-every", "1",
         "--device", "cpu", "--threads", "1", "--quiet"], capture_output=True, text=True,
        env={**os.environ, "CHATBOT_DATA_DIR": str(tmp_path / "data")}, timeout=600)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["data"]["train"] == {"rows": 5, "desirable": 4}
    assert run.stderr == ""
