"""A compose service's image in offswitchd's store: built by a builder on this host, or pulled.

`build:` is done by the first builder found, in this order: buildah, then docker (when its daemon
answers), then podman; `$INSPECT_OFFSWITCH_BUILDER` names one instead. The builder resolves
`FROM` itself (its own storage, or a registry it can reach), exports the result as an archive,
and the archive is uploaded to offswitchd's store (`POST /v1/images`). The image's name there is
`localhost/inspect-offswitch/SERVICE:KEY`, KEY a digest of everything the build reads (the
builder, the Dockerfile, the arguments, the target and every file of the context), so an
unchanged build is found in the store and not done again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import urllib.parse
from pathlib import Path

from ._client import OffswitchAPIError, OffswitchClient
from ._compose import Build, ComposeError, Service

logger = logging.getLogger(__name__)

BUILDERS = ("buildah", "docker", "podman")

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


class BuildError(RuntimeError):
    """A build failed: the message names the service, the builder's command and its output's end."""


def find_builder() -> str:
    """The builder to use: $INSPECT_OFFSWITCH_BUILDER, else buildah, docker (its daemon running), podman."""
    chosen = os.environ.get("INSPECT_OFFSWITCH_BUILDER")
    if chosen:
        if chosen not in BUILDERS:
            raise BuildError(f"INSPECT_OFFSWITCH_BUILDER={chosen!r}: not one of {', '.join(BUILDERS)}")
        if shutil.which(chosen) is None:
            raise BuildError(f"INSPECT_OFFSWITCH_BUILDER={chosen!r}: {chosen} is not on PATH")
        return chosen
    for builder in BUILDERS:
        if shutil.which(builder) is None:
            continue
        if builder == "docker":
            answered = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, timeout=30)
            if answered.returncode != 0:
                continue
        return builder
    raise BuildError("a compose service has build:, and no builder was found: install buildah (apt-get install buildah), "
                     "docker or podman, or give the service an image: of offswitchd's store")


def cache_key(build: Build, builder: str) -> str:
    """A digest of everything the build reads."""
    digest = hashlib.sha256()

    def put(*parts: str | bytes) -> None:
        for part in parts:
            data = part.encode("utf-8", "surrogateescape") if isinstance(part, str) else part
            digest.update(len(data).to_bytes(8, "big"))
            digest.update(data)

    put("inspect-offswitch build 1", builder, build.dockerfile.read_bytes(), build.target or "", build.network or "")
    for key, value in build.args:
        put("arg", key, value)
    root = build.context
    for directory, subdirectories, files in os.walk(root, followlinks=False):
        subdirectories.sort()
        for name in sorted(files + [d for d in subdirectories if os.path.islink(os.path.join(directory, d))]):
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, root)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                put("link", relative, os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                file_digest = hashlib.sha256()
                with open(path, "rb") as handle:
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        file_digest.update(chunk)
                put("file", relative, oct(info.st_mode & 0o7777), file_digest.digest())
        for name in subdirectories:
            put("dir", os.path.relpath(os.path.join(directory, name), root))
    return digest.hexdigest()


def image_name(service: str, key: str) -> str:
    safe = re.sub(r"[^a-z0-9._-]", "-", service.lower()).strip(".-_") or "service"
    return f"localhost/inspect-offswitch/{safe}:{key[:24]}"


def has_image(client: OffswitchClient, reference: str) -> bool:
    try:
        client.json("GET", "/v1/images/" + urllib.parse.quote(reference, safe=""))
        return True
    except OffswitchAPIError as error:
        if error.status == 404:
            return False
        raise


def ensure_image(client: OffswitchClient, service: Service, source: str) -> str:
    """The reference of the service's image in offswitchd's store, built or pulled if needed."""
    if service.build is not None:
        return _ensure_built(client, service, source)
    assert service.image is not None
    if has_image(client, service.image):
        if service.pull_policy != "always":
            return service.image
    elif service.pull_policy == "never":
        raise ComposeError(f"{source}: services.{service.name}.image: {service.image} is not in offswitchd's store and pull_policy is never "
                           "(offswitch image import or offswitch image pull)")
    logger.warning(f"offswitch sandbox: pulling {service.image} into offswitchd's store for service {service.name}")
    try:
        client.json("POST", "/v1/images", {"pull": service.image})
    except OffswitchAPIError as error:
        raise ComposeError(f"{source}: services.{service.name}.image: {service.image}: {error.message} ({error.code})") from error
    return service.image


def _ensure_built(client: OffswitchClient, service: Service, source: str) -> str:
    build = service.build
    assert build is not None
    builder = find_builder()
    key = cache_key(build, builder)
    name = image_name(service.name, key)
    with _locks_guard:
        lock = _locks.setdefault(name, threading.Lock())
    with lock:
        if not build.no_cache and has_image(client, name):
            return name
        logger.warning(f"offswitch sandbox: building service {service.name} of {source} with {builder} as {name}")
        with tempfile.TemporaryDirectory(prefix="inspect-offswitch-build-") as work:
            archive = Path(work) / "image.tar"
            _run(service, builder, _build_command(builder, build, name))
            _run(service, builder, _export_command(builder, name, archive))
            try:
                client.upload("/v1/images", archive, query={"tag": name})
            except OffswitchAPIError as error:
                raise BuildError(f"services.{service.name}: offswitchd refused the built image: {error.message} ({error.code})") from error
    return name


def _build_command(builder: str, build: Build, name: str) -> list[str]:
    command = [builder, "bud" if builder == "buildah" else "build", "-f", str(build.dockerfile), "-t", name]
    for key, value in build.args:
        command += ["--build-arg", f"{key}={value}"]
    if build.target:
        command += ["--target", build.target]
    if build.no_cache:
        command.append("--no-cache")
    if build.pull:
        command.append("--pull" if builder == "docker" else "--pull-always")
    if build.network:
        command += ["--network", build.network]
    return command + [str(build.context)]


def _export_command(builder: str, name: str, archive: Path) -> list[str]:
    if builder == "buildah":
        return ["buildah", "push", "--quiet", name, f"oci-archive:{archive}"]
    if builder == "podman":
        return ["podman", "save", "--format", "oci-archive", "-o", str(archive), name]
    return ["docker", "save", "-o", str(archive), name]


def _run(service: Service, builder: str, command: list[str]) -> None:
    done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-20:])
        raise BuildError(f"services.{service.name}: `{' '.join(command)}` failed (exit {done.returncode}):\n{tail}")
    logger.info(f"offswitch sandbox: {builder}: {output[-2000:]}")
