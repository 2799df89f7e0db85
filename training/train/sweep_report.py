"""A sweep's report: ``report.md`` (one row per trial) and ``objective.png`` (objective per trial).

Both are rewritten from the Optuna study at the end of every ``chatbot train sweep`` run, so a
continued sweep reports all its trials.
"""

from __future__ import annotations

from pathlib import Path

COLUMNS = ("learning_rate", "epochs", "weight_decay", "lora_r", "lora_alpha", "lora_dropout")


def write_report(study, sweep_dir: Path, objective: str) -> Path:
    """Write the table and the plot into ``sweep_dir``; returns the report's path."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    best = study.best_trial.number if complete else None
    lines = [f"# Sweep {study.study_name}", "",
             f"Objective: {objective} ({study.direction.name.lower()}). {len(trials)} trials, "
             f"{len(complete)} complete; best: trial {best}.", "",
             "![objective per trial](objective.png)", "",
             "| trial | state | " + objective + " | best step | steps | "
             + " | ".join(COLUMNS) + " |",
             "|---" * (5 + len(COLUMNS)) + "|"]
    for trial in trials:
        values = trial.user_attrs.get("hyperparameters", {})
        marker = " (best)" if trial.number == best else ""
        lines.append(f"| {trial.number}{marker} | {_state(trial)} | {_value(trial.value)} | "
                     f"{_value(trial.user_attrs.get('best_step'))} | "
                     f"{_value(trial.user_attrs.get('steps'))} | "
                     + " | ".join(_value(values.get(column)) for column in COLUMNS) + " |")
    path = sweep_dir / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _plot(trials, objective, best, sweep_dir / "objective.png")
    return path


def _state(trial) -> str:
    if trial.state.name == "PRUNED":
        return f"pruned ({trial.user_attrs.get('pruned_because', 'median pruner')})"
    return trial.state.name.lower()


def _value(value) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _plot(trials, objective: str, best: int | None, out: Path) -> None:
    """Complete trials as dots (the best ringed); pruned ones, when the objective is the
    validation loss, as crosses at their last reported loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    done = [(t.number, t.value) for t in trials if t.state.name == "COMPLETE"]
    if done:
        axis.plot(*zip(*done), "o", label="complete")
    if objective == "val_loss":
        pruned = [(t.number, t.intermediate_values[max(t.intermediate_values)])
                  for t in trials if t.state.name == "PRUNED" and t.intermediate_values]
        if pruned:
            axis.plot(*zip(*pruned), "x", color="grey", label="pruned (last validation loss)")
    if best is not None:
        axis.plot([best], [dict(done)[best]], "o", markersize=14, fillstyle="none",
                  color="black", label="best")
    axis.set_xlabel("trial")
    axis.set_ylabel(objective)
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)
