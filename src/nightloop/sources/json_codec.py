"""JSON on the span hot path: orjson where it reads and writes exactly what the standard library would, else the standard library.

orjson (a Prefect dependency) parses and writes span JSON several times faster. It differs from :mod:`json` in a
few corners, each sent to :mod:`json` here so that results (and error messages) stay the standard library's:
integers past 64 bits (orjson reads them as floats), ``NaN``/``Infinity`` (orjson writes them as ``null``), lone
surrogates, ``1e400``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

__all__ = ["dumps", "loads"]

#: Digits become "0" and JSON's whitespace goes, so a number token of 20 or more digits (maybe one orjson would read
#: as a float: it reads integers in [-2**63, 2**64) exactly, and 2**64 has 20 digits), or a negative one of 19, is a run
#: of zeros after ``:``, ``[`` or ``,`` (or the start), or after ``-``: a few ``bytes`` searches find it. One in a string
#: may match too; that text is only read the slower way. (A Python loop over each run of digits cost as much as the
#: parse it guards: nanosecond timestamps have 19.)
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_JSON_SPACE = b" \t\r\n"
_NINETEEN_DIGITS = b"0" * 19
_LONG_AFTER = (b":" + b"0" * 20, b"[" + b"0" * 20, b"," + b"0" * 20, b"-" + _NINETEEN_DIGITS)


#: Types orjson would write its own way; the standard library writes them with ``default=str``.
_AS_STDLIB = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def loads(text: str | bytes) -> Any:
    """``json.loads(text)``, faster."""
    if not _has_long_integer(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # what orjson refuses, json may read (NaN, lone surrogates) or refuses in its own words
    return json.loads(text)


def _has_long_integer(text: str | bytes) -> bool:
    """Whether ``text`` may hold an integer orjson reads as a float: a number token (a JSON value starts the text or
    follows ``:``, ``[``, ``,``) of 20 or more digits, or a negative one of 19."""
    data = (text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)).translate(_DIGITS_TO_ZERO, _JSON_SPACE)
    if _NINETEEN_DIGITS not in data:
        return False
    return data.startswith(b"0" * 20) or any(pattern in data for pattern in _LONG_AFTER)


def dumps(value: Any) -> str:
    """Compact JSON of ``value`` (non-ASCII kept, unknown types as ``str``), faster than ``json.dumps``."""
    if _all_finite(value):  # orjson writes NaN and infinities as null
        try:
            return orjson.dumps(value, default=str, option=_AS_STDLIB).decode()
        except (TypeError, ValueError):  # orjson.JSONEncodeError: big integers, non-str keys, lone surrogates
            pass
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _all_finite(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return False
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return True
