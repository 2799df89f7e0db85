"""``chatbot train``: fine-tune a variant on a dataset; ``chatbot train merge``: fold it in.

    chatbot train --data support-v1 --name support-lora --epochs 2 --lr 1e-4
    chatbot train --data support-v1 --name support-lora --resume      # after Ctrl-C or a crash
    chatbot train merge support-lora --out merged/
    chatbot train --method dpo --data prefs --name support-dpo --from-adapter support-lora
    torchrun --nproc-per-node 2 -m app train --data support-v1 --name support-lora
    torchrun --nproc-per-node 4 -m app train --data support-v1 --name big --distributed fsdp
    chatbot train --data support-v1 --name support-qlora --quantize 4bit     # one CUDA GPU

Defaults come from the config's ``training:`` section; each flag overrides its key and is
checked by that key's rules. ``--resume`` continues with the settings the run started with.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click
from click.core import ParameterSource
from pydantic import BaseModel, ValidationError

from app.commands.common import BotConfig, InOrderGroup, in_section, one_line_errors, print_json, \
    with_config
from chatbot.interrupts import stop_on_ctrl_c
from training.errors import TrainingError

# flag -> training config key, for the flags whose names differ from their key
CONFIG_KEYS = {"lr": "learning_rate"}
DEFAULT_BETA = 0.1

HYPERPARAMETERS = [
    click.option("--method", type=click.Choice(["lora", "freeze", "full", "dpo", "kto"]),
                 default=None, help="lora adapters, freeze (last --train-blocks learn) or full; "
                 "dpo or kto: preference tuning of a LoRA adapter on a preference dataset."),
    click.option("--epochs", type=float, default=None, help="Passes over the training split."),
    click.option("--lr", type=float, default=None, help="Peak learning rate."),
    click.option("--batch-size", type=int, default=None, help="Conversations per micro-batch."),
    click.option("--grad-accum", type=int, default=None, help="Micro-batches per step."),
    click.option("--warmup", type=float, default=None,
                 help="Warm-up fraction of the steps (<1) or a number of steps."),
    click.option("--scheduler", type=click.Choice(["cosine", "linear", "constant"]),
                 default=None, help="How the learning rate falls after the warm-up."),
    click.option("--weight-decay", type=float, default=None, help="AdamW weight decay."),
    click.option("--max-seq-len", type=int, default=None,
                 help="Tokens per conversation; longer ones are cut at the right."),
    click.option("--seed", type=int, default=None,
                 help="Seed of the data order and the new weights."),
    click.option("--max-steps", type=int, default=None, help="Stop after N optimizer steps."),
    click.option("--masking", type=click.Choice(["all_assistant", "last_assistant"]),
                 default=None, help="Which assistant turns carry loss."),
    click.option("--lora-r", type=int, default=None, help="LoRA rank."),
    click.option("--lora-alpha", type=int, default=None,
                 help="LoRA scale: the update is multiplied by alpha / r."),
    click.option("--lora-dropout", type=float, default=None,
                 help="Dropout on the LoRA layers' input."),
    click.option("--target-modules", default=None,
                 help="all-linear or comma-separated module names."),
    click.option("--train-blocks", type=int, default=None,
                 help="freeze: how many final blocks learn."),
    click.option("--eval-every", type=int, default=None, help="Validate every N steps."),
    click.option("--patience", type=click.IntRange(min=0), default=None,
                 help="Evaluations without improvement before stopping (0 = off)."),
    click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
                 help="Where to train (auto: CUDA where there is one)."),
    click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16"]), default=None,
                 help="auto: float32 on CPUs, bfloat16 on GPUs."),
    click.option("--gradient-checkpointing/--no-gradient-checkpointing", default=None,
                 help="Recompute activations in the backward pass: less memory, slower."),
    click.option("--quantize", type=click.Choice(["4bit"]), default=None,
                 help="QLoRA: the frozen base in 4-bit NF4 (CUDA, bitsandbytes); with lora."),
    click.option("--distributed", type=click.Choice(["ddp", "fsdp"]), default=None,
                 help="Under torchrun: ddp (a full copy per GPU) or fsdp (sharded weights)."),
    click.option("--compile", type=click.Choice(["auto", "on", "off"]), default=None,
                 help="torch.compile each decoder layer (auto: on CUDA only)."),
    click.option("--threads", type=int, default=None,
                 help="torch threads for CPU training [default: all cores]."),
]


def hyperparameter_options(func):
    for option in reversed(HYPERPARAMETERS):
        func = option(func)
    return func


@in_section("Training and evaluation")
@click.group("train", cls=InOrderGroup, invoke_without_command=True)
@click.option("--data", "dataset", default=None, help="Dataset name (chatbot data build).")
@click.option("--name", default=None, help="Name of the adapter, registered as a variant.")
@click.option("--resume", is_flag=True, help="Continue the interrupted run of --name.")
@click.option("--quiet", is_flag=True, help="No progress bar; print only the summary.")
@click.option("--eval-gate", "gate", default=None, metavar="METRIC>=X",
              help='Register only if the adapter beats the baseline, e.g. "token_f1>=0" '
                   "(lower bound of the paired 95% interval of the difference).")
@click.option("--eval-data", default=None,
              help="Held-out JSONL or dataset for --eval-gate [default: --data's validation].")
@click.option("--eval-baseline", default=None,
              help="Variant to beat [default: the config's default variant].")
@click.option("--eval-limit", type=click.IntRange(min=1), default=None,
              help="Evaluate on the first N items.")
@click.option("--from-adapter", default=None,
              help="dpo/kto: the registered LoRA adapter to continue [default: the base model].")
@click.option("--beta", type=click.FloatRange(min=0, min_open=True), default=None,
              help="dpo/kto: how close the policy stays to its starting point (higher: closer) "
                   f"[default: {DEFAULT_BETA}].")
@hyperparameter_options
@with_config
@one_line_errors
@click.pass_context
def train_group(ctx: click.Context, config: BotConfig, dataset: str | None, name: str | None,
                resume: bool, quiet: bool, gate: str | None, eval_data: str | None,
                eval_baseline: str | None, eval_limit: int | None, from_adapter: str | None,
                beta: float | None, **overrides) -> None:
    """Fine-tune the chat model on a dataset and register it as a variant (or: merge).

    Each setting flag overrides the key of the same name under the config's training:
    section, whose values are the defaults (--lr: training.learning_rate)."""
    if ctx.invoked_subcommand:
        return
    if not dataset or not name:
        raise click.UsageError("chatbot train needs --data DATASET and --name ADAPTER")
    import os

    from chatbot.paths import DataPaths

    objective = overrides["method"] if overrides["method"] in ("dpo", "kto") else None
    if objective:
        overrides["method"] = "lora"
        if gate and not eval_data:
            raise click.UsageError("--eval-gate with --method dpo/kto needs --eval-data (held-out "
                                   "questions with answers)")
    elif from_adapter or beta is not None:
        flag = "--from-adapter" if from_adapter else "--beta"
        raise click.UsageError(f"{flag} applies to --method dpo or kto")
    given = given_settings(config, overrides)
    run_dir = DataPaths(config.data_path).run(name)
    stop_on_ctrl_c()
    try:  # from the first import on: seconds of libraries, then the run
        if quiet:
            hide_library_bars()

        from app.build import training_request
        from training.train.finetune import finetune, started_settings

        recorded = started_settings(run_dir) if resume else {}
        beta = recorded.get("beta", DEFAULT_BETA) if beta is None else beta
        from_adapter = recorded.get("from_adapter") if from_adapter is None else from_adapter
        request = training_request(config, dataset, name, resume, given)
        check = None
        if resume and not gate:
            _refuse_an_ungated_resume_of_a_failed_gate(config, name)
        if gate:
            from app.build import eval_settings
            from training.eval.evaluate import gate_check

            # a malformed gate, missing eval data or unknown baseline fails now, not after
            # training
            check = gate_check(eval_settings(config), name, gate, eval_data or dataset,
                               eval_baseline or config.default_variant, eval_limit)
        if objective:
            from training.train.preference import PreferenceRequest, train_preference

            result = train_preference(PreferenceRequest(request, objective, beta, from_adapter),
                                      progress=not quiet, before_register=check)
        else:
            result = finetune(request, progress=not quiet, before_register=check)
    except KeyboardInterrupt:
        raise interrupted(ctx, run_dir, objective) from None
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary
        print_json(result.as_dict())


def hide_library_bars() -> None:
    """``--quiet``: transformers' bars for loading and saving a model go too, not only ours."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _refuse_an_ungated_resume_of_a_failed_gate(config: BotConfig, name: str) -> None:
    from training.eval.evaluate import failed_gate

    gate = failed_gate(config.data_path, name)
    if gate:
        raise TrainingError(
            f"run {name!r} failed its evaluation gate ({gate}), and --resume without "
            "--eval-gate would register it unevaluated; give --eval-gate again, or start a new "
            "run under another --name")


def given_settings(config: BotConfig, overrides: dict) -> dict:
    """The hyperparameter flags given (``None``: not given, never a value), by config key and
    checked by the rules of the config's ``training:`` section, before anything is written."""
    given = {CONFIG_KEYS.get(flag, flag): value for flag, value in overrides.items()
             if value is not None}
    if given.get("patience") == 0:
        given["patience"] = None  # --patience 0 is the config's null: no early stopping
    checked_flags(config.training, given, "training",
                  {key: flag for flag, key in CONFIG_KEYS.items()})
    return given


def checked_flags(section: BaseModel, given: dict, path: str, flags: dict[str, str]):
    """``section`` (the config section at ``path``) with the ``given`` keys replaced, validated
    as the config file is; a bad value is a usage error naming its flag (``flags``: key -> flag
    where the names differ) and the allowed range."""
    try:
        return type(section).model_validate({**section.model_dump(), **given})
    except ValidationError as exc:
        from chatbot.config_problems import value_problem

        problems = []
        for error in exc.errors():
            key = str(error["loc"][0])
            flag = "--" + flags.get(key, key).replace("_", "-")
            problem = value_problem({**error, "loc": (*path.split("."), *error["loc"])})
            problems.append(f"Invalid value for '{flag}': {problem} (as for {path}.{key})")
        raise click.UsageError("\n".join(problems)) from None


def interrupted(ctx: click.Context, run_dir: Path, objective: str | None) -> TrainingError:
    """What to run next after Ctrl-C: the command that resumes from the last checkpoint, which
    reuses the settings the run recorded, or, with no checkpoint yet, the command to start over."""
    if not _has_checkpoint(run_dir, objective):
        return TrainingError(
            "interrupted before the first checkpoint (saved at each validation), so there is "
            f"nothing to resume; start again with `{command_line(ctx, {'resume'})}`")
    from training.train.finetune import started_settings

    recorded = started_settings(run_dir).keys() - {"dataset"}
    reused = {param.name for param in ctx.command.params
              if CONFIG_KEYS.get(param.name, param.name) in recorded}
    if objective:
        reused.discard("method")  # --method dpo/kto picks the trainer; the record says lora
    return TrainingError("interrupted; continue from the last checkpoint with "
                         f"`{command_line(ctx, reused | {'resume'})} --resume`")


def _has_checkpoint(run_dir: Path, objective: str | None) -> bool:
    from training.train.checkpoint import LAST, last_trainer_checkpoint

    if objective:  # dpo/kto: TRL's checkpoint-N folders
        return last_trainer_checkpoint(run_dir) is not None
    return (run_dir / LAST).is_file()


def command_line(ctx: click.Context, leave_out: set[str] = frozenset()) -> str:
    """``chatbot train`` with the options typed on its command line, but those in
    ``leave_out``, ready to paste into a shell."""
    words = ["chatbot", "train"]
    for param in ctx.command.params:
        if (param.name in leave_out
                or ctx.get_parameter_source(param.name) is not ParameterSource.COMMANDLINE):
            continue
        value = ctx.params[param.name]
        if getattr(param, "is_flag", False):
            words.append(param.opts[0] if value else param.secondary_opts[0])
        else:
            words += [param.opts[0], shlex.quote(str(value))]
    return " ".join(words)


@train_group.command("merge")
@click.argument("adapter")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="New directory for the standalone model.")
@with_config
@one_line_errors
def merge(config: BotConfig, adapter: str, out: Path) -> None:
    """Fold a LoRA adapter into its base model: a standalone model directory."""
    from chatbot.adapters import AdapterManifest
    from chatbot.models import resolve_model
    from chatbot.paths import DataPaths
    from training.train.registry import merge_adapter

    adapter_dir = DataPaths(config.data_path).adapter(adapter)
    base = resolve_model(AdapterManifest.load(adapter_dir).base_model, config.base_dir)
    print_json({"merged": str(merge_adapter(adapter_dir, base, out.resolve()))})


COMMANDS = [train_group]
