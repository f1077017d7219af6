"""A real offswitchd for the tests: started once per session on a private socket and state
directory (needs root, as offswitchd does), stopped at the end with every sandbox it held."""

from __future__ import annotations

import os
import shutil
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


BASE = "localhost/offswitch-test/debian:bookworm"
# debootstrap's output, kept between runs of the tests on one machine (it takes a minute).
CACHE = Path("/var/tmp/offswitch-test-debian-bookworm-sudo-python3.tar")


def _mirror() -> str:
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    return "http://deb.debian.org/debian"


@pytest.fixture(scope="session")
def debian_layout(tmp_path_factory) -> Path:
    """An OCI layout of Debian 12 minbase with sudo and python3 (debootstrap from the host's mirror)."""
    for tool in ("buildah", "debootstrap", "umoci", "skopeo", "runc"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: `make deps` installs it for the tests (scripts/deps.sh)")
    work = tmp_path_factory.mktemp("debian")
    if not CACHE.exists():
        rootfs = work / "rootfs"
        subprocess.run(["debootstrap", "--variant=minbase", "--include=sudo,python3", "bookworm", str(rootfs), _mirror()],
                       check=True, stdout=subprocess.DEVNULL)
        partial = CACHE.with_suffix(".partial")
        subprocess.run(["tar", "--numeric-owner", "--exclude=./dev/*", "-C", str(rootfs), "-cf", str(partial), "."], check=True)
        partial.rename(CACHE)
        shutil.rmtree(rootfs)
    layout = work / "layout"
    subprocess.run(["bash", "-euo", "pipefail", "-c", f"""
        umoci init --layout {layout} && umoci new --image {layout}:b
        umoci raw add-layer --image {layout}:b {CACHE}
        umoci config --image {layout}:b --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --config.cmd /bin/bash
        """], check=True, stdout=subprocess.DEVNULL)
    return layout


@pytest.fixture(scope="session")
def debian_image(daemon, debian_layout, tmp_path_factory) -> str:
    """BASE in offswitchd's store (uploaded as `docker save` would have it)."""
    archive = tmp_path_factory.mktemp("debian-archive") / "image.tar"
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{debian_layout}:b", f"docker-archive:{archive}:{BASE}"], check=True)
    OffswitchClient(socket_path=daemon).upload("/v1/images", archive, query={"tag": BASE})
    archive.unlink()
    return BASE


@pytest.fixture(scope="session")
def builder_storage(debian_layout, tmp_path_factory) -> Path:
    """buildah with a private storage (CONTAINERS_STORAGE_CONF) holding BASE, as a Dockerfile's FROM finds it."""
    work = tmp_path_factory.mktemp("builder")
    conf = work / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{work}/graph"\nrunroot = "{work}/run"\n')
    os.environ["CONTAINERS_STORAGE_CONF"] = str(conf)
    os.environ["INSPECT_OFFSWITCH_BUILDER"] = "buildah"
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{debian_layout}:b", f"containers-storage:{BASE}"], check=True)
    yield work
    subprocess.run(["buildah", "rm", "--all"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["buildah", "rmi", "--all", "--force"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["umount", "-R", f"{work}/graph/overlay"], stderr=subprocess.DEVNULL)
