"""Constrained input types shared by the request models."""

import unicodedata
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, EmailStr, StringConstraints

from src.core.text import fold, has_control_characters, problem_with_name


def _without_control_characters(value: str) -> str:
    if has_control_characters(value):
        raise ValueError("must not contain control characters")
    return value


def _displayable_name(value: str) -> str:
    value = unicodedata.normalize("NFC", value)
    problem = problem_with_name(value)
    if problem:
        raise ValueError(problem)
    return value


def _folded(value: Any) -> Any:
    return fold(value) if isinstance(value, str) else value


Email = Annotated[EmailStr, AfterValidator(fold)]
Username = Annotated[
    str,
    BeforeValidator(_folded),
    StringConstraints(min_length=3, max_length=32, pattern=r"^[a-z0-9][a-z0-9_.-]*$"),
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=128), AfterValidator(_without_control_characters)]
PersonName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_displayable_name),
]
WorkspaceName = PersonName
