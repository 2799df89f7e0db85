"""Errors of the training package; each message says what, where, and what to do."""

from chatbot.errors import ChatbotError


class DataError(ChatbotError):
    """Transcripts or a dataset that can't be read, validated or written as asked."""
