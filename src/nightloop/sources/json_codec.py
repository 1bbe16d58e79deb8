"""JSON on the span hot path: orjson where it reads and writes exactly what the standard library would, else the standard library.

orjson (a Prefect dependency) parses and writes span JSON several times faster. It differs from :mod:`json` in a
few corners, each sent to :mod:`json` here so that results (and error messages) stay the standard library's:
integers past 64 bits (orjson reads them as floats), ``NaN``/``Infinity`` (orjson writes them as ``null``), lone
surrogates, ``1e400``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

__all__ = ["dumps", "loads"]

#: Digits become "0", so 19 digits in a row (maybe a number orjson would read as a float: it reads integers in
#: [-2**63, 2**64) exactly, 2**64 has 20 digits and -2**63 - 1 has 19; maybe part of a string) are found by one
#: ``bytes.find``: a regex scan costs as much as the parse it guards.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_NINETEEN_DIGITS = b"0" * 19
_DIGIT_RUN = re.compile(b"0+")


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
    data = (text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)).translate(_DIGITS_TO_ZERO)
    at = data.find(_NINETEEN_DIGITS)
    while at >= 0:
        end = _DIGIT_RUN.match(data, at).end()
        before = _skip_space_back(data, at - 1)
        negative = before >= 0 and data[before] == ord("-")
        if negative:
            before = _skip_space_back(data, before - 1)
        if (before < 0 or data[before] in b":[,") and (end - at >= 20 or negative):
            return True
        at = data.find(_NINETEEN_DIGITS, end)  # past this run of digits
    return False


def _skip_space_back(data: bytes, at: int) -> int:
    while at >= 0 and data[at] in b" \t\r\n":
        at -= 1
    return at


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
