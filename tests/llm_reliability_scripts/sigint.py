"""A2: Ctrl-C while the SDK waits for the next chunk (a real SIGINT, default handler).

The first SDK's KeyboardInterrupt is caught and shown; the second one's is left uncaught,
so the process ends as Python ends on Ctrl-C. Run with and without agentlog: stdout, the
exit code and the host's own traceback frames must match.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from _common import FakeLLM, Reply, client, create_stream


def interrupted_stream(srv: FakeLLM, sdk: str) -> None:
    srv.script(Reply(chunk_delay_s=2.0))
    with client(srv, sdk) as c:
        s = create_stream(c, sdk, f"sigint-{sdk}")
        next(s)
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
        print(sdk, "first chunk", flush=True)
        for _ in s:
            pass
        print("not reached")


if __name__ == "__main__":
    first, second = sys.argv[1:3]
    with FakeLLM() as srv:
        try:
            interrupted_stream(srv, first)
        except KeyboardInterrupt as exc:
            print(first, "caught", type(exc).__name__, repr(exc.args), flush=True)
        interrupted_stream(srv, second)
