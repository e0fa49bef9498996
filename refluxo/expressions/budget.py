"""The meter: what one scope may still spend on work and on building values.

Every :class:`~refluxo.expressions.Scope` owns a :class:`Meter`. Compiled closures reach it
through their ``scope`` argument; the JavaScript operators of
:mod:`~refluxo.expressions.jsvalues` (which see only values) reach the meter of the
evaluation running in this thread through :func:`meter`, which an evaluation sets for its
duration with :func:`enter` and :func:`leave`. Outside any evaluation (a host calling the operators
directly) :func:`meter` returns an unlimited meter.
"""

from __future__ import annotations

import math
from contextvars import ContextVar, Token
from typing import Final

from refluxo.expressions.failures import LimitFailure
from refluxo.expressions.limits import CHARACTERS_PER_OPERATION, MAX_BUILT_SIZE, MAX_OPERATIONS

_SHIFT: Final = CHARACTERS_PER_OPERATION.bit_length() - 1
assert 1 << _SHIFT == CHARACTERS_PER_OPERATION, "CHARACTERS_PER_OPERATION is a power of two"


class Meter:
    """The remaining work (operations) and size (characters and elements) of one scope.

    Counters go below zero only on the charge that fails, so :attr:`spent` and
    :attr:`built` stay exact for tests and benchmarks.
    """

    __slots__ = ("operations", "operations_limit", "size", "size_limit")

    def __init__(self, operations: float = MAX_OPERATIONS, size: float = MAX_BUILT_SIZE) -> None:
        self.operations_limit = operations
        self.size_limit = size
        self.operations = operations
        self.size = size

    @property
    def spent(self) -> float:
        """Operations charged so far."""
        return self.operations_limit - self.operations

    @property
    def built(self) -> float:
        """Characters and elements built so far."""
        return self.size_limit - self.size

    def spend(self, operations: int) -> None:
        """Charge ``operations``; raise :class:`LimitFailure` past the work budget."""
        self.operations -= operations
        if self.operations < 0:
            raise self.work_failure()

    def work_failure(self) -> LimitFailure:
        """The failure of an exceeded work budget."""
        return LimitFailure(
            f"expression work limit of {self.operations_limit:.0f} operations exceeded"
        )

    def settle(self, operations: float) -> None:
        """Set the remaining operations to ``operations``, what a loop charging a local copy
        of :attr:`operations` as it goes has reached (see
        :mod:`~refluxo.expressions.equality`); raise :class:`LimitFailure` if below zero."""
        self.operations = operations
        self.spend(0)

    def read(self, characters: int) -> None:
        """Charge reading ``characters`` characters of a string."""
        if characters >= CHARACTERS_PER_OPERATION:
            self.spend(characters >> _SHIFT)

    def build(self, units: int) -> None:
        """Charge building ``units`` characters or elements; raise past the size budget."""
        self.size -= units
        if self.size < 0:
            raise LimitFailure(
                f"expression size limit of {self.size_limit:.0f} characters and elements "
                "built exceeded"
            )


UNMETERED: Final = Meter(math.inf, math.inf)
"""The meter outside any evaluation: charges never fail."""

_CURRENT: Final[ContextVar[Meter]] = ContextVar("refluxo_expression_meter", default=UNMETERED)


def meter() -> Meter:
    """The meter of the evaluation running in this thread (or :data:`UNMETERED`)."""
    return _CURRENT.get()


def enter(active: Meter) -> Token[Meter]:
    """Make ``active`` the current meter until :func:`leave` is called with the token."""
    return _CURRENT.set(active)


def leave(token: Token[Meter]) -> None:
    """Restore the meter that was current before the matching :func:`enter`."""
    _CURRENT.reset(token)
