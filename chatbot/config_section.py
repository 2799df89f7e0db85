"""The base of every config section: an unknown or misspelt key is an error, defaults are
validated too, and a section left empty takes its defaults."""

from typing import Annotated, get_origin

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
            return {key: item for key, item in value.items()
                    if item is not None or not holds_mapping(cls, key)}
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
