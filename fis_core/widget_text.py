"""Reading the text widgets' lists with bounded work: the parts one at a time, numbers of bounded length, and
error messages that quote the user's value shortened (a 10,000-character value must not make a 10,000-character
message)."""
from __future__ import annotations

import re
from typing import Iterator

#: Characters of the user's value an error message repeats.
QUOTE_CHARS = 40
#: Characters a number may have: enough for any real value, few enough to convert at once.
NUMBER_CHARS = 15
_NUMBER = re.compile(r"[+-]?[0-9]+(_[0-9]+)*")


def quoted(value: str) -> str:
    """``value`` in quotes for an error message, its start only if it is long."""
    if len(value) <= QUOTE_CHARS:
        return f"'{value}'"
    return f"'{value[:QUOTE_CHARS]}...' ({len(value)} characters)"


def list_parts(spec: str) -> Iterator[str]:
    """The comma-separated parts of ``spec``, spaces removed and empty parts skipped, one at a time (no list of them)."""
    return (match.group() for match in re.finditer(r"[^,]+", spec.replace(" ", "")))


def parse_int(text: str, widget: str, form: str) -> int:
    """``text`` as an integer; a ValueError names ``widget`` and the valid ``form``."""
    if not _NUMBER.fullmatch(text):
        raise ValueError(f"{widget}: {quoted(text)} is not a number; expected {form}")
    if len(text) > NUMBER_CHARS:
        raise ValueError(f"{widget}: {quoted(text)} is too large a number; expected {form}")
    return int(text)
