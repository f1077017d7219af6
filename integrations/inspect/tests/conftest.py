"""A real offswitchd for the tests: started once per session on a private socket and state
directory (needs root, as offswitchd does), stopped at the end with every sandbox it held."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from inspect_offswitch import OffswitchClient

REPO = Path(__file__).resolve().parents[3]


def _binaries() -> Path:
    """offswitchd and next-question: $OFFSWITCH_BIN (make test sets it), else the debug build."""
    return Path(os.environ.get("OFFSWITCH_BIN") or REPO / ".build" / "debug")


@pytest.fixture(scope="session")
def daemon() -> str:
    """offswitchd's socket."""
    if os.geteuid() != 0:
        pytest.skip("needs root: offswitchd creates real sandboxes (namespaces, cgroups, seccomp)")
    binary = _binaries() / "offswitchd"
    if not binary.exists():
        pytest.fail(f"{binary} does not exist: run `swift build` (or `make test`) first")
    directory = Path(tempfile.mkdtemp(prefix="offswitch-inspect-"))
    socket_path = str(directory / "offswitchd.sock")
    log = (directory / "offswitchd.log").open("w")
    process = subprocess.Popen(
        [str(binary), "--socket", socket_path, "--state-dir", str(directory / "state")], stdout=log, stderr=subprocess.STDOUT
    )
    client = OffswitchClient(socket_path=socket_path)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.request("GET", "/healthz")
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"offswitchd did not start: {(directory / 'offswitchd.log').read_text()}")
            time.sleep(0.05)
    os.environ["OFFSWITCH_SOCKET"] = socket_path
    # Inspect records the sandboxes it creates for `inspect sandbox cleanup`; keep the tests' apart.
    os.environ["XDG_STATE_HOME"] = str(directory / "xdg-state")
    yield socket_path
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    log.close()


def sandboxes(socket_path: str) -> list[dict]:
    """The sandboxes offswitchd holds."""
    return OffswitchClient(socket_path=socket_path).json("GET", "/v1/sandboxes")["sandboxes"]
