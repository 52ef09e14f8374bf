"""Constrained input types shared by the request models."""

import unicodedata
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, EmailStr, StringConstraints

from src.core.text import fold, has_control_characters, problem_with_name


def _without_control_characters(value: str) -> str:
    if has_control_characters(value):
        raise ValueError("must not contain control characters")
    return value


def _nfc(value: Any) -> Any:
    # Before the length is checked: normalising can lengthen a string (U+FB2C is three characters in NFC).
    return unicodedata.normalize("NFC", value) if isinstance(value, str) else value


def _displayable_name(value: str) -> str:
    problem = problem_with_name(value)
    if problem:
        raise ValueError(problem)
    return value


# Folding can lengthen an address ("ß" is "ss"): the column's limit is checked on the folded form.
Email = Annotated[EmailStr, AfterValidator(fold), StringConstraints(max_length=320)]
# ASCII only, so that the pattern clients read is the whole rule: stored lowercased, matched however it is typed.
Username = Annotated[
    str,
    StringConstraints(min_length=3, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"),
    AfterValidator(str.lower),
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=128), AfterValidator(_without_control_characters)]
# Text a request looks something up by (a login, a filter): control characters, NUL among them, are refused.
SearchText = Annotated[str, AfterValidator(_without_control_characters)]
PersonName = Annotated[
    str,
    BeforeValidator(_nfc),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_displayable_name),
]
WorkspaceName = PersonName
