"""pydantic's errors for a bot config as the lines ``chatbot config check`` prints: each at
its key path in the words of YAML, and with them what the checks comparing keys find, which
pydantic runs only once every key is valid."""

from __future__ import annotations

import copy
import difflib
import re
from typing import Iterable, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError

from chatbot.config import BotConfig, problems_across_keys
from chatbot.config_section import holds_mapping


def validation_problems(raw: dict, exc: ValidationError, context: dict
                        ) -> tuple[BotConfig, list[str]]:
    """Every problem in ``raw``, whose validation raised ``exc``, as ``key.path: message``,
    and the config as far as it is valid (a failing key or section at its defaults)."""
    described = _described(exc.errors())
    config, across = _checks_across_keys(raw, exc, context)
    return config, described + [problem for problem in across if problem not in described]


def _checks_across_keys(raw: dict, exc: ValidationError, context: dict
                        ) -> tuple[BotConfig, list[str]]:
    """The problems that checks comparing keys find: pydantic runs them only once every key
    is valid, so they run again on the config with the keys that failed left out."""
    pruned = copy.deepcopy(raw)
    for error in exc.errors():
        *parents, key = error["loc"] or (None,)
        holder = pruned
        for part in parents:
            holder = holder.get(part) if isinstance(holder, dict) else None
        if not isinstance(holder, dict):
            continue
        if not _names_a_section(error["loc"]):
            holder.pop(key, None)  # a key's bad value
        elif not isinstance(holder.get(key), dict):
            holder[key] = {}  # a section that is no mapping: its defaults, its name kept
        # a whole section's own problem: the section stays, for its other keys
    config, errors = _lenient_config(pruned, context)
    return config, _described(error for error in errors if error["type"] != "missing") + \
        problems_across_keys(config)


def _lenient_config(raw: dict, context: dict) -> tuple[BotConfig, list[dict]]:
    """``raw`` with each section, variant and backend that still fails (its own checks, a
    key left out) at its defaults, so every name and valid value is there to compare; and
    the errors of those sections, some of which showed only once their bad keys were out."""
    values, errors = {}, []
    for name, field in BotConfig.model_fields.items():
        if name not in raw or (raw[name] is None and holds_mapping(BotConfig, name)):
            continue  # left out, or left empty: its defaults
        value, kind = raw[name], field.annotation
        if get_origin(kind) is dict and isinstance(value, dict):
            value = {key: _validated(get_args(kind)[1], entry, context, (name, key), errors)
                     for key, entry in value.items()} or _INVALID  # none: as if left out
        else:
            value = _validated(kind, value, context, (name,), errors)
        if value is not _INVALID:
            values[name] = value
    return BotConfig.model_construct(**values), errors


_INVALID = object()


def _validated(kind: object, value: object, context: dict, loc: tuple,
               errors: list[dict]) -> object:
    """``value`` as ``kind``; when it fails (its errors added to ``errors`` at ``loc``), a
    section at its defaults, any other value ``_INVALID``."""
    try:
        return TypeAdapter(kind).validate_python(value, context=context)
    except ValidationError as exc:
        errors += [{**error, "loc": (*loc, *error["loc"])} for error in exc.errors()]
    is_section = isinstance(kind, type) and issubclass(kind, BaseModel)
    return kind.model_construct() if is_section else _INVALID


def _names_a_section(loc: tuple) -> bool:
    """Whether a problem's place is a whole section (``retrieval``, ``variants.NAME``), whose
    other keys the checks across keys still read, rather than one key whose value is a mapping
    (``ab.weights``)."""
    return _section_at(loc) is not None


def _section_at(loc: tuple) -> type[BaseModel] | None:
    """The config section at a key path, ``None`` where it is a key or names nothing."""
    kind: object = BotConfig
    for part in loc:
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            field = kind.model_fields.get(part)
            if field is None:
                return None
            kind = field.annotation
        elif get_origin(kind) is dict:  # variants, backends: a section per name
            kind = get_args(kind)[1]
        else:
            return None
    return kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None


def _unknown_key(loc: tuple) -> str:
    """An unknown key, with the known key of its section it may be a misspelling of."""
    section = _section_at(loc[:-1])
    known = [name for name, field in section.model_fields.items()
             if not field.exclude] if section else []
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.75)
    if close:
        return f"unknown key; did you mean {close[0]}? (else remove it)"
    return "unknown key (remove it or check its spelling)"


def _described(errors: Iterable[dict]) -> list[str]:
    """Each of pydantic's errors as ``key.path: message`` lines."""
    return [problem for error in errors for problem in _describe(error)]


def _describe(error: dict) -> list[str]:
    path = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return [f"{path}: {_unknown_key(error['loc'])}"]
    if error["type"] == "missing":
        return [f"{path}: missing; add it"]
    if error["type"] in SHAPES:
        return [f"{path}: {_wrong_shape(error)}"]
    if error["type"] in (*BOUNDS, *TYPES, "literal_error", "too_short"):
        return [f"{path}: {value_problem(error)}"]
    message = error["msg"].removeprefix("Value error, ")
    if path:
        return [f"{path}: {message}"]
    return [_at_its_key(line) for line in message.splitlines()]  # the checks across keys


def value_problem(error: dict) -> str:
    """One error of a key's value without its key path, naming the value given: what a flag
    that sets the key (``--lr -1``) says too, as the config check says it."""
    given = _as_written(error["input"])
    if error["type"] in BOUNDS:
        return f"{given} is out of range; allowed: {_allowed_range(error)}"
    if error["type"] in TYPES:
        return _wrong_type(error)
    if error["type"] == "literal_error":
        return f"{given} is not one of {error['ctx']['expected']}"
    if error["type"] == "too_short":  # an empty list where values are needed
        need, got = error["ctx"]["min_length"], error["ctx"]["actual_length"]
        return f"needs at least {need} item{'s' * (need != 1)}, got {got or 'none'}"
    message = error["msg"].removeprefix("Value error, ")
    return f"{given}: {message[0].lower()}{message[1:]}"


def _at_its_key(message: str) -> str:
    """A check across sections' message, which starts with the key it is about."""
    named = NAMED_KEY.match(message)
    if named and named.group(1).split(".")[0] in BotConfig.model_fields:
        return f"{named.group(1)}: {message[named.end():]}"
    return f"(top level): {message}"


SHAPES = {"dict_type": ("a mapping of keys", "write its keys indented under it"),
          "model_type": ("a mapping of keys", "write its keys indented under it"),
          "list_type": ("a list", "write one '- item' a line, or [a, b]")}
"""pydantic's error types for a value of the wrong shape -> what is expected, how to write it."""

YAML_KINDS = {dict: "a mapping", list: "a list", str: "a string", int: "a number",
              float: "a number", bool: "true or false"}


TYPES = {"int_parsing": "a whole number", "int_type": "a whole number",
         "int_from_float": "a whole number", "float_parsing": "a number", "float_type": "a number",
         "finite_number": "a finite number", "bool_parsing": "true or false",
         "bool_type": "true or false", "string_type": "text"}
"""pydantic's error types for a value of the wrong type -> what the key takes, in YAML's words."""


def _wrong_type(error: dict) -> str:
    """What the key takes and the value given; a number or true/false where text is wanted
    needs quotes in YAML."""
    value = error["input"]
    if value is None:
        return f"expected {TYPES[error['type']]}, got nothing (null); give a value or remove it"
    if error["type"] == "string_type" and isinstance(value, (int, float)):
        return f"expected text, got {_as_written(value)}; put it in quotes"
    return f"expected {TYPES[error['type']]}, got {_as_written(value)}"


def _as_written(value: object) -> str:
    """A value as YAML reads: text quoted, true or false, a number; a mapping or a list by
    its kind."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (dict, list)):
        return YAML_KINDS[type(value)]
    return str(value)


def _wrong_shape(error: dict) -> str:
    """A wrong shape in the words of YAML, not of pydantic (which names its model classes)."""
    expected, how = SHAPES[error["type"]]
    value = error["input"]
    if value is None:
        return f"expected {expected}, got nothing (null); {how}, or remove it"
    return f"expected {expected}, got {YAML_KINDS.get(type(value), type(value).__name__)}; {how}"


NAMED_KEY = re.compile(r"([a-z_]+(?:\.[\w-]+)*): ")


BOUNDS = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt",
          "less_than_equal": "le"}
"""pydantic's error types for a value out of range -> the bound in the error's context."""


def _allowed_range(error: dict) -> str:
    """Both ends a key allows, where pydantic names only the one the value passed: read from
    the key's field (a list's item has none to read: the one bound it broke)."""
    section = _section_at(error["loc"][:-1])
    field = section.model_fields.get(error["loc"][-1]) if section else None
    bounds = {name: getattr(rule, name) for rule in (field.metadata if field else [])
              for name in BOUNDS.values() if hasattr(rule, name)}
    bounds = bounds or {BOUNDS[error["type"]]: error["ctx"][BOUNDS[error["type"]]]}
    if "ge" in bounds and "le" in bounds:
        return f"from {bounds['ge']:g} to {bounds['le']:g}"
    words = {"gt": "above", "ge": "at least", "lt": "below", "le": "at most"}
    return " and ".join(f"{words[name]} {bounds[name]:g}" for name in ("gt", "ge", "lt", "le")
                        if name in bounds)
