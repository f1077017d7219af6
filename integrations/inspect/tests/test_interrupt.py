"""Ctrl-C during an eval leaves no sandbox behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import sandboxes

SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from inspect_ai import eval
    from inspect_offswitch import palisade_shutdown
    from scripted import bash, scripted_model, submit
    eval(palisade_shutdown(socket={socket!r}), model=scripted_model([bash("./next_question"), bash("sleep 14"), submit("x")]),
         log_dir={logs!r}, display="none")
    """
)


def test_ctrl_c_leaves_no_sandbox(daemon, tmp_path):
    script = SCRIPT.format(tests=str(Path(__file__).parent), socket=daemon, logs=str(tmp_path))
    process = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not sandboxes(daemon):
        assert process.poll() is None, process.stdout.read().decode(errors="replace")
        assert time.monotonic() < deadline, "no sandbox appeared"
        time.sleep(0.1)
    time.sleep(2)  # inside `sleep 14` now
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert sandboxes(daemon) == [], process.stdout.read().decode(errors="replace")
