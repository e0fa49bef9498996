"""``resolve`` awaits every kind of awaitable and hands everything else back as it is."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Generator
from typing import Any

from refluxo._aio import resolve


class Ready:
    """An awaitable of a user's own class (no coroutine, no future)."""

    def __await__(self) -> Generator[Any, None, str]:
        return "ready"
        yield


@types.coroutine
def old_style() -> Generator[Any, None, str]:
    return "old style"
    yield


async def modern() -> str:
    return "modern"


class NotAwaitable:
    pass


def test_every_awaitable_is_awaited_and_other_values_come_back_unchanged() -> None:
    plain = NotAwaitable()

    async def resolved() -> list[Any]:
        future = asyncio.get_running_loop().create_future()
        future.set_result("future")
        plain_generator = (n for n in range(2))
        return [
            await resolve(Ready()),
            await resolve(old_style()),
            await resolve(modern()),
            await resolve(future),
            await resolve(plain),
            await resolve(None),
            await resolve(plain_generator) is plain_generator,
        ]

    assert asyncio.run(resolved()) == [
        "ready",
        "old style",
        "modern",
        "future",
        plain,
        None,
        True,
    ]
