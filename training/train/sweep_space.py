"""What a hyperparameter sweep searches: the ranges, and one trial's draw from them.

A range whose two ends are equal, or a list of one choice, fixes that hyperparameter. LoRA's
alpha is searched as a multiple of the rank (``alpha = ratio * r``), so that the adapter's scale
``alpha / r`` stays one searched quantity whatever the rank.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SweepSpace:
    """The searched ranges, as checked by the config's ``training.sweep`` section; learning
    rate and weight decay are drawn on a log scale."""

    learning_rate: tuple[float, float] = (1e-5, 1e-3)
    lora_r: tuple[int, ...] = (8, 16, 32)
    alpha_ratio: tuple[float, ...] = (1.0, 2.0)
    epochs: tuple[float, float] = (1.0, 3.0)
    lora_dropout: tuple[float, float] = (0.0, 0.1)
    weight_decay: tuple[float, float] = (0.0, 0.1)


def suggest(trial, space: SweepSpace, lora: bool) -> dict:
    """One trial's hyperparameters, keyed like ``FinetuneRequest``'s method and loop fields."""
    values = {
        "learning_rate": _float(trial, "learning_rate", space.learning_rate, log=True),
        "epochs": _float(trial, "epochs", space.epochs),
        "weight_decay": _weight_decay(trial, space.weight_decay),
    }
    if lora:
        rank = _choice(trial, "lora_r", space.lora_r)
        ratio = _choice(trial, "alpha_ratio", space.alpha_ratio)
        values.update(lora_r=rank, lora_alpha=max(1, round(ratio * rank)),
                      lora_dropout=_float(trial, "lora_dropout", space.lora_dropout))
    return values


def _float(trial, name: str, bounds: tuple[float, float], log: bool = False) -> float:
    low, high = bounds
    return low if low == high else trial.suggest_float(name, low, high, log=log)


def _choice(trial, name: str, choices: tuple):
    return choices[0] if len(choices) == 1 else trial.suggest_categorical(name, list(choices))


def _weight_decay(trial, bounds: tuple[float, float]) -> float:
    """Log scale when the range starts above 0; from 0, a uniform draw (log(0) is undefined)."""
    low, high = bounds
    if low == high:
        return low
    return trial.suggest_float("weight_decay", low, high, log=low > 0)
