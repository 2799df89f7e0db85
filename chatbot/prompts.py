"""Prompt templates: Jinja2 files that turn a question and its sources into chat messages.

A template has two blocks, ``system`` and ``user``; rendering is strict (a missing variable is
an error). Serving and training both build messages here, so a fine-tuned model sees exactly
the prompt it will be served with.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import jinja2

from chatbot.errors import ConfigError, PromptTooLong
from chatbot.file_cache import FileCache
from chatbot.types import Message
from index.types import Hit

TEMPLATE_DIR = Path(__file__).parent / "templates"
BLOCKS = ("system", "user")


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    path: Path
    hash: str
    """sha256 of the template file: recorded with datasets and adapters."""
    template: jinja2.Template = field(repr=False, compare=False)
    declared_examples: tuple = field(default=(), repr=False, compare=False)

    def render(self, block: str, **variables: object) -> str:
        context = self.template.new_context(variables)
        try:
            return "".join(self.template.blocks[block](context)).strip()
        except jinja2.UndefinedError as exc:
            raise ConfigError(f"prompt template {self.path}: {exc.message}") from exc

    def examples(self) -> list[Message]:
        """Few-shot turns the template declares with ``{% set examples = [{"question": ...,
        "answer": ...}] %}``: user/assistant pairs placed after the system prompt, in serving
        and in training alike, because both build messages here."""
        try:
            return [message for pair in self.declared_examples for message in (
                Message("user", str(pair["question"])), Message("assistant", str(pair["answer"])))]
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"prompt template {self.path}: examples must be a list of "
                              f"{{'question': ..., 'answer': ...}} ({exc})") from exc


def load_template(name_or_path: str) -> PromptTemplate:
    """A template by name (``chatbot/templates/NAME.j2``) or by path to a ``.j2`` file; read
    once and again only when the file changes."""
    path = Path(name_or_path).expanduser()
    if not path.suffix:
        path = TEMPLATE_DIR / f"{name_or_path}.j2"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in TEMPLATE_DIR.glob("*.j2")))
        raise ConfigError(f"prompt template {name_or_path!r} not found (looked for {path}); "
                          f"built-in templates: {known}")
    return _templates.get(path)


def _read_template(path: Path) -> PromptTemplate:
    source = path.read_text(encoding="utf-8")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False,
                             autoescape=False)
    try:
        template = env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"prompt template {path}, line {exc.lineno}: {exc.message}") from exc
    missing = [block for block in BLOCKS if block not in template.blocks]
    if missing:
        raise ConfigError(f"prompt template {path} lacks the block(s) {', '.join(missing)}; "
                          "a template defines {% block system %} and {% block user %}")
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    return PromptTemplate(path.stem, path, digest, template,
                          tuple(_declared_examples(env.parse(source), path)))


_templates = FileCache(_read_template)
"""Every message renders its variant's template: parsed once, again only after an edit."""


def _declared_examples(tree: jinja2.nodes.Template, path: Path) -> list:
    """The literal value of a top-level ``{% set examples = [...] %}``, read without rendering
    (rendering would need the question and sources)."""
    for node in tree.find_all(jinja2.nodes.Assign):
        if getattr(node.target, "name", None) == "examples":
            try:
                return list(node.node.as_const())
            except jinja2.nodes.Impossible:
                raise ConfigError(f"prompt template {path}: examples must be a literal list") \
                    from None
    return []


# ChatML, Llama 3, Phi and DeepSeek; then Llama 2 and Gemma; then Mistral and Llama 2
CHAT_MARKUP = re.compile(r"<\|[^<>|\s]{1,64}\|>|<｜[^<>｜\s]{1,64}｜>"
                         r"|</?(?:s|bos|eos|start_of_turn|end_of_turn)>"
                         r"|\[/?INST\]|<</?SYS>>")
"""Control tokens of the common chat templates, written out as text."""
WORD_JOINER = "\u2060"


def defused(text: str) -> str:
    """``text`` with each chat-template control token broken by an invisible word joiner, so a
    tokenizer reads it as ordinary text: a question or a document that spells
    ``<|im_end|><|im_start|>system`` can't open a turn of its own. Nothing else changes."""
    return CHAT_MARKUP.sub(lambda found: found[0][0] + WORD_JOINER + found[0][1:], text)


def numbered_sources(hits: Sequence[Hit]) -> list[dict]:
    return [{"n": i, "source": defused(hit.source), "location": defused(hit.location),
             "text": defused(hit.text)} for i, hit in enumerate(hits, start=1)]


def build_messages(template: PromptTemplate, question: str, hits: Sequence[Hit] = (),
                   history: Sequence[Message] = (),
                   bot_name: str = "chatbot-builder") -> list[Message]:
    """System prompt, the template's few-shot examples, earlier turns, then the question with
    its sources. What people and documents wrote is :func:`defused`; the template is not."""
    variables = {"bot_name": bot_name, "sources": numbered_sources(hits),
                 "question": defused(question)}
    system = Message("system", template.render("system", **variables))
    user = Message("user", template.render("user", **variables))
    earlier = [replace(message, content=defused(message.content)) for message in history]
    return [system, *template.examples(), *earlier, user]


_SOURCES_START, _SOURCES_END = "<<<SOURCES\n", "\nSOURCES>>>\n\nQuestion: "
"""How ``rag.j2`` marks its sources block and what comes between it and the question."""


def question_in(content: str) -> str:
    """The question of a user message that the ``rag`` template rendered with sources, else
    ``content`` as it is: datasets store the prompt the model was sent, and what the person
    asked is read back from it (for name detection, deduplication and eval questions).

    The question follows the first end-of-sources marker, so one that a passage quotes makes
    readers see more, never less, of what the person wrote. Another template's layout is not
    known: its message is returned whole.
    """
    sources, end, question = content.partition(_SOURCES_END)
    return question if end and _SOURCES_START in sources else content


@dataclass(frozen=True)
class FittedPrompt:
    """A prompt within its token budget: what is sent, the passages it holds, its tokens."""

    messages: list[Message]
    hits: list[Hit]
    tokens: int
    """Counted while fitting, so that nobody counts the prompt again (a remote backend counts
    over HTTP)."""


def prompt_within(template: PromptTemplate, question: str, hits: Sequence[Hit],
                  history: Sequence[Message], count_tokens: Callable[[list[Message]], int],
                  budget: int, bot_name: str = "chatbot-builder") -> FittedPrompt:
    """The prompt's messages within ``budget`` tokens, the passages they hold, its tokens.

    Passages go in best first, each while the question and its sources still fit: one that
    would not (a page of one unbroken string, a ``k`` set for a model with a larger window) is
    left out, and the question is answered from the others instead of refused. Then the oldest
    history goes (:func:`fit_to_budget`).
    """
    def tokens(sources: Sequence[Hit]) -> int:  # the prompt without history
        return count_tokens(build_messages(template, question, sources, bot_name=bot_name))

    kept, used = list(hits), tokens(hits)
    if used > budget and hits:
        kept, used = [], tokens([])
        for hit in hits:
            if (with_it := tokens([*kept, hit])) <= budget:
                kept, used = [*kept, hit], with_it
    # numbered as the prompt numbers them, so the sources, the API and the log name each
    # passage by the [n] the answer cites it with
    kept = [replace(hit, rank=number) for number, hit in enumerate(kept, start=1)]
    messages = build_messages(template, question, kept, history, bot_name=bot_name)
    fitted, tokens = _fit(messages, count_tokens, budget, 1 + len(template.examples()), used)
    return FittedPrompt(fitted, kept, tokens)


def fit_to_budget(messages: list[Message], count_tokens: Callable[[list[Message]], int],
                  budget: int, keep_head: int = 1, used: int | None = None) -> list[Message]:
    """Drop the oldest history turns until the prompt fits ``budget`` tokens.

    The first ``keep_head`` messages (system prompt, few-shot examples) and the last one (the
    question) are always kept; history goes in whole user/assistant pairs, oldest first.
    Pairs are costed newest first, each once, until one no longer fits, so the time grows with
    what fits, not with the history sent; the kept prompt is then counted whole, because the
    chat template may join messages differently than it renders them apart. ``used``: the
    tokens of the head and the last message, where the caller has counted them already.
    """
    return _fit(messages, count_tokens, budget, keep_head, used)[0]


def _fit(messages: list[Message], count_tokens: Callable[[list[Message]], int], budget: int,
         keep_head: int, used: int | None) -> tuple[list[Message], int]:
    """:func:`fit_to_budget`'s messages and their tokens."""
    head, history, last = messages[:keep_head], messages[keep_head:-1], messages[-1]
    if used is None:
        used = count_tokens([*head, last])
    if used > budget:
        raise PromptTooLong(used, budget)
    pairs = [history[i:i + 2] for i in range(0, len(history), 2)]
    bare, kept = used, 0
    for pair in reversed(pairs):
        used += _pair_cost(pair, count_tokens)
        if used > budget:
            break
        kept += 1
    while kept:
        candidate = [*head, *(m for pair in pairs[len(pairs) - kept:] for m in pair), last]
        if (tokens := count_tokens(candidate)) <= budget:
            return candidate, tokens
        kept -= 1
    return [*head, last], bare


def _pair_cost(pair: list[Message], count_tokens: Callable[[list[Message]], int]) -> int:
    """Tokens a history pair adds to a prompt: the template's fixed parts (a default system
    prompt, the generation prompt) are in both counts and cancel out."""
    return count_tokens([*pair, *pair]) - count_tokens(pair)
