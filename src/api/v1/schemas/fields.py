"""Constrained input types shared by the request models."""

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, EmailStr, StringConstraints


def _without_control_characters(value: str) -> str:
    # Control characters (NUL among them: PostgreSQL refuses it) and lone surrogates never belong in text.
    if any(unicodedata.category(character) in ("Cc", "Cs") for character in value):
        raise ValueError("must not contain control characters")
    return value


Email = Annotated[EmailStr, AfterValidator(str.lower)]
Username = Annotated[str, StringConstraints(min_length=3, max_length=32, pattern=r"^[a-z0-9][a-z0-9_.-]*$")]
Password = Annotated[str, StringConstraints(min_length=8, max_length=128), AfterValidator(_without_control_characters)]
PersonName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_without_control_characters),
]
WorkspaceName = PersonName
