"""The base of every config section: an unknown or misspelt key is an error, defaults are
validated too."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)
