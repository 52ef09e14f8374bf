"""Constrained input types shared by the request models."""

import unicodedata
from typing import Annotated, Any, Literal

import email_validator
from pydantic import AfterValidator, BeforeValidator, EmailStr, Field, GetJsonSchemaHandler, StringConstraints
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from src.core.text import NAME_PATTERN, TEXT_PATTERN, fold, has_control_characters, problem_with_name


def _without_control_characters(value: str) -> str:
    if has_control_characters(value):
        raise ValueError("must not contain control characters")
    return value


NAME_MAX_LENGTH = 100


def _nfc(value: Any) -> Any:
    # The length is checked as sent, which the document states, and again once normalised: normalising can
    # lengthen a string (U+FB2C is three characters in NFC) or shorten it ("e" and a combining accent are one).
    if not isinstance(value, str):
        return value
    if len(value) > NAME_MAX_LENGTH:
        raise ValueError(f"String should have at most {NAME_MAX_LENGTH} characters")
    return unicodedata.normalize("NFC", value)


def _displayable_name(value: str) -> str:
    problem = problem_with_name(value)
    if problem:
        raise ValueError(problem)
    return value


def _either_case(word: str) -> str:
    return "".join(f"[{letter}{letter.upper()}]" for letter in word)


# email-validator refuses the special-use domains (.test, .local, ...): the pattern publishes that rule.
_SPECIAL_USE = "|".join(_either_case(name) for name in email_validator.SPECIAL_USE_DOMAIN_NAMES)
# Folding can lengthen an address ("ß" is "ss"): the column's limit is checked on the folded form.
Email = Annotated[
    EmailStr,
    AfterValidator(fold),
    StringConstraints(max_length=320),
    Field(json_schema_extra={"pattern": rf"^(?!.*[@.](?:{_SPECIAL_USE})$)"}),
]
# ASCII only, so that the pattern clients read is the whole rule: stored lowercased, matched however it is typed.
Username = Annotated[
    str,
    StringConstraints(min_length=3, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"),
    AfterValidator(str.lower),
]
# The patterns are published only: the validators enforce them, with messages that say what is wrong.
_TEXT = Field(json_schema_extra={"pattern": TEXT_PATTERN})
Password = Annotated[
    str, StringConstraints(min_length=8, max_length=128), AfterValidator(_without_control_characters), _TEXT
]
# Text a request looks something up by (a login, a filter): control characters, NUL among them, are refused.
# The token of a link sent by mail (src/services/account_links.py): URL-safe base64.
LinkToken = Annotated[str, Field(min_length=1, max_length=128, pattern="^[A-Za-z0-9_-]+$")]
SearchText = Annotated[str, AfterValidator(_without_control_characters), _TEXT]
PersonName = Annotated[
    str,
    BeforeValidator(_nfc),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX_LENGTH),
    AfterValidator(_displayable_name),
    Field(json_schema_extra={"pattern": NAME_PATTERN}),
]
WorkspaceName = PersonName


class DocumentedAs:
    """Documents a union as ``oneOf`` (alternatives that exclude each other) or ``anyOf``, whichever pydantic
    writes: ``Annotated[A | B, DocumentedAs("oneOf")]``."""

    def __init__(self, keyword: Literal["oneOf", "anyOf"]) -> None:
        self.keyword = keyword

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        document = handler(schema)
        document[self.keyword] = document.pop("oneOf", None) or document.pop("anyOf")
        return document
