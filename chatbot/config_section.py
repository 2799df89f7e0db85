"""The base of every config section: an unknown or misspelt key is an error, defaults are
validated too."""

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("empty; give the text the user sees instead of the answer")
    return value


ShownText = Annotated[str, AfterValidator(_not_blank)]
"""A text shown in place of an answer (a refusal, a withheld or filtered answer): shown as
nothing, it would tell the user nothing."""
