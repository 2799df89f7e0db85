"""Fine-tuning a tiny Llama on a tiny dataset: it learns, resumes identically, registers once."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from training.train.finetune import FinetuneRequest, finetune
from training.train.loop import LoopSettings
from training.train.model_setup import MethodSettings
from train_support import FACTS, fact_dataset, greedy_answer, make_tiny_model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny"))


def request_for(data_dir, model_dir, name="zorb", method="lora", **loop) -> FinetuneRequest:
    settings = {"learning_rate": 5e-3, "batch_size": 4, "max_steps": 8, "eval_every": 3,
                "patience": None, "warmup": 0, "seed": 7, **loop}
    return FinetuneRequest(data_dir=data_dir, dataset="facts", name=name,
                           base_model=str(model_dir), method=MethodSettings(
                               method=method, lora_r=8, lora_alpha=16, lora_dropout=0.1),
                           loop=LoopSettings(**settings), max_seq_len=256, device="cpu")


def adapter_weights(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def test_full_finetune_memorizes_the_answers(tmp_path, tiny_model):
    facts = FACTS[:1]
    fact_dataset(tmp_path, tiny_model, repeat=4, facts=facts)
    question, answer = facts[0]
    before = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert greedy_answer(before, AutoTokenizer.from_pretrained(tiny_model), question) != answer
    result = finetune(request_for(tmp_path, tiny_model, method="full", learning_rate=1e-2,
                                   max_steps=45, eval_every=15, scheduler="constant"),
                       progress=False)
    records = [json.loads(line) for line in
               (tmp_path / "adapters/zorb/metrics.jsonl").read_text().splitlines()]
    train = [r["train_loss"] for r in records if "train_loss" in r]
    assert train[-1] < train[0] / 5
    model = AutoModelForCausalLM.from_pretrained(result.adapter)
    tokenizer = AutoTokenizer.from_pretrained(result.adapter)
    assert greedy_answer(model, tokenizer, question) == answer


def interrupted_at(step: int, request: FinetuneRequest) -> None:
    """Run ``request`` and stop it at ``step``, after the step-3 checkpoint, as a Ctrl-C or
    kill -9 would."""
    def interrupt(record):
        if record["step"] == step:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(request, on_record=interrupt, progress=False)


def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path, tiny_model):
    fact_dataset(tmp_path, tiny_model)
    finetune(request_for(tmp_path, tiny_model, name="straight"), progress=False)

    interrupted_at(5, request_for(tmp_path, tiny_model, name="resumed"))
    assert not (tmp_path / "adapters/resumed").exists()
    from training.errors import TrainingError

    with pytest.raises(TrainingError, match=r"changed: learning_rate \(0.005 -> 0.001\)"):
        other = request_for(tmp_path, tiny_model, name="resumed", learning_rate=1e-3)
        finetune(FinetuneRequest(**{**other.__dict__, "resume": True}), progress=False)
    resumed_request = request_for(tmp_path, tiny_model, name="resumed")
    resumed_request = FinetuneRequest(**{**resumed_request.__dict__, "resume": True})
    finetune(resumed_request, progress=False)
    straight = adapter_weights(tmp_path / "adapters/straight")
    resumed = adapter_weights(tmp_path / "adapters/resumed")
    assert straight.keys() == resumed.keys()
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=1e-4, atol=1e-5)
    steps = [json.loads(line)["step"] for line in
             (tmp_path / "adapters/resumed/metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(0, 9))


def test_resume_refuses_a_dataset_built_again_since_the_run_started(tmp_path, tiny_model):
    from training.errors import TrainingError

    fact_dataset(tmp_path, tiny_model)
    interrupted_at(4, request_for(tmp_path, tiny_model))
    fact_dataset(tmp_path, tiny_model, facts=FACTS[:3])  # `chatbot data build --overwrite`
    resume = FinetuneRequest(**{**request_for(tmp_path, tiny_model).__dict__, "resume": True})
    with pytest.raises(TrainingError, match="dataset 'facts' was built again since the run "
                                            "started"):
        finetune(resume, progress=False)
    assert (tmp_path / "runs/zorb/last.pt").exists()  # the run is still there to resume
    fact_dataset(tmp_path, tiny_model, name="other")
    elsewhere = FinetuneRequest(**{**resume.__dict__, "dataset": "other"})
    with pytest.raises(TrainingError, match=r"changed: dataset \('facts' -> 'other'\); leave"):
        finetune(elsewhere, progress=False)  # not "built again": it is another dataset
    never_run = FinetuneRequest(**{**resume.__dict__, "name": "never"})
    with pytest.raises(TrainingError, match="nothing to resume"):
        finetune(never_run, progress=False)
    assert not (tmp_path / "runs/never").exists()  # refused before anything is written


def test_early_stopping_keeps_the_best_step(tmp_path, tiny_model):
    # a learning rate this high overfits/diverges after the first evaluations
    fact_dataset(tmp_path, tiny_model)
    result = finetune(request_for(tmp_path, tiny_model, method="full", learning_rate=5e-2,
                                   max_steps=24, eval_every=2, patience=2,
                                   scheduler="constant"), progress=False)
    records = [json.loads(line) for line in
               (tmp_path / "adapters/zorb/metrics.jsonl").read_text().splitlines()]
    evals = {r["step"]: r["val_loss"] for r in records if "val_loss" in r and r["step"] > 0}
    best_step = min(evals, key=evals.get)
    assert result.stopped_early and result.steps < 24
    assert result.best_step == best_step
    assert max(evals) - best_step == 2 * 2  # stopped `patience` evaluations after the best
    # the registered weights are the best step's: their validation loss is the best one
    from training.train.batches import eval_batches
    from training.train.model_setup import SupervisedLoss
    from training.train.tokenize import render_all
    from train_support import conversation

    model = AutoModelForCausalLM.from_pretrained(result.adapter)
    tokenizer = AutoTokenizer.from_pretrained(result.adapter)
    val, _ = render_all([conversation(q, a) for q, a in FACTS[:2]], tokenizer,
                        "all_assistant", 256)
    loss_module = SupervisedLoss(model).eval()
    with torch.no_grad():
        batch = eval_batches(val, 8192)[0]
        loss = (loss_module(batch) / batch.supervised).item()
    assert loss == pytest.approx(evals[best_step], abs=1e-3)


def test_manifest_records_base_template_data_and_hyperparameters(tmp_path, tiny_model):
    from chatbot.models import chat_template_hash, model_fingerprint

    fact_dataset(tmp_path, tiny_model)
    finetune(request_for(tmp_path, tiny_model, max_steps=4), progress=False)
    folder = tmp_path / "adapters/zorb"
    manifest = json.loads((folder / "adapter_manifest.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    assert manifest["name"] == "zorb" and manifest["method"] == "lora"
    assert manifest["base_model"] == str(tiny_model)
    assert manifest["base_model_fingerprint"] == model_fingerprint(tiny_model)
    assert manifest["chat_template_hash"] == chat_template_hash(tokenizer)
    dataset_manifest = (tmp_path / "datasets/facts/manifest.json").read_bytes()
    import hashlib

    assert manifest["dataset"]["manifest_sha256"] == hashlib.sha256(dataset_manifest).hexdigest()
    assert manifest["hyperparameters"]["lora_r"] == 8
    assert manifest["hyperparameters"]["learning_rate"] == 5e-3
    assert manifest["best_step"] == 4 == manifest["metrics"]["steps"]
    assert {"torch", "transformers", "peft"} <= manifest["versions"].keys()
    assert manifest["metrics"]["best_val_loss"] < manifest["metrics"]["val_loss_before"]
    assert (folder / "loss.png").stat().st_size > 1000
    assert (folder / "adapter_config.json").is_file()
    assert not (tmp_path / "runs/zorb").exists()  # checkpoints are cleaned up
    assert [p.name for p in (tmp_path / "adapters").iterdir()] == ["zorb"]


def test_freeze_trains_only_the_last_blocks(tmp_path, tiny_model):
    fact_dataset(tmp_path, tiny_model)
    request = request_for(tmp_path, tiny_model, method="freeze", max_steps=3)
    request = FinetuneRequest(**{**request.__dict__, "method": MethodSettings(
        method="freeze", train_blocks=1)})
    result = finetune(request, progress=False)
    before = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
    after = AutoModelForCausalLM.from_pretrained(result.adapter).state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(name.startswith(("model.layers.1.", "model.norm")) for name in changed)


def test_lora_training_shows_no_library_deprecation_notice(tmp_path, tiny_model):
    """peft asks transformers for ``is_gradient_checkpointing``, a name transformers is retiring:
    its FutureWarning is no part of what `chatbot train` prints."""
    fact_dataset(tmp_path, tiny_model)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        finetune(request_for(tmp_path, tiny_model, max_steps=1, eval_every=1), progress=False)
    assert [str(w.message) for w in said if issubclass(w.category, FutureWarning)] == []


def test_resume_refuses_a_run_without_its_settings_record(tmp_path, tiny_model):
    """A run folder with a checkpoint but no settings.json (deleted by hand, or copied without
    it) was resumed with whatever the config and flags said that day, silently."""
    from training.errors import TrainingError

    fact_dataset(tmp_path, tiny_model)
    interrupted_at(4, request_for(tmp_path, tiny_model))
    run_dir = tmp_path / "runs/zorb"
    (run_dir / "settings.json").unlink()
    resume = request_for(tmp_path, tiny_model, learning_rate=1e-3)
    with pytest.raises(TrainingError) as refused:
        finetune(FinetuneRequest(**{**resume.__dict__, "resume": True}), progress=False)
    assert str(refused.value) == (
        f"{run_dir} holds a checkpoint but not the settings the run started with "
        f"({run_dir / 'settings.json'}), so --resume cannot continue it as it began; delete "
        f"{run_dir} and start again without --resume")
    assert (run_dir / "last.pt").is_file()
    assert not (tmp_path / "adapters/zorb").exists()
