"""Errors of the training package: each says what went wrong, where, and what to do."""

from chatbot.errors import ChatbotError


class DataError(ChatbotError):
    """Transcripts or a dataset that can't be read, validated or written as asked."""


class DatasetError(ChatbotError):
    """A training dataset that can't be used as it is (missing, empty, built for another model)."""


class TrainingError(ChatbotError):
    """A training run that can't start or continue (bad settings, NaN loss, unwritable output)."""


class DivergedError(TrainingError):
    """The training loss became NaN or infinite: the learning rate is too high for the data."""
