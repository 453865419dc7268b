"""Host for the SIGKILL harness (tests/test_sigkill.py).

``sigkill_host.py ACK_FD CALLS PAD PAUSE [HOLD]``: logs CALLS events through agentlog's public
API and, after each call has returned, acknowledges it on the pipe ACK_FD with its
number; ``start`` comes before the first call and ``done`` after the last. PAD is the
approximate size of each event in bytes (above 2,000, verbosity 2 keeps it whole).
With HOLD, the host sleeps that long after ``done`` instead of exiting.
"""

import os
import sys
import time

import agentlog

ack_fd, calls, pad, pause = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
if pad > 2_000:
    agentlog.set_logging(True, verbosity=2)  # keep huge fields whole
# Two bytes each in UTF-8; fields are capped at 200,000 characters, so many pieces.
piece = "\u00e9" * min(max(pad // 4, 1), 100_000)
side = [piece] * max(1, pad // 400_000)
os.write(ack_fd, b"start\n")
for i in range(calls):
    agentlog.log_interaction("worker", {"i": i, "pad": side}, side)
    os.write(ack_fd, b"%d\n" % i)  # the ack: agentlog has returned
    if pause:
        time.sleep(pause)
os.write(ack_fd, b"done\n")
if len(sys.argv) > 5:
    time.sleep(float(sys.argv[5]))
