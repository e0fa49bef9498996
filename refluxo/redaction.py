"""Redaction: secrets never reach a stored byte, in any encoding.

A secret leaves an executor in many shapes: as a value or a dict key, inside bytes, a
pydantic model or a dataclass, in an exception's text (quoted by ``repr``, JSON-escaped,
``\\u``-escaped), base64-encoded. Masking values one by one misses most of them. So masking
works on text: a value is first serialized to JSON exactly as a store will keep it, then
every encoding of every secret is replaced in that text, and the text is read back. The
durable runtime applies the same :class:`Redactor` once more to the serialized head and
results of every commit, at the last moment before the store.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic_core import to_jsonable_python

from refluxo.plugins import ErrorPluginContext, Plugin, PluginContext

MASK = "[REDACTED]"

_MAX_DEPTH = 100

_MIN_LINE = 16
"""A line of a multi-line secret this long is a secret of its own (a PEM key's body)."""

_PERCENT = re.compile(r"%[0-9A-F]{2}")


def _aligned(raw: bytes, group: int) -> list[bytes]:
    """The runs of ``raw`` that start on each possible boundary of ``group``-byte blocks.

    Base64 (3-byte groups) and base32 (5-byte groups) of a longer text that contains the
    secret at any offset contain the encoding of one of these runs, whatever came before.
    """
    return [raw[d : d + group * ((len(raw) - d) // group)] for d in range(group)]


def _url_forms(secret: str) -> set[str]:
    forms = {urllib.parse.quote(secret, safe=""), urllib.parse.quote(secret)}
    forms.add(urllib.parse.quote_plus(secret))
    return forms | {_PERCENT.sub(lambda m: m.group(0).lower(), form) for form in forms}


def _encodings(secret: str) -> set[str]:
    """The forms ``secret`` takes in text: plain, upper- and lower-cased, reversed; escaped
    as JSON, by ``repr`` and as Unicode escapes; URL-encoded (either hex case); hex, base64
    and base32 at any alignment; a multi-line secret's lines too (a PEM key's body); each
    form also as it reads once embedded in a JSON string."""
    raw = secret.encode("utf-8", "surrogatepass")
    forms = {
        secret,
        secret.upper(),
        secret.lower(),
        secret[::-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        json.dumps(secret)[1:-1],
        repr(secret)[1:-1],
        secret.encode("unicode_escape").decode("ascii"),
        raw.hex(),
        raw.hex().upper(),
        *_url_forms(secret),
    }
    for run in _aligned(raw, 3):
        forms.update({base64.b64encode(run).decode(), base64.urlsafe_b64encode(run).decode()})
    for run in _aligned(raw, 5):
        forms.add(base64.b32encode(run).decode())
    for line in secret.splitlines():
        if len(line.strip()) >= _MIN_LINE and line != secret:
            forms |= _encodings(line.strip())
    nested = set()
    for form in forms:
        nested.add(json.dumps(form, ensure_ascii=False)[1:-1])
        nested.add(json.dumps(form)[1:-1])
    return forms | nested


def jsonable(value: Any) -> Any:
    """``value`` as a JSON value, as a store would keep it: models and dataclasses dumped,
    bytes as UTF-8 text (base64 if they are not UTF-8), anything else by its ``repr``."""
    try:
        return to_jsonable_python(value, fallback=repr, serialize_unknown=True)
    except UnicodeDecodeError:
        return to_jsonable_python(value, fallback=repr, serialize_unknown=True, bytes_mode="base64")


def _leaves(value: Any) -> Iterable[str]:
    """Every string in ``value`` (mappings, lists, tuples), depth first, without recursion."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


class Redactor:
    """Replaces every encoding of the given secrets with ``mask``, in text or in values.

    Args:
        secrets: the strings to hide; shorter than ``min_length`` ones are ignored (masking
            every ``"a"`` would destroy outputs and protect nothing).
        mask: the replacement text.
        min_length: the shortest secret worth masking.
    """

    def __init__(self, secrets: Iterable[str], *, mask: str = MASK, min_length: int = 4) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) >= min_length:
                forms |= _encodings(secret)
        # Longest first: a longer encoding is never left half-masked by a shorter one.
        self.forms = sorted((f for f in forms if len(f) >= min_length), key=len, reverse=True)
        self.mask = mask

    def __bool__(self) -> bool:
        return bool(self.forms)

    def mask_text(self, text: str) -> str:
        """``text`` with every encoding of every secret replaced."""
        for form in self.forms:
            if form in text:
                text = text.replace(form, self.mask)
        return text

    def mask_value(self, value: Any) -> Any:
        """``value`` as a JSON value (models, dataclasses and bytes serialized as a store
        would), with every encoding of every secret masked in keys and values alike."""
        plain = jsonable(value)
        if not self.forms:
            return plain
        text = json.dumps(plain, ensure_ascii=False)
        masked = self.mask_text(text)
        if masked == text:
            return plain
        try:
            return json.loads(masked)
        except ValueError:
            return self.mask  # a secret spanned the JSON syntax itself: keep nothing of it


class RedactionPlugin(Plugin):
    """Masks configured keys in outputs, and the values of globals wherever they appear.

    Args:
        keys: output keys (any depth, case-insensitive) whose values are replaced by ``mask``.
        mask_globals: also mask every string found in ``globals`` (at least
            ``min_secret_length`` characters long), in every encoding, wherever it occurs in
            an output (keys included) or an error text; the durable runtime then masks them
            once more in every serialized commit.
        mask: the replacement text.
    """

    name = "redaction"

    def __init__(
        self,
        keys: Iterable[str] = ("password", "secret", "token", "api_key", "apiKey", "authorization"),
        *,
        mask_globals: bool = True,
        mask: str = MASK,
        min_secret_length: int = 4,
    ) -> None:
        self.keys = frozenset(key.lower() for key in keys)
        self.mask_globals = mask_globals
        self.mask = mask
        self.min_secret_length = min_secret_length

    def redactor(self, globals_: Any) -> Redactor:
        """The :class:`Redactor` for the secrets in ``globals_`` (none without
        ``mask_globals``)."""
        secrets = _leaves(globals_) if self.mask_globals else ()
        return Redactor(secrets, mask=self.mask, min_length=self.min_secret_length)

    def transform_output(self, ctx: PluginContext) -> Any:
        plain = jsonable(ctx.output)
        return self.redactor(ctx.globals).mask_value(self._mask_keys(plain, 0))

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
