"""The base of every config section: an unknown or misspelt key is an error, defaults are
validated too, a section left empty takes its defaults, and true or false is no number."""

from typing import Annotated, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_means_defaults(cls, value: object) -> object:
        """``retrieval:`` with nothing under it (its keys commented out) is YAML's null: the
        section's defaults, as an empty file is the whole config's. A key mis-indented under
        it is no loss: it lands a level up, where it is an unknown key."""
        if value is None:
            return {}
        if isinstance(value, dict):
            return {key: _no_bool_for_number(cls, key, item) for key, item in value.items()
                    if item is not None or not holds_mapping(cls, key)}
        return value


class BoolGiven:
    """true or false written where a number is wanted. pydantic reads true as 1
    (``server.port: true`` was port 1), so the value is swapped for this, which no number
    accepts: the key's usual "expected a whole number, got true"."""

    def __init__(self, value: bool) -> None:
        self.value = value

    def __str__(self) -> str:
        return str(self.value).lower()


def _no_bool_for_number(section: type[BaseModel], key: object, value: object) -> object:
    field = section.model_fields.get(key) if isinstance(key, str) else None
    kinds = _leaf_types(field.annotation) if field else set()
    if not kinds & {int, float} or bool in kinds:
        return value
    if isinstance(value, bool) and get_origin(field.annotation) in (dict, list, tuple):
        return value  # a mapping or list wanted: pydantic's "got true or false" says so
    return _swap_bools(value)


def _leaf_types(annotation: object) -> set:
    """The plain types anywhere in ``annotation`` (``dict[str, float]`` -> {str, float})."""
    args = get_args(annotation)
    if not args:
        return {annotation} if isinstance(annotation, type) else set()
    return set().union(*(_leaf_types(arg) for arg in args))


def _swap_bools(value: object) -> object:
    if isinstance(value, bool):
        return BoolGiven(value)
    if isinstance(value, dict):
        return {key: _swap_bools(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_swap_bools(item) for item in value]
    return value


def holds_mapping(section: type[BaseModel], key: object) -> bool:
    """Whether ``key`` of ``section`` is a section or a mapping of them (``variants``), whose
    null means its defaults."""
    field = section.model_fields.get(key) if isinstance(key, str) else None
    kind = field.annotation if field else None
    return get_origin(kind) is dict or (isinstance(kind, type) and issubclass(kind, BaseModel))


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("empty; give the text the user sees instead of the answer")
    return value


ShownText = Annotated[str, AfterValidator(_not_blank)]
"""A text shown in place of an answer (a refusal, a withheld or filtered answer): shown as
nothing, it would tell the user nothing."""
