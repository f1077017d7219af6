"""Several compose services in one sample: one sandbox each, one shared loopback (the pod model),
names through /etc/hosts, healthchecks before the sample starts, and no route to the host."""

from __future__ import annotations

import socket
import subprocess
import textwrap
import threading

import pytest

from inspect_offswitch import OffswitchSandboxEnvironment
from inspect_offswitch._compose import ComposeError

from conftest import sandboxes

CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
    print("reached")
except OSError as error:
    print(error.strerror)
"""


def host_address() -> str:
    """An address of this host off loopback (where a test server listens), else TEST-NET-1."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True).stdout.split()
    return out[out.index("inet") + 1].split("/")[0] if "inet" in out else "192.0.2.1"


@pytest.fixture
def host_server():
    server = socket.socket()
    server.bind(("0.0.0.0", 0))
    server.listen()
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    yield server.getsockname()[1], accepted
    server.close()


async def test_two_services_share_a_loopback_and_reach_nothing_else(daemon, debian_image, tmp_path, host_server):
    port, accepted = host_server
    compose = tmp_path / "compose.yaml"
    compose.write_text(textwrap.dedent(f"""
        services:
          default:
            image: {debian_image}
            command: tail -f /dev/null
            init: true
            network_mode: none
            depends_on: {{web: {{condition: service_healthy}}}}
          web:
            image: {debian_image}
            working_dir: /srv/site
            command: python3 -m http.server 8080 --bind 127.0.0.1
            healthcheck:
              test: ["CMD", "python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/')"]
              interval: 1s
              start_period: 30s
              start_interval: 200ms
    """))
    await OffswitchSandboxEnvironment.task_init("services", str(compose))
    environments = await OffswitchSandboxEnvironment.sample_init("services", str(compose), {})
    try:
        assert list(environments) == ["default", "web"]
        default, web = environments["default"], environments["web"]
        await web.write_file("index.html", "served by web\n")
        assert await web.read_file("/srv/site/index.html") == "served by web\n"
        fetched = await default.exec(["python3", "-c", "import urllib.request; print(urllib.request.urlopen('http://web:8080/').read().decode(), end='')"])
        assert fetched.stdout == "served by web\n", fetched
        assert (await default.exec(["getent", "hosts", "web"])).stdout.split()[0] == "127.0.0.1"
        # Neither service reaches the host, where a server listens on every address.
        for environment in (default, web):
            tried = await environment.exec(["python3", "-c", CONNECT, host_address(), str(port)])
            assert tried.stdout.strip() == "Network is unreachable", tried
        assert accepted == []
    finally:
        await OffswitchSandboxEnvironment.sample_cleanup("services", str(compose), environments, False)
    assert sandboxes(daemon) == []


async def test_an_unhealthy_service_stops_the_sample_and_leaves_nothing(daemon, debian_image, tmp_path):
    compose = tmp_path / "compose.yaml"
    compose.write_text(textwrap.dedent(f"""
        services:
          default:
            image: {debian_image}
            healthcheck: {{test: "exit 1", interval: 100ms, retries: 2}}
    """))
    with pytest.raises(ComposeError, match=r"services.default.healthcheck: unhealthy after 2 failed checks"):
        await OffswitchSandboxEnvironment.sample_init("services", str(compose), {})
    assert sandboxes(daemon) == []


async def test_refused_fields_name_the_file(daemon, tmp_path):
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  default:\n    image: x:1\n    ports: ['8080:80']\n")
    with pytest.raises(ComposeError, match=f"{compose}: services.default.ports: published ports"):
        await OffswitchSandboxEnvironment.task_init("services", str(compose))
