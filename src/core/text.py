"""Text as people type it, brought to one form before it is stored or compared.

The rules are regular expressions, published as patterns in the OpenAPI document: what a client reads there is what
the service enforces.
"""

import re
import unicodedata

# Control characters (NUL among them: PostgreSQL refuses it) never belong in text.
_CONTROL = r"\x00-\x1f\x7f-\x9f"
# Overrides and isolates reorder what follows them on screen: a name could display as another one.
_BIDI = r"\u202a-\u202e\u2066-\u2069"
# Characters that show nothing: white space, and the zero-width and other format characters people type or paste.
_BLANK = r"\t-\r\x1c-\x20\x85\xa0\xad\u061c\u1680\u180e\u2000-\u200f\u2028\u2029\u202f\u205f-\u2064\u3000\ufeff"

TEXT_PATTERN = rf"^[^{_CONTROL}]*$"
NAME_PATTERN = rf"^[^{_CONTROL}{_BIDI}]*[^{_CONTROL}{_BIDI}{_BLANK}][^{_CONTROL}{_BIDI}]*$"


def fold(value: str) -> str:
    """One spelling of an email or username however it was typed: Unicode NFC, then case-folded."""
    return unicodedata.normalize("NFC", value).casefold()


def has_control_characters(value: str) -> bool:
    # Lone surrogates too, which JSON's \u escapes can carry: no UTF-8 text holds them, so no pattern names them.
    return re.search(f"[{_CONTROL}\ud800-\udfff]", value) is not None


def problem_with_name(value: str) -> str | None:
    """Why a name (a person's, a workspace's) cannot be shown as typed, None when it can: NAME_PATTERN, explained."""
    if has_control_characters(value):
        return "must not contain control characters"
    if re.search(f"[{_BIDI}]", value):
        return "must not contain bidirectional override or isolate characters"
    if not re.search(f"[^{_BLANK}]", value):
        return "must contain a visible character"
    return None
