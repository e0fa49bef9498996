"""Redaction: mask secrets in node outputs and error texts before they are recorded."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from refluxo.plugins import ErrorPluginContext, Plugin, PluginContext

MASK = "[REDACTED]"


class RedactionPlugin(Plugin):
    """Masks configured keys in outputs, and the values of globals wherever they appear.

    Args:
        keys: output keys (any depth, case-insensitive) whose values are replaced by ``mask``.
        mask_globals: also replace every string value found in ``globals`` (at least
            ``min_secret_length`` characters long) wherever it occurs in an output string or
            an error text, so a secret echoed by an executor or an exception is not recorded.
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

    def transform_output(self, ctx: PluginContext) -> Any:
        return self._redact(ctx.output, self._secrets(ctx.globals), depth=0)

    def transform_error(self, ctx: ErrorPluginContext, text: str) -> str:
        return self._mask_text(text, self._secrets(ctx.globals))

    def _secrets(self, globals_: Any) -> list[str]:
        if not self.mask_globals:
            return []
        found: list[str] = []
        stack: list[Any] = [globals_]
        while stack:
            value = stack.pop()
            if isinstance(value, str):
                if len(value) >= self.min_secret_length:
                    found.append(value)
            elif isinstance(value, Mapping):
                stack.extend(value.values())
            elif isinstance(value, list | tuple):
                stack.extend(value)
        return sorted(set(found), key=len, reverse=True)  # longest first: no partial masks

    def _mask_text(self, text: str, secrets: list[str]) -> str:
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, self.mask)
        return text

    def _redact(self, value: Any, secrets: list[str], depth: int) -> Any:
        if depth > 100:
            raise ValueError("output nested too deeply to redact")
        if isinstance(value, str):
            return self._mask_text(value, secrets)
        if isinstance(value, Mapping):
            return {
                key: self.mask
                if str(key).lower() in self.keys
                else self._redact(item, secrets, depth + 1)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._redact(item, secrets, depth + 1) for item in value]
        return value
