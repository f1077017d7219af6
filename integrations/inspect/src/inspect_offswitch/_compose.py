"""Docker compose files, Dockerfiles and Inspect's ComposeConfig as Offswitch sandboxes.

Each service becomes a `Service`: what to build or run and how, field by field. A field is
honoured, refused (it would change what the sample sees and Offswitch cannot do it: a host bind
mount, published ports, `privileged`), or accepted with a warning (it changes nothing a sample
can observe here, or only how Docker manages the container). Errors and warnings name the field
and the file. docs/inspect.md in the Offswitch repository lists every field.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

logger = logging.getLogger(__name__)

COMPOSE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")

# A Dockerfile alone is what Inspect's docker sandbox synthesises a compose file for.
DOCKERFILE_SERVICE: dict[str, Any] = {"build": {"context": ".", "dockerfile": "Dockerfile"}, "command": "tail -f /dev/null",
                                      "init": True, "network_mode": "none", "stop_grace_period": "1s"}


class ComposeError(ValueError):
    """A compose file Offswitch cannot run as written: the message names the file and the field."""


@dataclass(frozen=True)
class Build:
    """A service's `build`: done by a builder on this host (see _build.py)."""

    context: Path
    dockerfile: Path
    args: tuple[tuple[str, str], ...] = ()
    target: str | None = None
    no_cache: bool = False
    pull: bool = False
    # The network of the build's RUN steps: none, host, or None for the builder's default.
    network: str | None = None


@dataclass(frozen=True)
class Healthcheck:
    """`healthcheck`: the sample starts once the test passes (Docker's `healthy`)."""

    argv: tuple[str, ...]
    interval: float = 30.0
    timeout: float = 30.0
    retries: int = 3
    start_period: float = 0.0
    start_interval: float = 5.0


@dataclass(frozen=True)
class Service:
    name: str
    image: str | None
    build: Build | None
    # Docker's argv for the service's process: None keeps the image's Entrypoint/Cmd.
    entrypoint: tuple[str, ...] | None
    command: tuple[str, ...] | None
    user: str | None
    working_dir: str | None
    environment: tuple[tuple[str, str], ...]
    read_only: bool
    tmpfs: tuple[dict[str, Any], ...]
    limits: dict[str, Any]
    healthcheck: Healthcheck | None
    hostname: str | None
    extra_hosts: tuple[tuple[str, str], ...]
    depends_on: tuple[tuple[str, str], ...]
    default: bool
    pull_policy: str | None


@dataclass(frozen=True)
class Project:
    """A compose file's services, the default first (Inspect's `default` environment)."""

    source: str
    services: tuple[Service, ...]
    warnings: tuple[str, ...] = field(default=())
    # The top-level `x-offswitch` mapping: `profile` (docker unless given) and `socket`.
    profile: str = "docker"
    socket: str | None = None


# -- loading -------------------------------------------------------------------------------------


def is_compose_file(path: str) -> bool:
    name = Path(path).name
    return name in COMPOSE_NAMES or bool(re.search(r"[-.]compose\.ya?ml$", name))


def is_dockerfile(path: str) -> bool:
    p = Path(path)
    return p.stem == "Dockerfile" or p.suffix == ".Dockerfile"


def load(config: Any, base: Path | None = None) -> Project:
    """A compose file or Dockerfile path, or a ComposeConfig (or its dict), as a Project."""
    if isinstance(config, str):
        path = Path(config)
        if not path.is_absolute():
            path = (base or Path.cwd()) / path
        if is_dockerfile(str(path)):
            if not path.is_file():
                raise ComposeError(f"{path}: no such Dockerfile")
            service = dict(DOCKERFILE_SERVICE, build={"context": str(path.parent), "dockerfile": path.name})
            return parse({"services": {"default": service}}, source=str(path), directory=path.parent)
        if not path.is_file():
            raise ComposeError(f"{path}: no such compose file")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise ComposeError(f"{path}: not YAML: {error}") from error
        return parse(raw, source=str(path), directory=path.parent)
    if isinstance(config, BaseModel):
        raw = config.model_dump(by_alias=True, exclude_none=True)
        return parse(raw, source="the task's ComposeConfig", directory=base or Path.cwd())
    if isinstance(config, dict):
        return parse(config, source="the task's compose configuration", directory=base or Path.cwd())
    raise ComposeError(f"offswitch sandbox: cannot read a compose configuration from a {type(config).__name__}")


def parse(raw: Any, *, source: str, directory: Path) -> Project:
    if not isinstance(raw, dict):
        raise ComposeError(f"{source}: not a compose file (its top level is not a mapping)")
    for key in raw:
        if key in ("services", "version", "name") or str(key).startswith("x-"):
            continue
        if key == "networks":
            _networks_top(raw[key], source)
        elif key == "volumes":
            if raw[key]:
                raise ComposeError(f"{source}: volumes: named volumes are not supported by Offswitch (a sandbox's files are its own)")
        else:
            raise ComposeError(f"{source}: {key}: not supported by Offswitch")
    services = raw.get("services")
    if not isinstance(services, dict) or not services:
        raise ComposeError(f"{source}: services: must name at least one service")
    notes: list[str] = []
    parsed = [_service(str(name), spec or {}, source, directory, notes) for name, spec in services.items()]
    # As Inspect's docker sandbox: the default is the service marked x-default, else `default`.
    defaults = [s for s in parsed if s.default]
    if len(defaults) > 1:
        raise ComposeError(f"{source}: x-default: set on {', '.join(s.name for s in defaults)}; only one service can be the default")
    named = [s for s in parsed if s.name == "default"]
    if not defaults and not named:
        raise ComposeError(f"{source}: services: no service is named 'default' and none has x-default: true")
    first = defaults[0] if defaults else named[0]
    ordered = [first] + [s for s in parsed if s is not first]
    names = {s.name for s in parsed}
    for service in parsed:
        for dependency, _ in service.depends_on:
            if dependency not in names:
                raise ComposeError(f"{source}: services.{service.name}.depends_on: no service named {dependency!r}")
    options = raw.get("x-offswitch") or {}
    if not isinstance(options, dict) or any(key not in ("profile", "socket") for key in options):
        raise ComposeError(f"{source}: x-offswitch: a mapping of profile and socket")
    for note in notes:
        logger.warning(note)
    return Project(source=source, services=tuple(ordered), warnings=tuple(notes), profile=str(options.get("profile", "docker")),
                   socket=options.get("socket"))


def _networks_top(value: Any, source: str) -> None:
    for name, spec in (value or {}).items():
        spec = spec or {}
        if spec.get("external"):
            raise ComposeError(f"{source}: networks.{name}.external: an Offswitch sample has no network but its own loopback")


# Fields that change nothing a sample can observe on Offswitch, or only how Docker manages the
# container: accepted, with a warning when they ask for something Offswitch does differently.
_HARMLESS = {"container_name", "labels", "stop_signal", "stop_grace_period", "tty", "stdin_open", "expose", "logging",
             "restart", "domainname", "mem_reservation", "oom_score_adj", "platform"}

# Fields Offswitch cannot honour, with why: they would change what the sample sees.
_REFUSED = {
    "ports": "published ports reach the host; an Offswitch sample has no route to the host",
    "volumes": "host bind mounts and volumes are not supported (a sandbox's files are its own)",
    "devices": "host devices are not passed into sandboxes",
    "cap_add": "capabilities come from the sandbox profile (docs/profiles.md); choose the profile instead",
    "cap_drop": "capabilities come from the sandbox profile (docs/profiles.md); choose the profile instead",
    "security_opt": "seccomp and no_new_privileges come from the sandbox profile (docs/profiles.md); choose the profile instead",
    "runtime": "Offswitch is the runtime",
    "cgroup": "every sandbox has its own cgroup namespace",
    "cgroup_parent": "every sandbox has its own cgroup",
    "pid": "every sandbox has its own PID namespace",
    "ipc": "every sandbox has its own IPC namespace",
    "userns_mode": "every sandbox has its own user namespace",
    "uts": "every sandbox has its own UTS namespace",
    "sysctls": "sysctls are not set per sandbox",
    "secrets": "secrets are not supported; put files in the sample",
    "configs": "configs are not supported; put files in the sample",
    "links": "services reach each other by name over the shared loopback; links are not needed",
    "external_links": "an Offswitch sample reaches nothing outside its own services",
    "dns": "an Offswitch sample has no network to resolve names on",
    "dns_search": "an Offswitch sample has no network to resolve names on",
    "mac_address": "an Offswitch sample has no network interface but loopback",
    "shm_size": "/dev/shm is sized by the sandbox's memory limit",
    "memswap_limit": "swap follows the memory limit",
    "storage_opt": "the writable layer is sized by the profile (limits.upper_mib)",
    "gpus": "GPUs are not passed into sandboxes",
    "extends": "extends is not supported; write the service out",
    "profiles": "compose profiles are not supported",
    "scale": "one sandbox per service",
}


def _service(name: str, spec: dict[str, Any], source: str, directory: Path, notes: list[str]) -> Service:
    if not isinstance(spec, dict):
        raise ComposeError(f"{source}: services.{name}: must be a mapping")

    def where(key: str) -> str:
        return f"{source}: services.{name}.{key}"

    known = {"image", "build", "command", "entrypoint", "working_dir", "environment", "env_file", "user", "healthcheck",
             "network_mode", "networks", "hostname", "init", "privileged", "read_only", "tmpfs", "deploy", "mem_limit", "cpus",
             "pids_limit", "ulimits", "depends_on", "extra_hosts", "pull_policy", "x-default"}
    for key, value in spec.items():
        if key in known or key in _HARMLESS or str(key).startswith("x-"):
            continue
        reason = _REFUSED.get(key)
        if reason is not None:
            if value in (None, [], {}, False):
                continue
            raise ComposeError(f"{where(key)}: {reason}")
        raise ComposeError(f"{where(key)}: not a compose field Offswitch knows")
    if spec.get("restart") not in (None, "no", False):
        notes.append(f"{where('restart')}: {spec['restart']!r} is not applied: a sandbox whose PID 1 ends stays ended for its sample")
    if spec.get("privileged"):
        raise ComposeError(f"{where('privileged')}: privileged sandboxes do not exist in Offswitch")
    if spec.get("init") is False:
        notes.append(f"{where('init')}: false is not applied: a sandbox's PID 1 is always offswitch-init, which reaps as Docker's init does")
    platform = spec.get("platform")
    if platform and not str(platform).startswith("linux/"):
        raise ComposeError(f"{where('platform')}: {platform!r}: sandboxes run this host's Linux")

    image = spec.get("image")
    if image is not None and (not isinstance(image, str) or not image):
        raise ComposeError(f"{where('image')}: must be an image reference")
    build = _build(spec.get("build"), where("build"), directory) if spec.get("build") is not None else None
    if image is None and build is None:
        raise ComposeError(f"{source}: services.{name}: needs image or build")

    network_mode = spec.get("network_mode")
    if network_mode not in (None, "none") and not str(network_mode).startswith("service:"):
        raise ComposeError(f"{where('network_mode')}: {network_mode!r}: an Offswitch sample's services share one loopback and have no other network (use none)")
    networks = spec.get("networks")
    if networks:
        notes.append(f"{where('networks')}: every service of a sample shares one loopback; the networks named are not kept apart")

    environment = list(_environment(spec.get("environment"), where("environment")))
    for path in _as_list(spec.get("env_file"), where("env_file")):
        environment = list(_env_file(directory / path, where("env_file"))) + environment
    merged = dict(environment)

    limits: dict[str, Any] = {}
    deploy = spec.get("deploy") or {}
    for key in deploy:
        if key not in ("resources",) and not str(key).startswith("x-"):
            notes.append(f"{where('deploy.' + key)}: not applied (swarm deployment)")
    resources = deploy.get("resources") or {}
    for key in resources:
        if key == "reservations":
            notes.append(f"{where('deploy.resources.reservations')}: reservations are not applied; only limits are")
        elif key != "limits":
            raise ComposeError(f"{where('deploy.resources.' + key)}: not supported")
    limit_spec = resources.get("limits") or {}
    for key in limit_spec:
        if key not in ("cpus", "memory", "pids"):
            raise ComposeError(f"{where('deploy.resources.limits.' + key)}: not supported (cpus, memory and pids are)")
    cpus = limit_spec.get("cpus", spec.get("cpus"))
    if cpus is not None:
        try:
            limits["cpus"] = float(cpus)
        except (TypeError, ValueError) as error:
            raise ComposeError(f"{where('cpus')}: {cpus!r} is not a number of CPUs") from error
        if limits["cpus"] <= 0:
            raise ComposeError(f"{where('cpus')}: {cpus!r} must be more than 0")
    memory = limit_spec.get("memory", spec.get("mem_limit"))
    if memory is not None:
        limits["memory_mib"] = max(1, math.ceil(memory_bytes(memory, where("mem_limit")) / (1 << 20)))
    pids = limit_spec.get("pids", spec.get("pids_limit"))
    if pids is not None and int(pids) > 0:
        limits["pids"] = int(pids)
    ulimits = spec.get("ulimits") or {}
    for key, value in ulimits.items():
        if key != "nofile":
            raise ComposeError(f"{where('ulimits.' + key)}: not supported (nofile is)")
        hard = value.get("hard", value.get("soft")) if isinstance(value, dict) else value
        limits["open_files"] = int(hard)

    tmpfs = tuple(_tmpfs(entry, where("tmpfs")) for entry in _as_list(spec.get("tmpfs"), where("tmpfs")))

    user = spec.get("user")
    if user is not None:
        user = str(user)
    working_dir = spec.get("working_dir")
    if working_dir is not None and not str(working_dir).startswith("/"):
        raise ComposeError(f"{where('working_dir')}: {working_dir!r} must be an absolute path")

    extra_hosts = tuple(_extra_hosts(spec.get("extra_hosts"), where("extra_hosts")))
    depends_on = tuple(_depends_on(spec.get("depends_on"), where("depends_on")))
    pull_policy = spec.get("pull_policy")
    if pull_policy not in (None, "missing", "if_not_present", "never", "always", "build"):
        raise ComposeError(f"{where('pull_policy')}: {pull_policy!r} is not a pull policy")
    default = spec.get("x-default", False)
    if not isinstance(default, bool):
        raise ComposeError(f"{where('x-default')}: must be true or false")
    return Service(
        name=name, image=image, build=build,
        entrypoint=_argv(spec.get("entrypoint"), where("entrypoint")) if "entrypoint" in spec else None,
        command=_argv(spec.get("command"), where("command")) if "command" in spec else None,
        user=user, working_dir=working_dir, environment=tuple(merged.items()), read_only=bool(spec.get("read_only", False)),
        tmpfs=tmpfs, limits=limits, healthcheck=_healthcheck(spec.get("healthcheck"), where("healthcheck")),
        hostname=spec.get("hostname"), extra_hosts=extra_hosts, depends_on=depends_on, default=default, pull_policy=pull_policy,
    )


def _build(value: Any, where: str, directory: Path) -> Build:
    if isinstance(value, str):
        value = {"context": value}
    if not isinstance(value, dict):
        raise ComposeError(f"{where}: must be a path or a mapping")
    for key in value:
        if key not in ("context", "dockerfile", "args", "target", "no_cache", "pull", "network") and not str(key).startswith("x-"):
            raise ComposeError(f"{where}.{key}: not supported (context, dockerfile, args, target, no_cache, pull and network are)")
    network = value.get("network")
    if network not in (None, "none", "host", "default"):
        raise ComposeError(f"{where}.network: {network!r}: a build's RUN steps have none, host or the builder's default network")
    context_text = str(value.get("context", "."))
    if "://" in context_text or context_text.startswith("git@"):
        raise ComposeError(f"{where}.context: {context_text!r}: only a local directory can be built")
    context = Path(context_text)
    if not context.is_absolute():
        context = directory / context
    context = context.resolve()
    if not context.is_dir():
        raise ComposeError(f"{where}.context: {context} is not a directory")
    dockerfile = Path(str(value.get("dockerfile", "Dockerfile")))
    if not dockerfile.is_absolute():
        dockerfile = context / dockerfile
    if not dockerfile.is_file():
        raise ComposeError(f"{where}.dockerfile: {dockerfile} does not exist")
    args = value.get("args") or {}
    if isinstance(args, list):
        pairs = []
        for entry in args:
            key, sep, val = str(entry).partition("=")
            if not sep:
                val = os.environ.get(key)
                if val is None:
                    continue
            pairs.append((key, val))
        args = dict(pairs)
    if not isinstance(args, dict):
        raise ComposeError(f"{where}.args: must be a mapping or a list of NAME=VALUE")
    resolved = []
    for key, val in args.items():
        if val is None:
            val = os.environ.get(str(key))
            if val is None:
                continue
        resolved.append((str(key), str(val)))
    target = value.get("target")
    return Build(context=context, dockerfile=dockerfile.resolve(), args=tuple(sorted(resolved)), target=str(target) if target else None,
                 no_cache=bool(value.get("no_cache", False)), pull=bool(value.get("pull", False)),
                 network=None if network in (None, "default") else network)


def _argv(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        try:
            return tuple(shlex.split(value))
        except ValueError as error:
            raise ComposeError(f"{where}: {error}") from error
    if isinstance(value, list):
        return tuple(str(part) for part in value)
    raise ComposeError(f"{where}: must be a string or a list")


def _as_list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, dict)):
        return [value]
    if isinstance(value, list):
        return value
    raise ComposeError(f"{where}: must be a string or a list")


def _environment(value: Any, where: str):
    if value is None:
        return
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = []
        for entry in value:
            key, sep, val = str(entry).partition("=")
            items.append((key, val if sep else None))
    else:
        raise ComposeError(f"{where}: must be a mapping or a list of NAME=VALUE")
    for key, val in items:
        if val is None:
            # Compose passes the variable through from the caller's environment, or leaves it out.
            val = os.environ.get(str(key))
            if val is None:
                continue
        if isinstance(val, bool):
            val = "true" if val else "false"
        yield str(key), str(val)


def _env_file(path: Path, where: str):
    if isinstance(path, dict):
        raise ComposeError(f"{where}: the long form is not supported; give paths")
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ComposeError(f"{where}: {path}: {error.strerror}") from error
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):]
        key, sep, val = line.partition("=")
        if not sep:
            continue
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] and val[0] in "\"'":
            val = val[1:-1]
        if not key.strip():
            raise ComposeError(f"{where}: {path}:{number}: no variable name")
        yield key.strip(), val


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "t": 1 << 40, "tb": 1 << 40}


def memory_bytes(value: Any, where: str) -> int:
    """Docker's memory sizes: a number of bytes, or 256m, 1g, 512k (any case, b optional)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in _UNITS:
        raise ComposeError(f"{where}: {value!r} is not a size such as 256m or 1g")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)")


def duration_seconds(value: Any, where: str) -> float:
    """Compose durations: 30s, 1m30s, 500ms, 1h (a bare number is seconds)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ComposeError(f"{where}: {value!r} is not a duration such as 30s or 1m30s")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(number) * scale[unit] for number, unit in parts)


def _healthcheck(value: Any, where: str) -> Healthcheck | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ComposeError(f"{where}: must be a mapping")
    for key in value:
        if key not in ("test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"):
            raise ComposeError(f"{where}.{key}: not a healthcheck field")
    if value.get("disable"):
        return None
    test = value.get("test")
    if isinstance(test, str):
        argv: tuple[str, ...] = ("/bin/sh", "-c", test)
    elif isinstance(test, list) and test:
        kind, rest = str(test[0]), [str(t) for t in test[1:]]
        if kind == "NONE":
            return None
        if kind == "CMD":
            argv = tuple(rest)
        elif kind == "CMD-SHELL":
            argv = ("/bin/sh", "-c", " ".join(rest))
        else:
            raise ComposeError(f"{where}.test: must start with CMD, CMD-SHELL or NONE, not {kind!r}")
    else:
        raise ComposeError(f"{where}.test: a healthcheck needs a test")
    if not argv:
        raise ComposeError(f"{where}.test: names no command")
    retries = int(value.get("retries", 3))
    if retries < 1:
        raise ComposeError(f"{where}.retries: must be at least 1")
    return Healthcheck(
        argv=argv,
        interval=duration_seconds(value.get("interval", "30s"), where + ".interval"),
        timeout=duration_seconds(value.get("timeout", "30s"), where + ".timeout"),
        retries=retries,
        start_period=duration_seconds(value.get("start_period", "0s"), where + ".start_period"),
        start_interval=duration_seconds(value.get("start_interval", "5s"), where + ".start_interval"),
    )


def _tmpfs(entry: Any, where: str) -> dict[str, Any]:
    # Short form "/run:size=64m,mode=1777"; Docker's options besides size and mode are refused.
    text = str(entry)
    path, _, options = text.partition(":")
    result: dict[str, Any] = {"path": path}
    for option in filter(None, options.split(",")):
        key, _, val = option.partition("=")
        if key == "size":
            result["size_mib"] = max(1, math.ceil(memory_bytes(val, f"{where} {text!r} size") / (1 << 20)))
        elif key == "mode":
            result["mode"] = val
        elif key in ("rw", "noexec", "nosuid", "nodev", "exec", "suid", "dev"):
            continue
        else:
            raise ComposeError(f"{where}: {text!r}: the option {key!r} is not supported (size and mode are)")
    if not path.startswith("/"):
        raise ComposeError(f"{where}: {text!r}: the path must be absolute")
    return result


def _extra_hosts(value: Any, where: str):
    if value is None:
        return
    items = value.items() if isinstance(value, dict) else [re.split(r"[:=]", str(e), maxsplit=1) for e in value]
    for pair in items:
        if len(pair) != 2:
            raise ComposeError(f"{where}: {pair!r} is not HOST:ADDRESS")
        yield str(pair[0]), str(pair[1])


def _depends_on(value: Any, where: str):
    if value is None:
        return
    if isinstance(value, list):
        for name in value:
            yield str(name), "service_started"
    elif isinstance(value, dict):
        for name, spec in value.items():
            condition = (spec or {}).get("condition", "service_started")
            if condition == "service_completed_successfully":
                raise ComposeError(f"{where}.{name}.condition: service_completed_successfully is not supported (service_started and service_healthy are)")
            if condition not in ("service_started", "service_healthy"):
                raise ComposeError(f"{where}.{name}.condition: {condition!r} is not a compose condition")
            yield str(name), condition
    else:
        raise ComposeError(f"{where}: must be a list or a mapping")


def start_order(project: Project) -> list[Service]:
    """Services in an order that starts each after what it depends on (compose's order)."""
    by_name = {s.name: s for s in project.services}
    done: list[Service] = []
    visiting: set[str] = set()

    def visit(service: Service) -> None:
        if service in done:
            return
        if service.name in visiting:
            raise ComposeError(f"{project.source}: services.{service.name}.depends_on: a cycle")
        visiting.add(service.name)
        for dependency, _ in service.depends_on:
            visit(by_name[dependency])
        visiting.discard(service.name)
        done.append(service)

    for service in project.services:
        visit(service)
    return done
