"""``chatbot train sweep``: search the hyperparameters, register the best trial as the adapter.

    chatbot train sweep --data support-v1 --name support --trials 20
    chatbot train sweep --data support-v1 --name support --trials 30    # continues to 30
    chatbot train sweep --data support-v1 --name support --trials 10 --lr-range 1e-5 5e-4 \\
        --rank 8,16 --objective token_f1 --eval-data heldout.jsonl

Ranges default to the config's ``training.sweep`` section; the other ``chatbot train`` flags
fix the settings every trial shares (``--max-steps``, ``--eval-every``, ``--method`` ...).
"""

from __future__ import annotations

import click

from app.commands.common import BotConfig, ctrl_c_ends_with, one_line_errors, print_json, \
    with_config
from app.commands.train import checked_flags, given_settings, hide_library_bars, \
    hyperparameter_options

# searched range -> its flag (training.sweep keys, as SweepSpace's fields)
RANGE_FLAGS = {"learning_rate": "lr-range", "lora_r": "rank", "alpha_ratio": "alpha-ratio",
               "epochs": "epochs-range", "lora_dropout": "dropout-range",
               "weight_decay": "weight-decay-range"}
# a `chatbot train` flag whose setting the sweep searches -> the flag that sets its range
SEARCHED = {"lr": "--lr-range LOW HIGH", "lora_r": "--rank 8,16", "lora_alpha": "--alpha-ratio 2",
            "epochs": "--epochs-range LOW HIGH", "lora_dropout": "--dropout-range LOW HIGH",
            "weight_decay": "--weight-decay-range LOW HIGH"}


def _choices(kind):
    def parse(ctx, param, value: str | None):
        if value is None:
            return None
        try:
            return tuple(kind(part) for part in value.split(",") if part.strip())
        except ValueError:
            raise click.BadParameter(f"expected comma-separated numbers, got {value!r}") from None

    return parse


@click.command("sweep")
@click.option("--data", "dataset", required=True, help="Dataset name (chatbot data build).")
@click.option("--name", required=True,
              help="Name of the sweep and of the adapter it registers; rerun to continue.")
@click.option("--trials", type=int, default=None, help="Trials in all [training.sweep.trials].")
@click.option("--objective", default=None,
              help="val_loss, or an eval metric such as token_f1 on --eval-data.")
@click.option("--lr-range", nargs=2, type=float, default=None, metavar="LOW HIGH",
              help="Learning rates to search, on a log scale [training.sweep.learning_rate].")
@click.option("--rank", "ranks", callback=_choices(int), metavar="8,16,32",
              help="LoRA ranks to try.")
@click.option("--alpha-ratio", "alpha_ratios", callback=_choices(float), metavar="1,2",
              help="lora_alpha / lora_r ratios to try.")
@click.option("--epochs-range", nargs=2, type=float, default=None, metavar="LOW HIGH",
              help="Epochs to search (ignored with --max-steps) [training.sweep.epochs].")
@click.option("--dropout-range", nargs=2, type=float, default=None, metavar="LOW HIGH",
              help="LoRA dropouts to search [training.sweep.lora_dropout].")
@click.option("--weight-decay-range", nargs=2, type=float, default=None, metavar="LOW HIGH",
              help="Weight decays to search: log scale from above 0, else uniform "
                   "[training.sweep.weight_decay].")
@click.option("--keep-trials", is_flag=True,
              help="Keep every completed trial's adapter (NAME-trial-K), not only the best.")
@click.option("--eval-data", default=None,
              help="Held-out JSONL or dataset for a metric objective [default: --data's "
                   "validation].")
@click.option("--eval-baseline", default=None,
              help="Variant whose template and retrieval the trials are served with "
                   "[default: the config's default variant].")
@click.option("--eval-limit", type=click.IntRange(min=1), default=None,
              help="Evaluate on the first N items.")
@click.option("--quiet", is_flag=True, help="No progress bars; print only the summary.")
@hyperparameter_options
@with_config
@one_line_errors
def sweep(config: BotConfig, dataset: str, name: str, trials: int | None,
          objective: str | None, lr_range, ranks, alpha_ratios, epochs_range, dropout_range,
          weight_decay_range, keep_trials: bool, eval_data: str | None,
          eval_baseline: str | None, eval_limit: int | None, quiet: bool, **overrides) -> None:
    """Search learning rate, LoRA rank/alpha, epochs, dropout and weight decay (Optuna)."""
    if overrides.get("method") in ("dpo", "kto"):
        raise click.UsageError("chatbot train sweep searches supervised fine-tuning; use "
                               "--method lora, freeze or full")
    fixed = [flag for flag in SEARCHED if overrides.get(flag) is not None]
    if fixed:
        raise click.UsageError(
            "the sweep searches " + ", ".join(f"--{f.replace('_', '-')}" for f in fixed)
            + "; give its range instead (" + ", ".join(SEARCHED[f] for f in fixed)
            + "; equal ends or one value fix it)")
    flags = {"trials": trials, "objective": objective, "learning_rate": lr_range,
             "lora_r": ranks, "alpha_ratio": alpha_ratios, "epochs": epochs_range,
             "lora_dropout": dropout_range, "weight_decay": weight_decay_range}
    settings = checked_flags(config.training.sweep, {
        key: value for key, value in flags.items() if value is not None}, "training.sweep",
        RANGE_FLAGS)
    with ctrl_c_ends_with(f"run the same command again to continue sweep {name!r}: finished "
                          "trials are kept and the interrupted one runs again"):
        from app.build import training_request
        from training.train.sweep import VAL_LOSS, SweepRequest, run_sweep
        from training.train.sweep_space import SweepSpace

        base = training_request(config, dataset, name, False, given_settings(config, overrides))
        space = SweepSpace(**{key: tuple(getattr(settings, key)) for key in RANGE_FLAGS})
        score = None
        if settings.objective != VAL_LOSS:
            from app.build import eval_settings
            from training.eval.evaluate import adapter_scorer

            score = adapter_scorer(eval_settings(config), settings.objective,
                                   eval_data or dataset, eval_baseline or config.default_variant,
                                   f"sweep-{name}", eval_limit)
        request = SweepRequest(base=base, trials=settings.trials, space=space,
                               objective=settings.objective, keep_trials=keep_trials,
                               startup_trials=settings.startup_trials)
        if quiet:
            hide_library_bars()
        result = run_sweep(request, score, progress=not quiet)
    print_json(result.as_dict())
