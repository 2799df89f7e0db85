"""Errors of the training package: each says what went wrong, where, and what to do."""

from __future__ import annotations

from chatbot.errors import ChatbotError


class DataError(ChatbotError):
    """Transcripts or a dataset that can't be read, validated or written as asked."""


class DatasetError(ChatbotError):
    """A training dataset that can't be used as it is (missing, empty, built for another model)."""

    @classmethod
    def no_validation(cls, name: str, items: str) -> DatasetError:
        """A dataset whose validation split is empty: validation is what picks the best
        checkpoint and stops training early, so a run can't start without it."""
        return cls(f"dataset {name!r} has no validation {items}, which training checks its "
                   "progress on: with conversations from one session only, or every "
                   "validation one repeating a training answer, all go to training; collect "
                   "more conversations, or raise data.validation_share in the config, and "
                   "rebuild it")


class TrainingError(ChatbotError):
    """A training run that can't start or continue (bad settings, NaN loss, unwritable output)."""


class DivergedError(TrainingError):
    """The training loss became NaN or infinite: the learning rate is too high for the data."""
