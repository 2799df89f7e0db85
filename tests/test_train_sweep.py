"""``chatbot train sweep`` on the tiny model: trials run, a bad learning rate is pruned, the best
trial becomes the adapter, and a rerun continues the same study."""

from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pytest
from click.testing import CliRunner

from app.cli import main
from training.train.finetune import FinetuneRequest
from training.train.loop import LoopSettings
from training.train.model_setup import MethodSettings
from training.train.sweep import SweepRequest, run_sweep
from training.train.sweep_space import SweepSpace
from ctrl_c import ctrl_c_once, started
from train_support import fact_dataset, make_tiny_model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny"))


def sweep_request(data_dir, model_dir, trials: int) -> SweepRequest:
    base = FinetuneRequest(
        data_dir=data_dir, dataset="facts", name="zorb", base_model=str(model_dir),
        method=MethodSettings(lora_r=4, lora_alpha=8), max_seq_len=256, device="cpu",
        loop=LoopSettings(max_steps=4, eval_every=2, patience=None, warmup=0, batch_size=4,
                          scheduler="constant", seed=3))
    space = SweepSpace(learning_rate=(1e-3, 50.0), lora_r=(4, 8), alpha_ratio=(2.0,),
                       epochs=(1.0, 1.0), lora_dropout=(0.0, 0.0), weight_decay=(0.0, 0.0))
    return SweepRequest(base=base, trials=trials, space=space, startup_trials=1)


def test_sweep_prunes_a_bad_learning_rate_registers_the_best_and_continues(isolated_state,
                                                                          tiny_model):
    tmp_path = isolated_state  # the data dir ($CHATBOT_DATA_DIR)
    fact_dataset(tmp_path, tiny_model)
    storage = f"sqlite:///{tmp_path / 'sweeps/zorb/study.sqlite'}"
    (tmp_path / "sweeps/zorb").mkdir(parents=True)
    study = optuna.create_study(study_name="zorb", storage=storage)
    study.enqueue_trial({"learning_rate": 5e-3, "lora_r": 4})
    study.enqueue_trial({"learning_rate": 50.0, "lora_r": 8})  # diverges or loses to the median

    result = run_sweep(sweep_request(tmp_path, tiny_model, trials=2))

    assert result.trials == {"complete": 1, "pruned": 1}
    assert result.best_trial == 0
    assert result.best_hyperparameters == {"learning_rate": 5e-3, "epochs": 1.0,
                                           "weight_decay": 0.0, "lora_r": 4, "lora_alpha": 8,
                                           "lora_dropout": 0.0}
    manifest = json.loads((tmp_path / "adapters/zorb/adapter_manifest.json").read_text())
    assert manifest["name"] == "zorb"
    assert manifest["hyperparameters"]["learning_rate"] == 5e-3
    assert manifest["metrics"]["sweep"]["trial"] == 0
    assert manifest["metrics"]["best_val_loss"] == result.best_value
    assert sorted(p.name for p in (tmp_path / "adapters").iterdir()) == ["zorb"]
    assert not any((tmp_path / "runs").iterdir())
    report = (tmp_path / "sweeps/zorb/report.md").read_text()
    assert "| 0 (best) | complete |" in report and "| 1 | pruned (" in report
    assert (tmp_path / "sweeps/zorb/objective.png").stat().st_size > 1000

    # a trial cut short by a killed process is marked failed and run again, and what it left
    # goes (its checkpoints, and its adapter half-written when the kill came as it registered
    # it); the same command with more trials continues the study: one new trial, same best
    # or better
    killed = optuna.load_study(study_name="zorb", storage=storage).ask()
    killed.set_user_attr("adapter", "zorb-trial-2")
    (tmp_path / "runs/zorb-trial-2").mkdir()
    (tmp_path / "adapters/.zorb-trial-2.partial").mkdir()
    (tmp_path / "adapters/.zorb-trial-2.partial/adapter_model.safetensors").write_bytes(b"cut")
    config = tmp_path / "bot.yaml"
    config.write_text(json.dumps({"models": {"chat": str(tiny_model)},
                                  "training": {"device": "cpu", "max_seq_len": 256,
                                               "sweep": {"startup_trials": 1}}}))
    out = subprocess.run([  # a process of its own: optuna's logging starts afresh
        sys.executable, "-m", "app",
        "train", "sweep", "--config", str(config), "--data", "facts", "--name", "zorb",
        "--trials", "3", "--quiet", "--lr-range", "1e-3", "1e-2", "--rank", "4,8",
        "--alpha-ratio", "2", "--epochs-range", "1", "1", "--dropout-range", "0", "0",
        "--weight-decay-range", "0", "0", "--max-steps", "4", "--eval-every", "2",
        "--batch-size", "4", "--seed", "3", "--scheduler", "constant", "--warmup", "0"],
        capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""  # --quiet: the summary alone, no library's bars or notices
    continued = json.loads(out.stdout)
    assert continued["trials"]["fail"] == 1
    assert continued["trials"].get("complete", 0) + continued["trials"].get("pruned", 0) == 3
    assert continued["best_value"] <= result.best_value
    best = continued["best_trial"]
    manifest = json.loads((tmp_path / "adapters/zorb/adapter_manifest.json").read_text())
    assert manifest["metrics"]["sweep"]["trial"] == best
    assert sorted(p.name for p in (tmp_path / "adapters").iterdir()) == ["zorb"]
    assert not any((tmp_path / "runs").iterdir())


def test_sweep_refuses_to_overwrite_another_adapter(tmp_path, tiny_model):
    from training.errors import TrainingError

    (tmp_path / "adapters/zorb").mkdir(parents=True)
    with pytest.raises(TrainingError, match="adapter 'zorb' already exists"):
        run_sweep(sweep_request(tmp_path, tiny_model, trials=1))


def test_a_name_too_long_for_its_trials_is_refused_before_the_study(tmp_path, tiny_model):
    """Trials are runs named NAME-trial-K: a --name of 60 characters let the first trial fail
    on a name the user never typed, logged by Optuna, and left a study of failed trials."""
    from dataclasses import replace

    from training.errors import TrainingError

    fact_dataset(tmp_path, tiny_model)
    request = sweep_request(tmp_path, tiny_model, trials=1)
    long = replace(request, base=replace(request.base, name="s" * 60))
    with pytest.raises(TrainingError) as refused:
        run_sweep(long)
    assert str(refused.value) == (
        f"sweep name {'s' * 60!r} leaves no room for its trials' names (NAME-trial-K, up to 64 "
        "characters); give --name at most 53 characters")
    assert not (tmp_path / "sweeps").exists()


def test_bad_ranges_are_reported_together_by_config_check():
    from chatbot.config_file import config_problems

    sweep = {"learning_rate": [0.0, 1e-3], "lora_dropout": [0.0, 1.5], "lora_r": [],
             "epochs": [3, 1]}
    assert config_problems({"training": {"sweep": sweep}}) == [
        "training.sweep.learning_rate: range must start above 0 (it is drawn on a log scale)",
        "training.sweep.lora_r: needs at least 1 item, got none",
        "training.sweep.epochs: range 3..1 must satisfy 0 <= low <= high",
        "training.sweep.lora_dropout: range must end below 1"]


def test_an_objective_that_is_not_an_upward_metric_is_refused(tiny_config, tmp_path,
                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/default.yaml here: only --config is read
    out = CliRunner().invoke(main, ["train", "sweep", "--config", str(tiny_config), "--data",
                                    "facts", "--name", "zorb", "--objective", "length"])
    assert out.exit_code == 1
    assert out.output.startswith("error: objective 'length' is not a metric that improves "
                                 "upward; use val_loss or one of token_f1, exact_match,")


def test_a_flag_for_a_searched_setting_is_refused_with_its_range_flag(tiny_config):
    """--lora-r 4 was silently replaced by the ranks searched; it says to give --rank."""
    out = CliRunner().invoke(main, ["train", "sweep", "--config", str(tiny_config), "--data",
                                    "facts", "--name", "zorb", "--lora-r", "4", "--lr", "1e-4"])
    assert out.exit_code == 2
    assert ("Error: the sweep searches --lr, --lora-r; give its range instead (--lr-range LOW "
            "HIGH, --rank 8,16; equal ends or one value fix it)") in out.output


def test_a_second_run_of_one_sweep_is_refused_while_the_first_runs(tmp_path, tiny_model):
    """Two runs of one sweep: the second took the first one's running trial for an
    interrupted one, failed it and deleted its run folder."""
    import subprocess
    import sys

    from training.errors import TrainingError

    fact_dataset(tmp_path, tiny_model)
    lock = tmp_path / "sweeps" / "zorb" / ".lock"
    lock.parent.mkdir(parents=True)
    first = subprocess.Popen(  # holds the sweep's lock as a running sweep does
        [sys.executable, "-c", "import sys, time; from filelock import FileLock; "
         "held = FileLock(sys.argv[1]); held.acquire(); print('running', flush=True); "
         "time.sleep(120)",
         str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "running"
        with pytest.raises(TrainingError, match=r"^sweep 'zorb' is running in another "
                                                r"process \(it holds .*\.lock\); wait"):
            run_sweep(sweep_request(tmp_path, tiny_model, trials=1))
    finally:
        first.kill()
        first.wait()
    assert not (tmp_path / "runs").exists()
    assert not (tmp_path / "sweeps/zorb/study.sqlite").exists()


def test_ctrl_c_says_the_same_command_continues_the_sweep(tmp_path, tiny_model):
    """A real SIGINT to a sweep started in the background (SIGINT ignored, as `cmd &` does)."""
    fact_dataset(tmp_path / "data", tiny_model)
    config = tmp_path / "bot.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "data"),
                                  "models": {"chat": str(tiny_model), "embedder": "hash:64"},
                                  "training": {"device": "cpu", "max_seq_len": 256}}))
    sweep = started(["train", "sweep", "--config", str(config), "--data", "facts", "--name",
                     "zorb", "--trials", "3", "--max-steps", "400", "--eval-every", "2",
                     "--quiet"], in_background=True)
    stderr = ctrl_c_once(sweep, lambda: any((tmp_path / "data" / "runs").glob("zorb-trial-0/*")))
    assert stderr.splitlines()[-1] == (
        "error: interrupted; run the same command again to continue sweep 'zorb': finished "
        "trials are kept and the interrupted one runs again")
