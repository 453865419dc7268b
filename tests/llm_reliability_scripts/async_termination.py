"""A4 under asyncio: streams cut in every way, and loops that end under them.

Run with ``-W error``, once with agentlog and once without: stdout and stderr must match.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from typing import Any

from _common import FakeLLM, Reply, client, create_stream


async def consuming(s: Any) -> tuple[asyncio.Task[None], list[Any]]:
    """A task that iterates ``s`` into a list, and that list, once it holds the first item."""
    got: list[Any] = []

    async def consume() -> None:
        async for item in s:
            got.append(item)

    task = asyncio.create_task(consume())
    while not got:
        await asyncio.sleep(0.01)
    return task, got


async def cancel_mid_stream(srv: FakeLLM, sdk: str) -> None:
    srv.script(Reply(chunk_delay_s=0.3))
    async with client(srv, sdk, async_=True) as c:
        s = await create_stream(c, sdk, "cancel-mid-stream")
        task, got = await consuming(s)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            print("cancel-mid-stream: CancelledError after", len(got))


async def aclose_from_other_task(srv: FakeLLM, sdk: str) -> None:
    srv.script(Reply(chunk_delay_s=0.3))
    async with client(srv, sdk, async_=True) as c:
        s = await create_stream(c, sdk, "aclose-other-task")
        task, got = await consuming(s)
        await s.close()
        try:
            await task
            ended = "ended"
        except Exception as exc:  # noqa: BLE001 - what the consumer sees is the output
            ended = type(exc).__name__
        print("aclose-other-task:", ended, "after", len(got))


async def break_then_drop(srv: FakeLLM, sdk: str) -> None:
    async with client(srv, sdk, async_=True) as c:
        s = await create_stream(c, sdk, "break-then-drop")
        async for _ in s:
            break
        del s
        gc.collect()
        await asyncio.sleep(0.05)  # the loop finalises the SDK's async generators
        print("break-then-drop: done")


async def drop_without_close(srv: FakeLLM, sdk: str) -> None:
    async with client(srv, sdk, async_=True) as c:
        s = await create_stream(c, sdk, "drop-without-close")
        await s.__anext__()
        del s
        gc.collect()
        await asyncio.sleep(0.05)
        print("drop-without-close: done")


async def complete(srv: FakeLLM, sdk: str) -> None:
    """A call after all the cut ones: a record of its own, complete."""
    async with client(srv, sdk, async_=True) as c:
        s = await create_stream(c, sdk, "complete-after")
        print("complete-after:", len([x async for x in s]) > 2)


def loop_ends_under_task(srv: FakeLLM, sdk: str, kept: list[Any]) -> None:
    """asyncio.run returns while a task is suspended in the stream: the loop cancels it."""
    srv.script(Reply(chunk_delay_s=0.3))

    async def main() -> None:
        c = client(srv, sdk, async_=True)
        s = await create_stream(c, sdk, "loop-ends-under-task")
        kept.append(c)
        await consuming(s)  # left suspended in the stream

    asyncio.run(main())
    print("loop-ends-under-task: loop closed")


def loop_ends_with_stream_kept(srv: FakeLLM, sdk: str, kept: list[Any]) -> None:
    """The stream outlives its loop, suspended after one chunk; the run's end cuts it."""

    async def main() -> None:
        c = client(srv, sdk, async_=True)
        s = await create_stream(c, sdk, "loop-ends-stream-kept")
        await s.__anext__()
        kept.extend((c, s))

    asyncio.run(main())
    print("loop-ends-stream-kept: loop closed")


def run(sdk: str, kept: list[Any]) -> None:
    with FakeLLM() as srv:
        for case in (cancel_mid_stream, aclose_from_other_task, break_then_drop,
                     drop_without_close, complete):
            asyncio.run(case(srv, sdk))
        loop_ends_under_task(srv, sdk, kept)
        loop_ends_with_stream_kept(srv, sdk, kept)
        print(sdk, "requests:", srv.count())


if __name__ == "__main__":
    kept: list[Any] = []  # alive until the process exits
    for sdk in sys.argv[1:]:
        run(sdk, kept)
    print("end")
