"""``chatbot train``: fine-tune a variant on a dataset; ``chatbot train merge``: fold it in.

    chatbot train --data support-v1 --name support-lora --epochs 2 --lr 1e-4
    chatbot train --data support-v1 --name support-lora --resume      # after Ctrl-C or a crash
    chatbot train merge support-lora --out merged/
    torchrun --nproc-per-node 2 -m app train --data support-v1 --name support-lora

Defaults come from the config's ``training:`` section; each flag overrides its key.
"""

from __future__ import annotations

from pathlib import Path

import click

from app.commands.common import BotConfig, in_section, one_line_errors, print_json, with_config

HYPERPARAMETERS = [
    click.option("--method", type=click.Choice(["lora", "freeze", "full"]), default=None,
                 help="lora adapters, freeze (last --train-blocks learn) or full."),
    click.option("--epochs", type=float, default=None),
    click.option("--lr", type=float, default=None, help="Peak learning rate."),
    click.option("--batch-size", type=int, default=None, help="Conversations per micro-batch."),
    click.option("--grad-accum", type=int, default=None, help="Micro-batches per step."),
    click.option("--warmup", type=float, default=None,
                 help="Warm-up fraction of the steps (<1) or a number of steps."),
    click.option("--scheduler", type=click.Choice(["cosine", "linear", "constant"]),
                 default=None),
    click.option("--weight-decay", type=float, default=None),
    click.option("--max-seq-len", type=int, default=None),
    click.option("--seed", type=int, default=None),
    click.option("--max-steps", type=int, default=None, help="Stop after N optimizer steps."),
    click.option("--masking", type=click.Choice(["all_assistant", "last_assistant"]),
                 default=None, help="Which assistant turns carry loss."),
    click.option("--lora-r", type=int, default=None),
    click.option("--lora-alpha", type=int, default=None),
    click.option("--lora-dropout", type=float, default=None),
    click.option("--target-modules", default=None,
                 help="all-linear or comma-separated module names."),
    click.option("--train-blocks", type=int, default=None,
                 help="freeze: how many final blocks learn."),
    click.option("--eval-every", type=int, default=None, help="Validate every N steps."),
    click.option("--patience", type=int, default=None,
                 help="Evaluations without improvement before stopping (0 = off)."),
    click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None),
    click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16"]), default=None),
    click.option("--gradient-checkpointing/--no-gradient-checkpointing", default=None),
    click.option("--threads", type=int, default=None),
]


def hyperparameter_options(func):
    for option in reversed(HYPERPARAMETERS):
        func = option(func)
    return func


@in_section("Training and evaluation")
@click.group("train", invoke_without_command=True)
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
@click.option("--eval-limit", type=int, default=None, help="Evaluate on the first N items.")
@hyperparameter_options
@with_config
@one_line_errors
@click.pass_context
def train_group(ctx: click.Context, config: BotConfig, dataset: str | None, name: str | None,
                resume: bool, quiet: bool, gate: str | None, eval_data: str | None,
                eval_baseline: str | None, eval_limit: int | None, **overrides) -> None:
    """Fine-tune the chat model on a dataset and register it as a variant (or: merge)."""
    if ctx.invoked_subcommand:
        return
    if not dataset or not name:
        raise click.UsageError("chatbot train needs --data DATASET and --name ADAPTER")
    import os

    from app.build import training_request
    from training.train.finetune import finetune

    request = training_request(config, dataset, name, resume, overrides)
    check = None
    if gate:
        from app.build import eval_settings
        from training.eval.evaluate import gate_check, parse_gate

        parse_gate(gate)  # a malformed gate fails now, not after training
        check = gate_check(eval_settings(config), name, gate, eval_data or dataset,
                           eval_baseline or config.default_variant, eval_limit)
    try:
        result = finetune(request, progress=not quiet, before_register=check)
    except KeyboardInterrupt:
        raise click.ClickException(
            f"interrupted; continue from the last checkpoint with `chatbot train --data {dataset} "
            f"--name {name} --resume` (same hyperparameters)") from None
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary
        print_json(result.as_dict())


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
