"""Text as people type it, brought to one form before it is stored or compared."""

import unicodedata

# Overrides and isolates reorder what follows them on screen: a name could display as another one.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def fold(value: str) -> str:
    """One spelling of an email or username however it was typed: Unicode NFC, then case-folded."""
    return unicodedata.normalize("NFC", value).casefold()


def has_control_characters(value: str) -> bool:
    # Control characters (NUL among them: PostgreSQL refuses it) and lone surrogates never belong in text.
    return any(unicodedata.category(character) in ("Cc", "Cs") for character in value)


def problem_with_name(value: str) -> str | None:
    """Why a name (a person's, a workspace's) cannot be shown as typed; None when it can."""
    if has_control_characters(value):
        return "must not contain control characters"
    if any(character in BIDI_CONTROLS for character in value):
        return "must not contain bidirectional override or isolate characters"
    if all(character.isspace() or unicodedata.category(character) == "Cf" for character in value):
        return "must contain a visible character"
    return None
