"""What the conformance checks leave out: output limits, missing commands, a shut-down sandbox,
CRLF, users, TCP with a token, configuration errors, and the cleanups."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from inspect_ai.util import OutputLimitExceededError, SandboxUnavailableError, SandboxUserUnsupportedError
from inspect_ai.util._sandbox.limits import override_max_exec_output_size

from inspect_offswitch import OffswitchClient, OffswitchSandboxConfig, OffswitchSandboxEnvironment

from conftest import _binaries, sandboxes


async def fresh(daemon: str, **config) -> OffswitchSandboxEnvironment:
    environments = await OffswitchSandboxEnvironment.sample_init("provider", OffswitchSandboxConfig(socket=daemon, **config), {})
    return environments["default"]


async def test_output_over_the_limit_raises_with_the_truncated_output(daemon):
    sandbox = await fresh(daemon)
    try:
        with override_max_exec_output_size(1024):
            with pytest.raises(OutputLimitExceededError) as raised:
                await sandbox.exec(["sh", "-c", "head -c 5000 /dev/zero | tr '\\0' a"])
        assert raised.value.truncated_output == "a" * 1024
        assert "1 KiB" in str(raised.value)
    finally:
        await sandbox._delete()


async def test_missing_command_is_127_and_users_are_user_and_root(daemon):
    sandbox = await fresh(daemon)
    try:
        missing = await sandbox.exec(["no-such-command"])
        assert missing.returncode == 127 and not missing.success
        assert "no-such-command" in missing.stderr
        assert (await sandbox.exec(["id", "-u"])).stdout == "1000\n"
        assert (await sandbox.exec(["id", "-u"], user="root")).stdout == "0\n"
        with pytest.raises(SandboxUserUnsupportedError, match="nobody"):
            await sandbox.exec(["id"], user="nobody")
    finally:
        await sandbox._delete()


async def test_crlf_and_binary_bytes_are_kept_exactly(daemon):
    sandbox = await fresh(daemon)
    try:
        await sandbox.write_file("dos.txt", "one\r\ntwo\r\n")
        assert await sandbox.read_file("dos.txt") == "one\r\ntwo\r\n"
        assert (await sandbox.exec(["od", "-c", "dos.txt"])).stdout.count("\\r") == 2
        await sandbox.write_file("bad.bin", b"\xff\xfe")
        with pytest.raises(UnicodeDecodeError):
            await sandbox.read_file("bad.bin")
        assert await sandbox.read_file("bad.bin", text=False) == b"\xff\xfe"
    finally:
        await sandbox._delete()


async def test_a_shut_down_sandbox_is_unavailable(daemon):
    sandbox = await fresh(daemon)
    try:
        await sandbox.exec(["sh", "-c", "kill -s TERM 1; sleep 5"])
        with pytest.raises(SandboxUnavailableError, match="shut down"):
            await sandbox.exec(["true"])
        with pytest.raises(SandboxUnavailableError):
            await sandbox.read_file("/etc/hostname")
    finally:
        await sandbox._delete()
    assert sandbox.sandbox_id not in [s["id"] for s in sandboxes(daemon)]


async def test_configuration_errors_name_the_field(daemon):
    with pytest.raises(ValueError, match="env cannot be given with scenario"):
        await fresh(daemon, scenario="palisade-math", env={"A": "1"})
    with pytest.raises(ValueError, match="option needs scenario"):
        await fresh(daemon, option="execute-only")
    with pytest.raises(Exception, match="extra"):
        OffswitchSandboxConfig(sockett="/x")
    with pytest.raises(ConnectionError, match="/nonexistent/offswitchd.sock"):
        await OffswitchSandboxEnvironment.task_init("provider", OffswitchSandboxConfig(socket="/nonexistent/offswitchd.sock"))


async def test_limits_reach_the_sandbox(daemon):
    sandbox = await fresh(daemon, limits={"pids": 64}, profile="hardened", record=False)
    try:
        # The pids limit: 100 background sleeps cannot all start.
        result = await sandbox.exec(["sh", "-c", "for i in $(seq 100); do sleep 2 & done; wait"], timeout=20)
        assert "fork" in result.stderr.lower() or "resource temporarily unavailable" in result.stderr.lower(), result
    finally:
        await sandbox._delete()


async def test_cli_cleanup_removes_what_an_interrupted_run_left(daemon):
    left = await fresh(daemon)
    assert left.sandbox_id in [s["id"] for s in sandboxes(daemon)]
    await OffswitchSandboxEnvironment.cli_cleanup(None)
    assert left.sandbox_id not in [s["id"] for s in sandboxes(daemon)]


async def test_task_cleanup_removes_what_sample_cleanup_missed(daemon):
    left = await fresh(daemon)
    await OffswitchSandboxEnvironment.task_cleanup("provider", None, cleanup=True)
    assert left.sandbox_id not in [s["id"] for s in sandboxes(daemon)]


@pytest.fixture(scope="module")
def tcp_daemon():
    """A second offswitchd, on loopback TCP with a bearer token."""
    directory = Path(tempfile.mkdtemp(prefix="offswitch-inspect-tcp-"))
    token = directory / "token"
    token.write_text("s3cret-token-for-tests\n")
    token.chmod(0o600)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [str(_binaries() / "offswitchd"), "--socket", str(directory / "d.sock"), "--state-dir", str(directory / "state"),
         "--listen", f"127.0.0.1:{port}", "--token-file", str(token)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            OffswitchClient(url=url, token="s3cret-token-for-tests").request("GET", "/v1/sandboxes")
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, "offswitchd --listen did not start"
            time.sleep(0.05)
    yield url, str(token)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)


async def test_tcp_with_a_token(daemon, tcp_daemon):
    url, token_file = tcp_daemon
    environments = await OffswitchSandboxEnvironment.sample_init("tcp", OffswitchSandboxConfig(url=url, token_file=token_file), {})
    sandbox = environments["default"]
    assert (await sandbox.exec(["echo", "over tcp"])).stdout == "over tcp\n"
    await OffswitchSandboxEnvironment.sample_cleanup("tcp", None, environments, False)
    with pytest.raises(ValueError, match="token_file"):
        await fresh(daemon, url=url)
    wrong = Path(tempfile.mkdtemp()) / "token"
    wrong.write_text("wrong")
    with pytest.raises(Exception, match="401|unauthorized|token"):
        await OffswitchSandboxEnvironment.sample_init("tcp", OffswitchSandboxConfig(url=url, token_file=str(wrong)), {})


async def test_an_image_is_the_root_of_plain_and_scenario_sandboxes(daemon, tmp_path):
    # A busybox image made by umoci and skopeo, uploaded to the daemon's store.
    subprocess.run(["bash", "-euo", "pipefail", "-c", f"""
        cd {tmp_path} && mkdir -p r/bin r/etc && cp /bin/busybox r/bin/busybox
        for tool in sh cat; do ln -s busybox r/bin/$tool; done
        echo ID=inspect-image > r/etc/os-release
        tar --numeric-owner -C r -cf layer.tar .
        umoci init --layout layout && umoci new --image layout:t && umoci raw add-layer --image layout:t layer.tar
        skopeo copy --quiet oci:layout:t docker-archive:image.tar:offswitch-test/inspect:1
        curl -sf --unix-socket {daemon} -X POST --data-binary @image.tar -H 'Content-Type: application/octet-stream' http://offswitchd/v1/images >/dev/null
        """], check=True)
    sandbox = await fresh(daemon, image="offswitch-test/inspect:1")
    try:
        result = await sandbox.exec(["cat", "/etc/os-release"])
        assert result.stdout == "ID=inspect-image\n", result
    finally:
        await sandbox._delete()
    with pytest.raises(ValueError, match="image must name an image"):
        await fresh(daemon, image="")
    with pytest.raises(Exception, match="offswitch-test/absent"):
        await fresh(daemon, image="offswitch-test/absent:1")


async def test_connection_attaches_a_shell(daemon):
    sandbox = await fresh(daemon)
    try:
        connection = await sandbox.connection(user="root")
        assert connection.type == "offswitch" and connection.container == sandbox.sandbox_id
        argv = shlex.split(connection.command)
        assert argv[:4] == ["offswitch", "sandbox", "attach", sandbox.sandbox_id] and "--socket" in argv, argv
        # The printed command, run with this build's CLI: a shell in that very sandbox.
        await sandbox.exec(["sh", "-c", "echo marked > /tmp/mark"])
        shell = subprocess.run([str(_binaries() / "offswitch"), *argv[1:]], input=b"cat /tmp/mark; id -u; exit\n",
                               capture_output=True, timeout=60)
        assert shell.returncode == 0 and b"marked" in shell.stdout and b"\n0\r\n" in shell.stdout, shell
    finally:
        await sandbox._delete()


def test_declared_docker_compatible():
    from inspect_ai.util._sandbox.compose import is_docker_compatible_sandbox_type

    # So that `--sandbox offswitch` takes over tasks declaring sandbox="docker" with a compose file.
    assert is_docker_compatible_sandbox_type("offswitch")
    assert "compose.yaml" in OffswitchSandboxEnvironment.config_files() and "Dockerfile" in OffswitchSandboxEnvironment.config_files()
    assert OffswitchSandboxEnvironment.default_concurrency() >= 2
