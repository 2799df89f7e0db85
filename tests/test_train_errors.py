"""Bad inputs fail with a clear error and register nothing; merge and the CLI round-trip."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from transformers import AutoModelForCausalLM, AutoTokenizer

from app.cli import main
from chatbot.errors import ModelError
from training.errors import DatasetError, TrainingError
from training.train.finetune import FinetuneRequest, finetune
from training.train.loop import LoopSettings
from training.train.model_setup import MethodSettings
from ctrl_c import a_dropped_ctrl_c
from train_support import FACTS, conversation, fact_dataset, make_tiny_model, write_dataset


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny"))


def request_for(data_dir, model_dir, **loop) -> FinetuneRequest:
    settings = {"learning_rate": 5e-3, "batch_size": 4, "max_steps": 2, "eval_every": 2,
                "patience": None, "warmup": 0, **loop}
    return FinetuneRequest(data_dir=data_dir, dataset="facts", name="zorb",
                           base_model=str(model_dir), method=MethodSettings(lora_r=4),
                           loop=LoopSettings(**settings), max_seq_len=256, device="cpu")


def assert_nothing_registered(data_dir):
    adapters = data_dir / "adapters"
    assert not adapters.exists() or not any(adapters.glob("*/adapter_manifest.json"))


def test_a_ctrl_c_python_dropped_still_stops_training_at_its_next_step(tmp_path, tiny_model):
    """Pressed while the model loads, Ctrl-C can land in a garbage-collection callback."""
    fact_dataset(tmp_path, tiny_model)
    with a_dropped_ctrl_c(), pytest.raises(KeyboardInterrupt):
        finetune(request_for(tmp_path, tiny_model, max_steps=40), progress=False)
    assert_nothing_registered(tmp_path)
    metrics = (tmp_path / "runs" / "zorb" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in metrics] == [0]  # no step trained


def test_empty_dataset(tmp_path, tiny_model):
    write_dataset(tmp_path, "facts", tiny_model, [], [conversation(*FACTS[0])])
    with pytest.raises(DatasetError, match="dataset 'facts' has an empty split .*no examples to train"):
        finetune(request_for(tmp_path, tiny_model), progress=False)
    assert_nothing_registered(tmp_path)


def test_missing_dataset(tmp_path, tiny_model):
    with pytest.raises(DatasetError, match="dataset 'facts' not found .* build it with"):
        finetune(request_for(tmp_path, tiny_model), progress=False)


def test_dataset_built_for_another_chat_template(tmp_path, tiny_model):
    rows = [conversation(*fact) for fact in FACTS]
    write_dataset(tmp_path, "facts", tiny_model, rows, rows[:1],
                  chat_template_hash="0123456789abcdef")
    with pytest.raises(DatasetError, match="built for chat template 0123456789abcdef.*rebuild"):
        finetune(request_for(tmp_path, tiny_model), progress=False)
    assert_nothing_registered(tmp_path)


def test_missing_base_model(tmp_path, tiny_model):
    fact_dataset(tmp_path, tiny_model)
    request = FinetuneRequest(**{**request_for(tmp_path, tiny_model).__dict__,
                                 "base_model": str(tmp_path / "no-such-model")})
    with pytest.raises(ModelError, match="does not exist; fix the path in the config"):
        finetune(request, progress=False)
    assert_nothing_registered(tmp_path)


def test_unwritable_output_directory(tmp_path, tiny_model):
    fact_dataset(tmp_path, tiny_model)
    (tmp_path / "adapters").write_text("a file where the adapters folder should be")
    with pytest.raises(TrainingError, match="cannot write .*adapters"):
        finetune(request_for(tmp_path, tiny_model), progress=False)


def test_nan_loss_is_an_error_and_registers_nothing(tmp_path, tiny_model):
    fact_dataset(tmp_path, tiny_model)
    broken = tmp_path / "broken"
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))
    model.save_pretrained(broken)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(broken)
    # the dataset was built for the tiny model; rebuild it for the broken copy's fingerprint
    fact_dataset(tmp_path, broken, name="facts-broken")
    request = FinetuneRequest(**{**request_for(tmp_path, broken).__dict__,
                                 "dataset": "facts-broken"})
    with pytest.raises(TrainingError, match="the loss became nan at step 1; lower --lr"):
        finetune(request, progress=False)
    assert_nothing_registered(tmp_path)


def test_existing_adapter_name_is_refused(tmp_path, tiny_model):
    fact_dataset(tmp_path, tiny_model)
    finetune(request_for(tmp_path, tiny_model), progress=False)
    with pytest.raises(TrainingError, match="adapter 'zorb' already exists"):
        finetune(request_for(tmp_path, tiny_model), progress=False)


def test_an_adapter_named_after_a_variant_of_the_config_is_refused_before_training(
        tmp_path, tiny_model, monkeypatch):
    """The config's variant keeps its name, so an adapter registered under it would never be
    served, while the run said it was ready to chat with."""
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "data"))
    config = tmp_path / "bot.yaml"
    config.write_text(f"models:\n  chat: {tiny_model}\nvariants:\n  prompt: {{}}\n"
                      "  support: {template: plain}\ndefault_variant: prompt\n")
    for command in (["train"], ["train", "sweep", "--trials", "1"]):
        result = CliRunner().invoke(main, [*command, "--config", str(config), "--data", "facts",
                                           "--name", "support", "--device", "cpu"])
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith("error: 'support' is a variant of the config "), command
        assert "choose another name" in result.stderr
    assert not (tmp_path / "data" / "runs").exists()


def test_cli_trains_then_merge_gives_the_same_greedy_outputs(tmp_path, tiny_model, monkeypatch):
    from peft import PeftModel

    from train_support import greedy_answer

    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "data"))
    fact_dataset(tmp_path / "data", tiny_model)
    config = tmp_path / "bot.yaml"
    config.write_text(f"models:\n  chat: {tiny_model}\n")
    runner = CliRunner()
    result = runner.invoke(main, ["train", "--config", str(config), "--data", "facts", "--name",
                                  "zorb", "--max-steps", "3", "--lr", "1e-2", "--lora-r", "4",
                                  "--eval-every", "3", "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["steps"] == 3 and summary["best_step"] == 3
    manifest = json.loads((tmp_path / "data/adapters/zorb/adapter_manifest.json").read_text())
    assert manifest["hyperparameters"]["lora_r"] == 4
    assert manifest["hyperparameters"]["learning_rate"] == 1e-2

    a_file = tmp_path / "notes.txt"
    a_file.write_text("kept")
    result = runner.invoke(main, ["train", "merge", "zorb", "--out", str(a_file), "--config",
                                  str(config)])
    assert (result.exit_code, result.stderr) == (1, f"error: {a_file} is a file; choose an "
                                                    "empty or new --out directory\n")
    assert a_file.read_text() == "kept"

    out = tmp_path / "merged"
    result = runner.invoke(main, ["train", "merge", "zorb", "--out", str(out), "--config",
                                  str(config)])
    assert result.exit_code == 0, result.output
    tokenizer = AutoTokenizer.from_pretrained(out)
    merged = AutoModelForCausalLM.from_pretrained(out)
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model),
                                        str(tmp_path / "data/adapters/zorb"))
    for question, _ in FACTS[:2]:
        assert greedy_answer(merged, tokenizer, question) == greedy_answer(adapted, tokenizer,
                                                                           question)


def test_cli_errors_are_one_line(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "data"))
    config = tmp_path / "bot.yaml"
    config.write_text(f"models:\n  chat: {tiny_model}\n")
    result = CliRunner().invoke(main, ["train", "--config", str(config), "--data", "nope",
                                       "--name", "x", "--device", "cpu"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: dataset 'nope' not found")
    assert "Traceback" not in result.output
    assert not (tmp_path / "data/runs/x").exists()  # the dataset is checked before the run dir
    result = CliRunner().invoke(main, ["train", "--config", str(config), "--data", "nope",
                                       "--name", "team/v2", "--device", "cpu"])
    assert result.stderr.startswith("error: adapter name 'team/v2' is not allowed; use letters")
