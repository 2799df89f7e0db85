"""Errors a user can act on: each message says what went wrong, where, and what to do."""

import os
from pathlib import Path


class ChatbotError(Exception):
    """Base of the errors the CLI prints as one line instead of a traceback."""

    @property
    def public(self) -> str:
        """The message for a caller of the bot's web page or API, who may be a stranger."""
        return str(self)


class ConfigError(ChatbotError):
    """The bot config is missing or invalid."""


class ModelError(ChatbotError):
    """A model, embedder or adapter can't be found or loaded."""


class ModelBusy(ModelError):
    """The model stayed busy with other answers for longer than an answer may wait: worth
    asking again later, as a busy remote backend is."""

    busy = True


class GenerationFailed(ModelError):
    """The model raised while answering. Its words (torch's, a kernel's) may name the server's
    files or memory: they are for the operator (the CLI, the turn's entry in the conversation
    log; the API's error id in the server log); ``public`` says only that it failed."""

    @property
    def public(self) -> str:
        return ("the model failed while answering; its error is in the conversation log, "
                "with this turn")


class BackendError(ModelError):
    """A remote generation server failed, or stayed busy (``busy``: worth asking again later).
    The message names the server's URL for the operator (the CLI, the server log); ``public``
    leaves it out: callers of the bot's API and web page need not learn the internal network.
    ``retry_after_s`` is the wait the busy server last asked for, if it named one;
    ``unreachable``: no connection was taken (the server down or starting, or a wrong URL)."""

    def __init__(self, message: str, url: str, busy: bool = False,
                 retry_after_s: float | None = None, unreachable: bool = False) -> None:
        super().__init__(message)
        self.url, self.busy, self.retry_after_s = url, busy, retry_after_s
        self.unreachable = unreachable

    @property
    def public(self) -> str:
        return str(self).replace(f" ({self.url})", "")


class InputError(ChatbotError):
    """A user message or request that can't be answered as given."""


class NotInLog(InputError):
    """A turn or arena battle the conversation log does not hold: never given, or erased
    since (``chatbot logs delete``) while a page still showed it."""


class TooManyNewTokens(InputError):
    """More new tokens asked for than leave room for the prompt, or for the passages found;
    a surface may name its own setting for them (the API's ``max_tokens``) before
    ``problem``."""

    def __init__(self, asked: int, context_window: int, passages: int = 0) -> None:
        self.problem = f"the model reads {context_window:,} tokens in all, prompt included" + (
            f", and that leaves no room for the {passages} passage{'s' * (passages != 1)} "
            "found for the question" if passages else "") + "; ask for fewer"
        super().__init__(f"{asked:,} new tokens asked for; {self.problem}")
        self.asked = asked


class SessionNotYours(InputError):
    """A client named a session that another client (or the web UI) began; nothing is logged."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"the session {session_id!r} was begun by another client")
        self.session_id = session_id


class PromptTooLong(InputError):
    """The message and the prompt around it take more tokens than a prompt may hold."""

    def __init__(self, tokens: int, budget: int) -> None:
        super().__init__(f"the message takes {tokens} tokens with the prompt around it, more "
                         f"than the {budget} a prompt may hold; shorten the message")
        self.tokens, self.budget = tokens, budget


class DocumentIndexError(ChatbotError):
    """The document index is missing, was built with other settings, or can't be written.
    The message names the index's files for the operator; ``public`` names them from the data
    folder (``index/manifest.json``): callers of the bot's API and web page need not learn
    where the server keeps its data."""

    def __init__(self, message: str, data_dir: Path | None = None) -> None:
        super().__init__(message)
        self.data_dir = data_dir

    @property
    def public(self) -> str:
        text = str(self)
        if self.data_dir is not None:
            for folder in {str(self.data_dir), str(self.data_dir.resolve())}:
                text = text.replace(folder + os.sep, "")
        return text


class LogError(ChatbotError):
    """The conversation log can't be read: the file is damaged or not a database."""
