"""Reading a bot config file: ``${VAR}`` from the environment, then every problem at once.

    config = load_config("configs/default.yaml")
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml
from pydantic import ValidationError

from chatbot.config import BotConfig
from chatbot.config_problems import validation_problems
from chatbot.errors import ConfigError, ModelError
from index.text import shown


def default_config_path() -> Path:
    return Path(os.environ.get("CHATBOT_CONFIG", "configs/default.yaml"))


ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(raw: object, path: str = "") -> tuple[object, dict[str, str]]:
    """``raw`` with ``${VAR}`` and ``${VAR:-default}`` in its strings taken from the
    environment, and the key path of each unset variable that has no default -> its name."""
    missing: dict[str, str] = {}
    if isinstance(raw, dict):
        expanded = {}
        for key, value in raw.items():
            expanded[key], inner = expand_env(value, f"{path}.{key}" if path else str(key))
            missing.update(inner)
        return expanded, missing
    if isinstance(raw, list):
        items = []
        for i, value in enumerate(raw):
            item, inner = expand_env(value, f"{path}.{i}")
            items.append(item)
            missing.update(inner)
        return items, missing
    if not isinstance(raw, str):
        return raw, missing

    def value_of(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is None:
            missing[path] = name
        return default or ""

    return ENV_REFERENCE.sub(value_of, raw), missing


MERGE_TAG = "tag:yaml.org,2002:merge"


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML where a key given twice in one mapping is an error: PyYAML keeps the last one
    silently, so a second ``data:`` block would quietly undo the first."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.open_anchors: list[str | None] = []  # of the nodes being read, outermost first

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: list = []  # a list: a key may be unhashable (PyYAML itself then says so)
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:  # ``<<: *anchor``: merged, and may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (the second would silently win); "
                    "keep one", key_node.start_mark)
            seen.append(key)
        return super().construct_mapping(node, deep)

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        """Refuse an alias inside the node its own anchor names (``&a [*a]``): the value would
        contain itself, and reading it would never end."""
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) and event.anchor in self.open_anchors:
            raise yaml.composer.ComposerError(
                None, None, f"alias *{event.anchor} is inside the node its anchor "
                f"&{event.anchor} names, so it never ends; write the values out",
                event.start_mark)
        self.open_anchors.append(getattr(event, "anchor", None))
        try:
            return super().compose_node(parent, index)
        finally:
            self.open_anchors.pop()


def read_yaml(path: Path) -> object:
    """The YAML document in ``path``; ``ConfigError`` naming the file when it is missing, not
    UTF-8 text, not valid YAML, or gives a key twice."""
    if path.is_dir():
        raise ConfigError(f"{shown(path)} is a folder; give the config's YAML file")
    if path.exists() and not path.is_file():
        raise ConfigError(f"{shown(path)} is not a file (a device or a pipe); save the config as a "
                          "YAML file and give its path")
    if not path.is_file():
        from_env = path == Path(os.environ.get("CHATBOT_CONFIG", "")) and path != Path()
        defaulted = path == default_config_path() and not from_env
        fix = ("check the path it holds, or pass --config PATH" if from_env
               else "pass --config PATH or set $CHATBOT_CONFIG" if defaulted
               else "check the path")
        named = f"config file {shown(path)}" + (" (from $CHATBOT_CONFIG)" if from_env else "")
        if path.is_absolute():
            raise ConfigError(f"{named} not found; {fix}")
        raise ConfigError(f"{named} not found in the current folder ({shown(Path.cwd())}); "
                          + (f"run the command from the project's folder, or {fix}"
                             if defaulted else fix))
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{shown(path)}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
                          f"position {exc.start}); save the file as UTF-8") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{shown(path)}: not valid YAML: {_one_line(exc)}") from None
    except RecursionError:
        raise ConfigError(f"{shown(path)}: not valid YAML: nested too deeply; a config is a few "
                          "levels of sections") from None


def _one_line(exc: yaml.YAMLError) -> str:
    """PyYAML's message, which spans several lines and quotes the file, as one line."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    said = [getattr(exc, "context", None), getattr(exc, "problem", None)]
    told = where + ("; ".join(part for part in said if part) or " ".join(str(exc).split()))
    return told + ("; YAML is indented with spaces, not tabs" if "'\\t'" in told else "")


def config_problems(raw: object, base_dir: Path | None = None) -> list[str]:
    """Every problem in a parsed YAML document, each as ``key.path: what is expected``; with
    ``base_dir`` (the file's folder) also the files it names that are not there."""
    return checked_config(raw, base_dir)[1]


def checked_config(raw: object, base_dir: Path | None = None
                   ) -> tuple[BotConfig | None, list[str]]:
    """``config_problems`` and the config they were found in (``None`` when its keys are
    wrong), for checks that need it (``chatbot config check`` asks its remote backends)."""
    config, problems = _validate(raw)
    if config is None or base_dir is None:
        return (None if problems else config), problems
    config.base_dir = base_dir
    named = {prefix for problem in problems for prefix in _prefixes(problem.split(": ")[0])}
    files = [problem for problem in [data_dir_problem(config), *missing_files(config)]
             if problem and problem.split(": ")[0] not in named]  # each key named once
    return (None if problems else config), problems + files


def missing_files(config: BotConfig) -> list[str]:
    """Files and folders the config names that are not there, at their key paths: model,
    tokenizer and reranker paths (``./``, ``/``, ``~``; else they are hub ids), prompt
    templates, adapters and the login file (read as the server reads it). Found now, not when
    a server, a question or a training run first needs them."""
    from chatbot.models import resolve_model
    from chatbot.prompts import load_template

    problems = []
    models = {"models.chat": config.models.chat, "models.embedder": config.models.embedder,
              "retrieval.rerank.model": config.retrieval.rerank.model}
    templates = {"data.template": config.data.template}
    for name, spec in config.variants.items():
        if spec.backend is None:
            models[f"variants.{name}.model"] = spec.model
        models[f"variants.{name}.tokenizer"] = spec.tokenizer
        templates[f"variants.{name}.template"] = spec.template
        adapter = config.data_path / spec.adapter if spec.adapter else None
        if adapter is not None and not adapter.is_dir():
            problems.append(f"variants.{name}.adapter: adapter folder {adapter} does not exist "
                            "(relative paths are under the data directory); train it with "
                            "`chatbot train`, or fix the path")
    for key, value in models.items():
        if value and value.startswith((".", "/", "~")):
            try:
                resolve_model(value, config.base_dir)
            except ModelError as exc:
                problems.append(f"{key}: {exc}")
    for key, value in templates.items():
        if value:
            try:
                load_template(config.template_ref(value))
            except ConfigError as exc:
                problems.append(f"{key}: {exc}")
    if config.server.auth_file:
        try:
            read_auth_file(config.resolve(config.server.auth_file))
        except ConfigError as exc:
            problems.append(f"server.auth_file: {exc}")
    return problems


def read_auth_file(path: Path) -> list[tuple[str, str]]:
    """The ``user:password`` pairs of a login file, read the same way by ``chatbot serve`` and
    by ``chatbot config check``, so a file the check passes is one the server accepts."""
    if not path.is_file():
        raise ConfigError(f"{shown(path)} not found; create it with user:password lines, or remove "
                          "server.auth_file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{shown(path)} is not UTF-8 text; save it as UTF-8 with user:password "
                          "lines") from None
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise ConfigError(f"{shown(path)}:{number}: expected user:password")
        pairs.append((user, password))
    if not pairs:
        raise ConfigError(f"{path}: no user:password lines; add one or remove server.auth_file")
    return pairs


def _validate(raw: object) -> tuple[BotConfig | None, list[str]]:
    """Every problem in a config, and the config as far as it is valid (``None`` when it is
    no mapping): where there are problems, a failing key or section is at its defaults."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return None, ["(top level): expected a mapping of sections, got " + type(raw).__name__]
    raw, missing = expand_env(raw)
    problems = [f"{path}: environment variable ${name} is not set (set it, or write "
                f"${{{name}:-default}} in the config)" for path, name in missing.items()]
    backends = raw.get("backends")
    context = {"backends": list(backends) if isinstance(backends, dict) else []}
    try:
        config = BotConfig.model_validate(raw, context=context)
    except ValidationError as exc:
        # an unset variable's key (and the section holding it) is already reported
        unset = {prefix for path in missing for prefix in _prefixes(path)}
        config, described = validation_problems(raw, exc, context)
        return config, problems + [p for p in described if p.split(": ", 1)[0] not in unset]
    return config, problems


def _prefixes(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def load_config(path: str | Path | None = None) -> BotConfig:
    """Read and validate a bot YAML; raises :class:`ConfigError` listing every problem."""
    path = Path(path) if path else default_config_path()
    config, problems = _validate(read_yaml(path))
    if not problems:
        config.base_dir = path.resolve().parent
        problems = [problem for problem in [data_dir_problem(config)] if problem]
    if problems:
        raise ConfigError(f"{shown(path)}: {len(problems)} problem(s):\n  "
                          + "\n  ".join(problems))
    return config


def data_dir_problem(config: BotConfig) -> str | None:
    """The data directory where a file stands in its place, or in that of a folder above it:
    every command that reads or writes state would fail there with a bare "Not a directory"."""
    path = config.data_path
    key = "$CHATBOT_DATA_DIR" if os.environ.get("CHATBOT_DATA_DIR") else "data_dir"
    blocker = next(folder for folder in [path, *path.parents] if folder.exists())
    if blocker.is_dir():
        return None
    where = f"{shown(blocker)} is" if blocker == path else \
        f"{shown(path)} can't be made: {shown(blocker)} is"
    return f"{key}: {where} a file, not a folder; set {key} to a folder"
