"""A compose project's services as one sample's sandboxes (the pod model): the first sandbox made
has its own network namespace with loopback only, the others join it (`network: sandbox:ID`), and
every service's name resolves to 127.0.0.1 in every sandbox's /etc/hosts. Nothing has a route
off that loopback. Each service's process (its entrypoint and command, as Docker would run them)
is started in the background, and the sample starts once every healthcheck passes."""

from __future__ import annotations

import logging
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from ._build import ensure_image
from ._client import OffswitchAPIError, OffswitchClient
from ._compose import ComposeError, Project, Service, start_order

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """A project with each service's image in offswitchd's store and that image's configuration."""

    project: Project
    images: dict[str, str]
    configs: dict[str, dict[str, Any]]


def prepare(client: OffswitchClient, project: Project) -> Prepared:
    """Builds or pulls what the project's services need (blocking; once per task)."""
    images: dict[str, str] = {}
    configs: dict[str, dict[str, Any]] = {}
    for service in project.services:
        reference = ensure_image(client, service, project.source)
        record = client.json("GET", "/v1/images/" + urllib.parse.quote(reference, safe=""))
        images[service.name] = reference
        configs[service.name] = record.get("config") or {}
    return Prepared(project=project, images=images, configs=configs)


@dataclass(frozen=True)
class Started:
    """One service's sandbox as Inspect's environment needs it."""

    service: Service
    sandbox_id: str
    user: str
    workdir: str


def effective_user(service: Service, config: dict[str, Any], where: str) -> str:
    """Docker's user for commands: the service's `user`, else the image's `User`, else root;
    as an Offswitch sandbox user (root or user, uid 0 or 1000)."""
    text = service.user if service.user is not None else (config.get("User") or "root")
    name = text.split(":", 1)[0]
    if name in ("root", "0"):
        return "root"
    if name in ("user", "1000"):
        return "user"
    raise ComposeError(f"{where}: {text!r}: Offswitch sandboxes run commands as root (uid 0) or user (uid 1000)")


def create(client: OffswitchClient, prepared: Prepared, profile: str) -> list[Started]:
    """Creates the sample's sandboxes in dependency order; on failure deletes what it made."""
    project = prepared.project
    hosts: dict[str, str] = {}
    for service in project.services:
        hosts[service.hostname or service.name] = "127.0.0.1"
        hosts[service.name] = "127.0.0.1"
    started: list[Started] = []
    first: str | None = None
    try:
        for service in start_order(project):
            where = f"{project.source}: services.{service.name}"
            config = prepared.configs[service.name]
            user = effective_user(service, config, where + ".user")
            workdir = service.working_dir or config.get("WorkingDir") or "/"
            body: dict[str, Any] = {"profile": profile, "image": prepared.images[service.name],
                                    "hostname": service.hostname or service.name,
                                    "hosts": dict(hosts) | dict(service.extra_hosts)}
            if first is not None:
                body["network"] = f"sandbox:{first}"
            if service.environment:
                body["env"] = dict(service.environment)
            if service.limits:
                body["limits"] = dict(service.limits)
            if service.read_only:
                body["read_only"] = True
            if service.tmpfs:
                body["tmpfs"] = [dict(entry) for entry in service.tmpfs]
            for dependency, condition in service.depends_on:
                if condition == "service_healthy":
                    wait_healthy(client, next(s for s in started if s.service.name == dependency), project.source)
            try:
                created = client.json("POST", "/v1/sandboxes", body)
            except OffswitchAPIError as error:
                raise ComposeError(f"{where}: offswitchd could not create its sandbox: {error.message} ({error.code})") from error
            first = first or created["id"]
            one = Started(service=service, sandbox_id=created["id"], user=user, workdir=workdir)
            started.append(one)
            if service.working_dir:
                # Docker makes a missing working directory; so does the harness, before the agent.
                harness_exec(client, one, ["mkdir", "-p", service.working_dir], user="root", cwd="/")
            start_process(client, one, config, where)
        for one in started:
            if one.service.healthcheck is not None:
                wait_healthy(client, one, project.source)
    except BaseException:
        for one in started:
            try:
                client.request("DELETE", f"/v1/sandboxes/{one.sandbox_id}")
            except Exception:  # noqa: BLE001: the first error is the one to report
                pass
        raise
    return started


def harness_exec(client: OffswitchClient, one: Started, argv: list[str], *, user: str | None = None, cwd: str | None = None,
                 timeout: float | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"argv": argv, "user": user or one.user, "cwd": cwd or one.workdir, "origin": "harness", "output_limit": 65536}
    if timeout is not None:
        body["timeout"] = timeout
    return client.json("POST", f"/v1/sandboxes/{one.sandbox_id}/exec", body)


def start_process(client: OffswitchClient, one: Started, config: dict[str, Any], where: str) -> None:
    """The service's process, as Docker would start it: the entrypoint (the service's, else the
    image's) followed by the command (the service's, else the image's unless the service set its
    own entrypoint), in the working directory as the service's user, stdin and output /dev/null."""
    service = one.service
    entrypoint = list(service.entrypoint) if service.entrypoint is not None else list(config.get("Entrypoint") or [])
    if service.command is not None:
        command = list(service.command)
    else:
        command = [] if service.entrypoint is not None else list(config.get("Cmd") or [])
    argv = entrypoint + command
    if not argv:
        return
    launcher = ["/bin/sh", "-c", 'exec "$@" </dev/null >/dev/null 2>&1 &', "sh", *argv]
    reply = harness_exec(client, one, launcher)
    if reply.get("exit_code") != 0:
        raise ComposeError(f"{where}: could not start {' '.join(argv)!r}: {reply.get('stderr') or reply.get('exit_code')}")


def wait_healthy(client: OffswitchClient, one: Started, source: str) -> None:
    """Docker's healthcheck: the first pass makes the service healthy; `retries` failures in a row
    after the start period make it unhealthy, and the sample does not start."""
    check = one.service.healthcheck
    if check is None:
        return
    began = time.monotonic()
    failures = 0
    last = ""
    while True:
        reply = harness_exec(client, one, list(check.argv), timeout=check.timeout)
        if reply.get("exit_code") == 0 and not reply.get("timed_out"):
            return
        last = "timed out" if reply.get("timed_out") else f"exit {reply.get('exit_code')}: {(reply.get('stderr') or reply.get('stdout') or '').strip()[-300:]}"
        in_start = time.monotonic() - began < check.start_period
        if not in_start:
            failures += 1
            if failures >= check.retries:
                raise ComposeError(f"{source}: services.{one.service.name}.healthcheck: unhealthy after {failures} failed checks ({last})")
        time.sleep(check.start_interval if in_start else check.interval)
