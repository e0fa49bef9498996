"""Internal failure signals, turned into public errors at the evaluation boundary.

Evaluation code deep inside an expression does not know the expression's text, so it raises
a :class:`Failure` carrying only the reason; :func:`expression_error` adds the
``Jexl Error in [<expression>]: `` prefix that Refluxo's messages start with.
"""

from __future__ import annotations

from typing import Final

from refluxo.errors import ExpressionError
from refluxo.expressions.limits import ExpressionLimitError

_SHOWN_CHARACTERS: Final = 200
"""Longer expressions are shortened in messages, so an error stays readable (and small)."""


class Failure(Exception):
    """An expression cannot be parsed or evaluated; the message is the reason only."""


class LimitFailure(Failure):
    """An expression exceeded a bound of :mod:`refluxo.expressions.limits`."""


def shown(text: str) -> str:
    """``text`` as it appears inside error messages: shortened when very long."""
    if len(text) <= _SHOWN_CHARACTERS:
        return text
    return f"{text[:_SHOWN_CHARACTERS]}... ({len(text)} characters)"


def expression_error(text: str, reason: str, *, limit: bool = False) -> ExpressionError:
    """The public error for ``reason`` in expression ``text``, worded as Refluxo words it."""
    message = f"Jexl Error in [{shown(text)}]: {reason}"
    return ExpressionLimitError(message) if limit else ExpressionError(message)


def from_failure(text: str, failure: Failure) -> ExpressionError:
    """The public error for an internal :class:`Failure` raised by expression ``text``."""
    return expression_error(text, str(failure), limit=isinstance(failure, LimitFailure))
