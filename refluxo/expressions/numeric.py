"""JavaScript's ``Number(text)``, in time linear in the text, without backtracking.

Strings reaching arithmetic and comparisons come from callers (a run's input is
``nodes.<start>.output``), so converting one must never cost more than reading it. The text
is trimmed with one character class per end (:func:`trim`), checked against JavaScript's
``StringToNumber`` grammar with string methods that each make one pass in C (``find``,
``partition``, ``bytes.isdigit``), then handed to
:func:`float` (itself linear) or to :func:`int` in base 2, 8 or 16 (linear, and exempt from
Python's limit on decimal digits). Python's own looser syntax (underscores, ``inf``,
``nan``, non-ASCII digits, whitespace inside) is never accepted. The regular expression of
:func:`trim` is a single character class repeated: it cannot backtrack.

The grammar, after trimming JavaScript's white space and line terminators:

* empty: ``0``;
* ``[+-]?Infinity``;
* ``[+-]?`` then digits with an optional fraction (``1``, ``1.``, ``1.5``, ``.5``) and an
  optional exponent (``e``/``E``, an optional sign, digits): as many digits as wanted, so a
  100,000-digit string is ``Infinity`` and a long fraction rounds, as in JavaScript;
* ``0x``/``0X`` hexadecimal, ``0o``/``0O`` octal, ``0b``/``0B`` binary digits, unsigned;
* anything else: NaN.
"""

from __future__ import annotations

import math
import re
from typing import Final

from refluxo.expressions.budget import meter
from refluxo.expressions.limits import CHARACTERS_PER_OPERATION

JS_WHITESPACE: Final = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
"""ECMAScript's ``WhiteSpace`` and ``LineTerminator`` characters, trimmed by ``Number()``."""

_WHITESPACE_RUN: Final = re.compile(f"[{re.escape(JS_WHITESPACE)}]*")
_RADIX_BASES: Final = {"x": 16, "X": 16, "o": 8, "O": 8, "b": 2, "B": 2}


def trim(text: str) -> str:
    """``text`` without leading and trailing :data:`JS_WHITESPACE` (JavaScript's ``trim``).

    ``str.strip(JS_WHITESPACE)`` would search the 24 characters for each one it strips (20
    to 100 ns per character); a character class is one table lookup (about 5 ns), and the
    trailing run is found the same way on the reversed text.
    """
    start = _WHITESPACE_RUN.match(text).end()  # type: ignore[union-attr]  # `*` always matches
    end = len(text)
    if start == end:
        return ""
    if text[-1] in JS_WHITESPACE:
        end -= _WHITESPACE_RUN.match(text[::-1]).end()  # type: ignore[union-attr]
    return text[start:end] if start or end < len(text) else text


def _digits(text: str) -> bool:
    """Whether ``text`` is one or more ASCII digits (one C pass; ``text`` is ASCII)."""
    return text.encode("ascii").isdigit()


def _decimal(body: str) -> bool:
    """Whether unsigned ASCII ``body`` is ``digits [. [digits]] | . digits``, then an
    optional exponent."""
    mantissa, exponent = body, ""
    mark = body.find("e")
    if mark < 0:
        mark = body.find("E")
    if mark >= 0:
        mantissa, exponent = body[:mark], body[mark + 1 :]
        if exponent[:1] in ("+", "-"):
            exponent = exponent[1:]
        if not _digits(exponent):  # also refuses a second "e"/"E"
            return False
    whole, _, fraction = mantissa.partition(".")
    if not whole and not fraction:
        return False
    return (not whole or _digits(whole)) and (not fraction or _digits(fraction))


CONVERSION_COST: Final = 8
"""Operations charged per conversion, besides reading the text: about two dozen steps."""


def string_to_number(text: str) -> float:
    """JavaScript's ``Number(text)``: see the module documentation for the grammar."""
    if len(text) < CHARACTERS_PER_OPERATION and text.isascii() and text.isdigit():
        return float(text)  # the commonest case, "42": cheaper than its operator node
    current = meter()
    current.spend(CONVERSION_COST)
    current.read(len(text))
    text = trim(text)
    if not text:
        return 0.0
    if not text.isascii():  # O(1) in CPython: every accepted character is ASCII
        return math.nan
    body = text[1:] if text[0] in "+-" else text
    if body == "Infinity":
        return -math.inf if text[0] == "-" else math.inf
    if _decimal(body):
        return float(text)  # `text` is in the grammar, which float() accepts the same way
    if len(text) > 2 and text[0] == "0" and text[1] in _RADIX_BASES:
        digits = text[2:]
        if not digits.encode("ascii").isalnum():  # no sign, "_" or space for int() to take
            return math.nan
        try:
            number = int(digits, _RADIX_BASES[text[1]])
        except ValueError:  # a digit outside the base
            return math.nan
        try:
            return float(number)
        except OverflowError:
            return math.inf
    return math.nan
