"""Errors a user can act on: each message says what went wrong, where, and what to do."""


class ChatbotError(Exception):
    """Base of the errors the CLI prints as one line instead of a traceback."""


class ConfigError(ChatbotError):
    """The bot config is missing or invalid."""


class ModelError(ChatbotError):
    """A model, embedder or adapter can't be found or loaded."""


class InputError(ChatbotError):
    """A user message or request that can't be answered as given."""


class DocumentIndexError(ChatbotError):
    """The document index is missing, was built with other settings, or can't be written."""
