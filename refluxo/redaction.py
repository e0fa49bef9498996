"""Redaction: secrets never reach a stored byte, in any encoding.

A secret leaves an executor in many shapes: as a value or a dict key, inside bytes, a
pydantic model or a dataclass, in an exception's text (quoted by ``repr``, JSON-escaped,
``\\u``-escaped, HTML-escaped), base64-encoded and wrapped at 76 columns, upper-cased.
Masking values one by one misses most of them. So masking works on text: a value is first
serialized to JSON exactly as a store will keep it, every occurrence of every encoding of
every secret is found in that text, overlapping occurrences are merged, and each one is
replaced inside the string (or number) it lies in, so that the value reads back with the
same structure. The durable runtime applies the same :class:`Redactor` once more, at the
last moment before the store, to the user content of every commit: outputs, error texts,
failure reasons and metadata values, never the engine's own structure (node ids, statuses,
the wire format's field names), which a secret equal to one of them cannot corrupt.

Case: a secret of at least :data:`MIN_CASE_LENGTH` characters is also found in any case
(``SeCrEt`` as ``secret``, ``SECRET``, ``Secret``...); a shorter one only as written, so
that a global such as ``"ERROR"`` or ``"notify"`` does not mask every ``error`` of a text.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import dataclasses
import enum
import functools
import html
import itertools
import json
import math
import re
import types
import unicodedata
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence, Set
from typing import Any, NamedTuple

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from refluxo.plugins import ErrorPluginContext, Plugin, PluginContext

MASK = "[REDACTED]"

Span = tuple[int, int]
"""Where something is in a text: ``text[start:end]``."""

MIN_CASE_LENGTH = 8
"""A secret this long is masked in any case; a shorter one only exactly as written."""

_MAX_DEPTH = 100

_MIN_LINE = 16
"""A line of a multi-line secret this long is a secret of its own (a PEM key's body)."""

_NOT_SECRETS = frozenset({"true", "false", "null"})
"""Values no store can hide: every JSON document is made of them."""

_COLLECT_DEPTH = 12
"""How deep secrets are looked for in globals (a mapping, an object's fields: one level)."""

_COLLECT_ITEMS = 10_000
"""How many values of the globals are looked at, at most, for secrets."""

_COLLECT_PER_CONTAINER = 2_500
"""How many values of one mapping, sequence or object are looked at, at most."""

_PERCENT = re.compile(r"%[0-9A-F]{2}")

_RAW_BREAKS = re.compile(r"[\r\n]*")
_ESCAPED_BREAKS = re.compile(r"(?:\\++(?:r\\++)?n)*+")
"""More breaks right after one, raw or escaped (matched at one position: linear)."""

_STRUCTURE = frozenset(' \t\r\n,:[]{}"')
"""What ends a JSON number or literal."""

_SKIPPED_OBJECTS = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    functools.partial,
    enum.Enum,
)
"""Objects with a ``__dict__`` that is code, not configuration."""


# -- the forms of a secret -----------------------------------------------------------------


def _url_forms(secret: str) -> set[str]:
    raw = _raw_of(secret)  # a lone surrogate has no UTF-8: its bytes as Python keeps them
    forms = {urllib.parse.quote(raw, safe=""), urllib.parse.quote(raw)}
    forms.add(urllib.parse.quote_plus(raw))
    return forms | {_PERCENT.sub(lambda m: m.group(0).lower(), form) for form in forms}


def _wrappable(raw: bytes) -> set[str]:
    """The forms of ``raw`` that encoders wrap into lines and that are searched as they
    are: hex. (Base64 and base32, wrapped as well, are searched by their groups: see
    :func:`_partial_groups`.)"""
    return {raw.hex(), raw.hex().upper()}


_BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_ALPHABETS: tuple[tuple[tuple[str, ...], int], ...] = (
    ((*_BASE64, "+-", "/_"), 6),
    (tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"), 5),
)
"""Base64 (standard and URL-safe at once: their last two characters) and base32: the
characters of each value, and how many bits a character holds."""


class _Partial(NamedTuple):
    """A secret's bytes encoded from one offset within the encoder's groups, inside a
    longer encoded text: ``core``, the characters made of the secret's bits alone, and
    ``pattern``, which also matches the character at either end that mixes the secret's
    first or last bits with its neighbours' (``lead`` characters before ``core``).
    ``alone``: whether ``core`` is long enough to be masked where ``pattern`` does not match
    (at the edge of a text); a short one is too likely in any long base64."""

    core: str
    pattern: re.Pattern[str]
    lead: int
    alone: bool


_SLASHES = ("/", "\\/", "\\\\/")
""""/" as written, as JSON may escape it ("\\/"), and that escape escaped again."""

_ALONE = 8
"""Characters of a core masked without its end characters: 48 bits of the secret."""


def _partial_groups(raw: bytes, min_core: int) -> list[_Partial]:
    """The :class:`_Partial` of ``raw`` for each alphabet and each offset of its first
    byte within a group (3 bytes for base64, 5 for base32). The end characters of a secret
    encoded inside a longer text hold some of its bits too (two bytes at each end in
    base64, four in base32), and a short secret may hold no whole group at all: a
    character holding only some of the secret's bits is matched by every character those
    bits allow. A core shorter than ``min_core`` characters is left out. Each is spelled
    in standard and URL-safe base64 (their last two characters differ), and with "/" as
    JSON may escape it."""
    partials = []
    total = len(raw) * 8
    value = int.from_bytes(raw, "big")
    for alphabet, bits in _ALPHABETS:
        group = math.lcm(8, bits) // 8
        for offset in range(group):
            first_bit, end_bit = offset * 8, offset * 8 + total
            places: list[list[str]] = []  # per character: the options it may take
            core_at: list[int] = []
            for index in range(first_bit // bits, (end_bit - 1) // bits + 1):
                high = index * bits + bits
                known_high = min(high, end_bit)
                count = known_high - max(index * bits, first_bit)
                known = (value >> (end_bit - known_high)) & ((1 << count) - 1)
                shift = high - known_high
                if count == bits:
                    core_at.append(len(places))
                places.append(
                    [
                        alphabet[v]
                        for v in range(1 << bits)
                        if (v >> shift) & ((1 << count) - 1) == known
                    ]
                )
            if len(core_at) < min_core:
                continue
            lead, end = core_at[0], core_at[-1] + 1
            for dialect in (0, -1):  # standard, URL-safe ("+/" or "-_" for 62 and 63)
                chosen = [[option[dialect] for option in place] for place in places]
                core_chars = [chars[0] for chars in chosen[lead:end]]
                slashes = _SLASHES if "/" in {c for chars in chosen for c in chars} else ("/",)
                for slash in slashes:
                    core = "".join(slash if c == "/" else c for c in core_chars)
                    pattern = (
                        "".join(_one_of(chars, slash) for chars in chosen[:lead])
                        + re.escape(core)
                        + "".join(_one_of(chars, slash) for chars in chosen[end:])
                    )
                    partial = _Partial(core, re.compile(pattern), lead, len(core_chars) >= _ALONE)
                    if partial not in partials:
                        partials.append(partial)
    return partials


def _one_of(chars: list[str], slash: str) -> str:
    """A pattern matching one of ``chars``, "/" spelled ``slash``."""
    plain = "[" + "".join(re.escape(c) for c in chars if c != "/") + "]"
    return f"(?:{plain}|{re.escape(slash)})" if "/" in chars else plain


def _binary_forms(raw: bytes) -> set[str]:
    """The forms bytes take in text: the above, and the escapes of their ``repr``
    (``str(b"p\\xc3\\xa4ss")`` reads ``b'p\\\\xc3\\\\xa4ss'``)."""
    return _wrappable(raw) | {repr(raw)[2:-1]}


def _escaped_throughout(text: str) -> set[str]:
    """``text`` with every character escaped, not only those an encoder must escape: as
    ``\\u`` escapes (either hex case; UTF-16 pairs beyond the BMP) and as HTML numeric
    references (decimal, and hex in either case)."""
    units = text.encode("utf-16-be", "surrogatepass")
    codes = [int.from_bytes(units[i : i + 2], "big") for i in range(0, len(units), 2)]
    return {
        "".join(f"\\u{code:04x}" for code in codes),
        "".join(f"\\u{code:04X}" for code in codes),
        "".join(f"&#{ord(char)};" for char in text),
        "".join(f"&#x{ord(char):x};" for char in text),
        "".join(f"&#x{ord(char):X};" for char in text),
    }


def _fold(text: str) -> str:
    """``text`` in lower case, one character for one, whatever surrounds it: "İ" (the only
    character whose lower case is two) folds to "i", so that positions in the folded text
    are the text's; a final sigma (U+03C2, what "Σ" lowers to at the end of a word) to the
    usual small sigma (U+03C3), so that a secret ending in "Σ" is found inside a longer
    word too."""
    return text.replace("\u0130", "i").lower().replace("\u03c2", "\u03c3")


def _case_variants(secret: str) -> set[str]:
    return {
        secret.upper(),
        secret.lower(),
        secret.capitalize(),
        secret.title(),
        secret.swapcase(),
    }


def _text_of(secret: str | bytes) -> str | None:
    """The text of a secret: itself, or its bytes as UTF-8 (None if they are not)."""
    if isinstance(secret, str):
        return secret
    try:
        return secret.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _raw_of(secret: str | bytes) -> bytes:
    return secret if isinstance(secret, bytes) else secret.encode("utf-8", "surrogatepass")


def _lines(text: str) -> list[str]:
    """The lines of a multi-line secret long enough to be secrets of their own."""
    return [
        line.strip()
        for line in text.splitlines()
        if len(line.strip()) >= _MIN_LINE and line != text
    ]


def _encodings(
    secret: str | bytes, min_case_length: int = MIN_CASE_LENGTH, *, normalize: bool = True
) -> set[str]:
    """The forms ``secret`` takes in text: plain and reversed; escaped as JSON, by ``repr``,
    as Unicode escapes and as HTML (quotes escaped or not); URL-encoded (either hex case);
    its UTF-8 bytes as hex, base64 and base32 at any alignment and as the escapes of a bytes
    ``repr``; upper-, lower-, capitalized, title- and swapped-case if it is at least
    ``min_case_length`` long; a multi-line secret's lines too (a PEM key's body); its
    Unicode composed and decomposed forms (NFC, NFD) with all of theirs; each form
    also as it reads once embedded in a JSON string. Bytes that are not UTF-8 take only
    the forms of bytes."""
    text = _text_of(secret)
    raw = _raw_of(secret)
    forms = _binary_forms(raw)
    if text is not None:
        forms |= {
            text,
            text[::-1],
            json.dumps(text, ensure_ascii=False)[1:-1],
            json.dumps(text)[1:-1],
            repr(text)[1:-1],
            text.encode("unicode_escape").decode("ascii"),
            html.escape(text),
            html.escape(text, quote=False),
            *_url_forms(text),
            *_escaped_throughout(text),
        }
        if len(text) >= min_case_length:
            forms |= _case_variants(text)
        for line in _lines(text):
            forms |= _encodings(line, min_case_length)
        if normalize:  # composed and decomposed (café as é, or as e and a combining accent)
            for form in {unicodedata.normalize(kind, text) for kind in ("NFC", "NFD")} - {text}:
                forms |= _encodings(form, min_case_length, normalize=False)
    nested = set()
    for form in forms:
        nested.add(json.dumps(form, ensure_ascii=False)[1:-1])
        nested.add(json.dumps(form)[1:-1])
    # JSON may escape "/" as "\/" (PHP's json_encode and others do): a URL, a base64 key.
    nested |= {form.replace("/", "\\/") for form in forms | nested if "/" in form}
    return forms | nested


def _wrapped_forms(secret: str | bytes) -> set[str]:
    """The forms of ``secret`` that may be found broken into lines."""
    text = _text_of(secret)
    forms = _wrappable(_raw_of(secret))
    for line in _lines(text) if text is not None else ():
        forms |= _wrappable(_raw_of(line))
    return forms


# -- finding them --------------------------------------------------------------------------


def _period(needle: str) -> int:
    """The smallest period of ``needle``: how far the next occurrence can start from one
    (an occurrence can overlap the previous one only by a border of the needle)."""
    border = [0] * len(needle)
    k = 0
    for i in range(1, len(needle)):
        while k and needle[i] != needle[k]:
            k = border[k - 1]
        if needle[i] == needle[k]:
            k += 1
        border[i] = k
    return len(needle) - border[-1] if needle else 1


class _Needle(NamedTuple):
    text: str
    period: int
    repeats: re.Pattern[str] | None
    """For a needle that overlaps itself (``aaaa``, ``abab``): what continues a run of its
    occurrences, each one period further (its last period, repeated)."""


def _needles(forms: Iterable[str]) -> tuple[_Needle, ...]:
    needles = []
    for form in sorted(forms, key=len, reverse=True):
        period = _period(form)
        repeats = None
        if period < len(form):
            repeats = re.compile(f"(?:{re.escape(form[len(form) - period :])})*")
        needles.append(_Needle(form, period, repeats))
    return tuple(needles)


def _find_all(haystack: str, needles: Iterable[_Needle], spans: list[Span]) -> None:
    """Every occurrence of every needle, overlapping ones included: each needle is one
    linear search; a run of overlapping occurrences of one needle is one span, measured
    at once."""
    for needle, period, repeats in needles:
        size = len(needle)
        i = haystack.find(needle)
        while i >= 0:
            last = i  # where the last occurrence of the run starts
            if repeats is not None:
                last += (_run_end(repeats, haystack, i + size) - i - size) // period * period
            spans.append((i, last + size))
            i = haystack.find(needle, last + 1)


def _find_partials(haystack: str, partials: Iterable[_Partial], spans: list[Span]) -> None:
    """Every occurrence of each partial's core, with its end characters where they match
    (the core alone where they do not: it is the secret's bits either way)."""
    for core, pattern, lead, alone in partials:
        i = haystack.find(core)
        while i >= 0:
            # The one character before the core that holds some of the secret's bits (lead
            # is 0 or 1) may be "/" escaped: one to three characters of the text.
            for start in (i,) if not lead else (i - 1, i - 2, i - 3):
                found = pattern.match(haystack, start) if start >= 0 else None
                if found:
                    spans.append((start, found.end()))
                    break
            else:
                if alone:
                    spans.append((i, i + len(core)))
            i = haystack.find(core, i + 1)


def _within(span: Span, masks: list[Span]) -> bool:
    """Whether ``span`` lies inside one of ``masks`` (sorted, disjoint)."""
    index = bisect.bisect_right(masks, (span[0], float("inf"))) - 1
    return index >= 0 and masks[index][0] <= span[0] and span[1] <= masks[index][1]


def _merge(spans: list[Span]) -> list[Span]:
    """Overlapping and adjacent spans as one: two secrets that overlap are masked whole."""
    spans.sort()
    merged: list[Span] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _backslashes_before(text: str, index: int) -> int:
    """Where the run of backslashes that ends at ``index`` starts."""
    while index and text[index - 1] == "\\":
        index -= 1
    return index


def _run_end(pattern: re.Pattern[str], text: str, index: int) -> int:
    """Where the run that ``pattern`` (which matches the empty text) matches at ``index``
    ends."""
    found = pattern.match(text, index)
    return found.end() if found else index


def _breaks(text: str) -> list[Span]:
    """The line breaks of ``text``: newlines (after a carriage return or not), raw or
    escaped once or more (a backslash and ``n``, as JSON or ``repr`` text reads); a run of
    breaks is one. Each kind is found by a linear search."""
    found: list[Span] = []
    i = text.find("\n")
    while i >= 0:
        end = _run_end(_RAW_BREAKS, text, i)
        found.append((i - 1 if i and text[i - 1] == "\r" else i, end))
        i = text.find("\n", end)
    i = text.find("\\n")
    while i >= 0:
        start = _backslashes_before(text, i)
        if start >= 2 and text[start - 1] == "r" and text[start - 2] == "\\":
            start = _backslashes_before(text, start - 1)
        end = _run_end(_ESCAPED_BREAKS, text, i + 2)
        found.append((start, end))
        i = text.find("\\n", end)
    return _merge(found)


def _unwrap(text: str) -> tuple[str, list[int], list[int]]:
    """``text`` without its line breaks, and where they were: for each break, its position
    in the unwrapped text and how many characters were removed up to and including it."""
    positions: list[int] = []
    removed: list[int] = []
    pieces: list[str] = []
    last = 0
    total = 0
    for start, end in _breaks(text):
        pieces.append(text[last:start])
        positions.append(start - total)
        total += end - start
        removed.append(total)
        last = end
    pieces.append(text[last:])
    return "".join(pieces), positions, removed


def _rewrap(spans: list[Span], positions: list[int], removed: list[int]) -> list[Span]:
    """Spans of the unwrapped text as spans of the text (the breaks inside them included)."""

    def original(index: int) -> int:
        k = bisect.bisect_right(positions, index)
        return index + (removed[k - 1] if k else 0)

    return [(original(start), original(end - 1) + 1) for start, end in spans]


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def jsonable(value: Any) -> Any:
    """``value`` as a JSON value, as a store would keep it: models and dataclasses dumped,
    bytes as UTF-8 text (base64 if they are not UTF-8), anything else by its ``repr``."""
    try:
        return to_jsonable_python(value, fallback=repr, serialize_unknown=True)
    except UnicodeDecodeError:
        return to_jsonable_python(value, fallback=repr, serialize_unknown=True, bytes_mode="base64")


class Redactor:
    """Replaces every encoding of the given secrets with ``mask``, in text or in values.

    Masking costs one linear search of the text per distinct form of a secret (a dozen or
    two per secret), plus one per occurrence found. A long secret's text forms are searched
    in the lower-cased text (any case at once); the forms of its bytes (hex, base64,
    base32) as written, in the text without its line breaks if it has any (encoders wrap
    them into lines).

    Args:
        secrets: the strings (or bytes) to hide; shorter than ``min_length`` characters
            ones, and ``true``, ``false`` and ``null``, are ignored (masking every ``"a"``
            would destroy outputs and protect nothing).
        mask: the replacement text.
        min_length: the shortest secret worth masking.
        min_case_length: the shortest secret also masked in other cases than its own.
    """

    def __init__(
        self,
        secrets: Iterable[str | bytes],
        *,
        mask: str = MASK,
        min_length: int = 4,
        min_case_length: int = MIN_CASE_LENGTH,
    ) -> None:
        exact: set[str] = set()
        folded: set[str] = set()
        binary: set[str] = set()
        secrets_kept: list[str | bytes] = []
        for secret in secrets:
            text = _text_of(secret)
            size = len(secret) if text is None else len(text)
            if size < min_length or text in _NOT_SECRETS:
                continue
            secrets_kept.append(secret)
            forms = {f for f in _encodings(secret, min_case_length) if len(f) >= min_length}
            wrapped = {f for f in _wrapped_forms(secret) if len(f) >= min_length}
            binary |= wrapped
            (folded if size >= min_case_length else exact).update(forms - wrapped)
        self.forms = tuple(sorted(exact | folded | binary, key=len, reverse=True))
        """Every form searched for, as written."""
        self.mask = mask
        self._json_mask = json.dumps(mask, ensure_ascii=False)[1:-1]
        self._exact = _needles(exact)
        self._folded = _needles({_fold(form) for form in folded})
        self._binary = _needles(binary)
        self._partials = tuple(
            partial
            for secret in secrets_kept
            for partial in _partial_groups(_raw_of(secret), min_length)
        )

    def __bool__(self) -> bool:
        return bool(self.forms)

    def spans(self, text: str) -> list[Span]:
        """Where the secrets are in ``text``: sorted, overlapping and adjacent ones merged."""
        spans: list[Span] = []
        _find_all(text, self._exact, spans)
        if self._folded:
            _find_all(_fold(text), self._folded, spans)
        if "\n" in text or "\\n" in text:
            unwrapped, positions, removed = _unwrap(text)
            found: list[Span] = []
            _find_all(unwrapped, self._binary, found)
            _find_partials(unwrapped, self._partials, found)
            spans.extend(_rewrap(found, positions, removed))
        else:
            _find_all(text, self._binary, spans)
            _find_partials(text, self._partials, spans)
        if self.mask in text:
            # Masking twice must change nothing: an occurrence inside a mask already there
            # (a secret such as "EDAC" in "[REDACTED]") is not a secret of the text.
            masks = []
            start = text.find(self.mask)
            while start != -1:
                masks.append((start, start + len(self.mask)))
                start = text.find(self.mask, start + len(self.mask))
            spans = [span for span in spans if not _within(span, masks)]
        return _merge(spans)

    def mask_text(self, text: str) -> str:
        """``text`` with every encoding of every secret replaced, the whole span of
        overlapping ones."""
        if not self.forms:
            return text
        spans = self.spans(text)
        if not spans:
            return text
        return _replace(text, [(start, end, self.mask) for start, end in spans])

    def mask_json(self, value: Any) -> Any:
        """A JSON value with every encoding of every secret masked in its strings (keys
        included) and numbers, as it reads serialized: ``value`` itself if it holds none.

        A masked number becomes a string. A secret that spans the JSON syntax (a key and
        its value, two items) masks the whole value: ``mask`` is returned.
        """
        if not self.forms:
            return value
        try:
            text = _dump(value)
        except (TypeError, ValueError):
            try:
                value = jsonable(value)
                text = _dump(value)
            except (TypeError, ValueError):
                return self.mask
        spans = self.spans(text)
        if not spans:
            return value
        edits = self._token_edits(text, spans)
        if edits is None:
            return self.mask
        try:
            return json.loads(_replace(text, edits))
        except ValueError:
            return self.mask

    def mask_value(self, value: Any) -> Any:
        """``value`` as a JSON value (models, dataclasses and bytes serialized as a store
        would), with every encoding of every secret masked in keys and values alike."""
        return self.mask_json(jsonable(value))

    def _token_edits(self, text: str, spans: list[Span]) -> list[tuple[int, int, str]] | None:
        """The replacements that mask ``spans`` of the JSON ``text`` within its tokens: in
        a string, the span (widened to whole escape sequences); a number or literal
        becomes a masked string. None if a span crosses the JSON syntax."""
        quotes = _quotes(text, spans[-1][1])
        edits: list[tuple[int, int, str]] = []
        for index, (start, end) in enumerate(spans):
            k = bisect.bisect_right(quotes, start)
            if k % 2 == 0:  # not in a string: in a number or literal, or the syntax
                first, last = _bare_token(text, start)
                if end > last:
                    return None
                if not edits or edits[-1][0] != first:
                    # The token's spans are already known: mask them, not search again
                    # (every form of every secret, once per number, took seconds).
                    inside = spans[index : bisect.bisect_left(spans, (last,), lo=index)]
                    masked = _replace(
                        text[first:last], [(a - first, b - first, self.mask) for a, b in inside]
                    )
                    edits.append((first, last, json.dumps(masked, ensure_ascii=False)))
                continue
            opening = quotes[k - 1]
            if start == opening or k == len(quotes) or end > quotes[k]:
                return None  # the span takes in a quote: it reaches outside the string
            start, end = _whole_escapes(text, opening + 1, start, end)
            if edits and edits[-1][1] >= start and edits[-1][2] == self._json_mask:
                before = edits.pop()  # widened into the previous span: one mask
                start, end = min(start, before[0]), max(end, before[1])
            edits.append((start, end, self._json_mask))
        return edits


def _quotes(text: str, stop: int) -> list[int]:
    """The positions of the quotes that open and close the strings of the JSON ``text``,
    up to the first one at or after ``stop``."""
    found: list[int] = []
    i = text.find('"')
    while i >= 0:
        if i and text[i - 1] == "\\" and (i - _backslashes_before(text, i)) % 2:
            i = text.find('"', i + 1)  # escaped: inside a string
            continue
        found.append(i)
        if i >= stop:
            break
        i = text.find('"', i + 1)
    return found


def _bare_token(text: str, index: int) -> Span:
    """The number or literal of the JSON ``text`` at ``index`` (empty in the syntax)."""
    first = index
    while first and text[first - 1] not in _STRUCTURE:
        first -= 1
    last = index
    while last < len(text) and text[last] not in _STRUCTURE:
        last += 1
    return first, last


def _escape_at(text: str, content: int, index: int) -> Span | None:
    """The escape sequence that contains ``text[index - 1]`` and may go on past it, in a
    JSON string whose content begins at ``content`` (an escape is at most 6 characters,
    ``\\u00e9``; it begins at a backslash that does not end one)."""
    i = text.rfind("\\", max(content, index - 6), index)
    if i < 0 or (i - _backslashes_before(text, i)) % 2:
        return None  # none near, or the backslash is the second one of an escaped one
    size = 6 if text[i + 1 : i + 2] == "u" else 2
    return (i, i + size) if index < i + size else None


def _whole_escapes(text: str, content: int, start: int, end: int) -> Span:
    """``start`` and ``end`` moved out of the escape sequences they fall in."""
    inside = _escape_at(text, content, start)
    if inside is not None and inside[0] < start:
        start = inside[0]
    inside = _escape_at(text, content, end)
    if inside is not None:
        end = inside[1]
    return start, end


def _replace(text: str, edits: list[tuple[int, int, str]]) -> str:
    """``text`` with each sorted, disjoint ``(start, end, replacement)`` applied."""
    pieces = []
    last = 0
    for start, end, replacement in edits:
        pieces.append(text[last:start])
        pieces.append(replacement)
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


# -- collecting secrets --------------------------------------------------------------------


def _children(item: Any) -> Iterator[Any]:
    """The values inside ``item``: of containers, models, dataclasses and plain objects'
    ``__dict__``; nothing is called on an object but its container protocol."""
    if isinstance(item, dict):
        yield from dict.values(item)
    elif isinstance(item, list):
        yield from list.__iter__(item)
    elif isinstance(item, tuple):
        yield from tuple.__iter__(item)
    elif isinstance(item, set | frozenset):
        yield from (set.__iter__(item) if isinstance(item, set) else frozenset.__iter__(item))
    elif isinstance(item, Mapping):
        yield from item.values()
    elif isinstance(item, Sequence | Set | collections.deque):
        yield from item
    elif isinstance(item, _SKIPPED_OBJECTS):
        return
    elif isinstance(item, BaseModel):
        yield from _instance_dict(item).values()
        for slot in ("__pydantic_extra__", "__pydantic_private__"):
            extra = _slot(item, BaseModel, slot)
            if isinstance(extra, dict):
                yield from dict.values(extra)
    elif dataclasses.is_dataclass(item):
        attributes = _instance_dict(item)
        yield from attributes.values()
        for field in dataclasses.fields(item):
            if field.name not in attributes:
                yield from _slot_values(item, field.name)
    else:
        yield from _instance_dict(item).values()


def _instance_dict(item: Any) -> dict[str, Any]:
    try:
        found = object.__getattribute__(item, "__dict__")
    except AttributeError:
        return {}
    return found if isinstance(found, dict) else {}


def _slot(item: Any, owner: type, name: str) -> Any:
    descriptor = owner.__dict__.get(name)
    if not isinstance(descriptor, types.MemberDescriptorType):
        return None
    try:
        return descriptor.__get__(item, type(item))
    except AttributeError:
        return None


def _slot_values(item: Any, name: str) -> Iterator[Any]:
    """The value of the slot ``name`` of ``item`` (a slotted dataclass's field)."""
    for owner in type(item).__mro__:
        if name in owner.__dict__:
            value = _slot(item, owner, name)
            if value is not None:
                yield value
            return


def secrets_in(value: Any) -> list[str | bytes]:
    """The strings and bytes inside ``value`` (the globals): in mappings (values),
    sequences and sets, pydantic models, dataclasses and the ``__dict__`` of plain objects,
    shallowest first, at most :data:`_COLLECT_DEPTH` levels deep, :data:`_COLLECT_ITEMS`
    values in all and :data:`_COLLECT_PER_CONTAINER` of each container. Never raises: what
    cannot be looked into is skipped."""
    found: list[str | bytes] = []
    seen: set[int] = set()
    queue: collections.deque[tuple[Any, int]] = collections.deque([(value, 0)])
    budget = _COLLECT_ITEMS
    while queue:
        item, depth = queue.popleft()
        if isinstance(item, str):
            found.append(str.__getitem__(item, slice(None)))
            continue
        if isinstance(item, bytes | bytearray | memoryview):
            with contextlib.suppress(TypeError, ValueError):
                found.append(bytes(item))
            continue
        if (
            budget <= 0
            or depth >= _COLLECT_DEPTH
            or item is None
            or isinstance(item, int | float | complex)
            or id(item) in seen
        ):
            continue
        seen.add(id(item))
        try:
            taken = min(budget, _COLLECT_PER_CONTAINER)
            children = list(itertools.islice(_children(item), taken))
        except Exception:  # a strange object: what it holds stays unknown
            continue
        budget -= len(children)
        queue.extend((child, depth + 1) for child in children)
    return found


@functools.lru_cache(maxsize=32)
def _redactor(
    secrets: tuple[str | bytes, ...], mask: str, min_length: int, min_case_length: int
) -> Redactor:
    return Redactor(secrets, mask=mask, min_length=min_length, min_case_length=min_case_length)


class RedactionPlugin(Plugin):
    """Masks configured keys in outputs, and the values of globals wherever they appear.

    Args:
        keys: output keys (any depth, case-insensitive) whose values are replaced by ``mask``.
        mask_globals: also mask every string found in ``globals`` (at least
            ``min_secret_length`` characters long), in every encoding, wherever it occurs in
            an output (keys included) or an error text; the durable runtime then masks them
            once more in every commit's user content. Strings are collected from mappings,
            sequences and sets, pydantic models, dataclasses and plain objects' attributes,
            and from bytes.
        mask: the replacement text.
        min_secret_length: the shortest string of the globals that is a secret.
        min_case_length: the shortest secret also masked in any case (``"ERROR"`` is
            masked as written, not in ``"error"``).
    """

    name = "redaction"

    def __init__(
        self,
        keys: Iterable[str] = ("password", "secret", "token", "api_key", "apiKey", "authorization"),
        *,
        mask_globals: bool = True,
        mask: str = MASK,
        min_secret_length: int = 4,
        min_case_length: int = MIN_CASE_LENGTH,
    ) -> None:
        self.keys = frozenset(key.lower() for key in keys)
        self.mask_globals = mask_globals
        self.mask = mask
        self.min_secret_length = min_secret_length
        self.min_case_length = min_case_length

    def redactor(self, globals_: Any) -> Redactor:
        """The :class:`Redactor` for the secrets in ``globals_`` (none without
        ``mask_globals``); the same globals give the same one, built once."""
        found = secrets_in(globals_) if self.mask_globals else []
        unique = tuple(sorted(set(found), key=lambda s: (isinstance(s, bytes), repr(s))))
        return _redactor(unique, self.mask, self.min_secret_length, self.min_case_length)

    def transform_output(self, ctx: PluginContext) -> Any:
        plain = jsonable(ctx.output)
        return self.redactor(ctx.globals).mask_json(self._mask_keys(plain, 0))

    def transform_error(self, ctx: ErrorPluginContext, text: str) -> str:
        return self.redactor(ctx.globals).mask_text(text)

    def _mask_keys(self, value: Any, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise ValueError("output nested too deeply to redact")
        if isinstance(value, Mapping):
            return {
                key: self.mask
                if str(key).lower() in self.keys
                else self._mask_keys(item, depth + 1)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._mask_keys(item, depth + 1) for item in value]
        return value
