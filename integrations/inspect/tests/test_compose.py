"""Compose files as Offswitch reads them, field by field (pure: no daemon, no root)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from inspect_ai.util._sandbox.compose import ComposeConfig

from inspect_offswitch._build import cache_key, image_name
from inspect_offswitch._compose import ComposeError, duration_seconds, load, memory_bytes, start_order
from inspect_offswitch._services import effective_user


def compose(tmp_path: Path, text: str, dockerfile: bool = True) -> str:
    if dockerfile:
        (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    path = tmp_path / "compose.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_palisade_style_fields_are_honoured(tmp_path):
    project = load(compose(tmp_path, """
        services:
          default:
            build: {context: ., dockerfile: Dockerfile, args: {A: "1"}, target: final, network: none}
            command: tail -f /dev/null
            init: true
            network_mode: none
            user: user
            working_dir: /home/user
            environment: [LANG=C.UTF-8, EMPTY=]
            read_only: true
            tmpfs: ["/scratch:size=64m,mode=1770"]
            deploy: {resources: {limits: {cpus: "0.5", memory: 256M}}}
            healthcheck: {test: ["CMD-SHELL", "true"], interval: 1m30s, retries: 2}
    """))
    (service,) = project.services
    assert service.name == "default" and service.image is None
    assert service.build.context == tmp_path.resolve() and service.build.args == (("A", "1"),) and service.build.target == "final"
    assert service.build.network == "none"
    assert service.command == ("tail", "-f", "/dev/null") and service.entrypoint is None
    assert service.limits == {"cpus": 0.5, "memory_mib": 256}
    assert dict(service.environment) == {"LANG": "C.UTF-8", "EMPTY": ""}
    assert service.read_only and service.tmpfs == ({"path": "/scratch", "size_mib": 64, "mode": "1770"},)
    assert service.healthcheck.argv == ("/bin/sh", "-c", "true") and service.healthcheck.interval == 90 and service.healthcheck.retries == 2
    assert project.profile == "docker"


def test_short_forms_and_a_dockerfile_alone(tmp_path):
    project = load(compose(tmp_path, """
        services:
          default: {image: "debian:12", cpus: 1.5, mem_limit: 1g, pids_limit: 100, ulimits: {nofile: {soft: 512, hard: 2048}}}
    """, dockerfile=False))
    assert project.services[0].limits == {"cpus": 1.5, "memory_mib": 1024, "pids": 100, "open_files": 2048}
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    alone = load(str(tmp_path / "Dockerfile"))
    (service,) = alone.services
    # What Inspect's docker sandbox synthesises for a Dockerfile.
    assert service.build.dockerfile == (tmp_path / "Dockerfile").resolve() and service.command == ("tail", "-f", "/dev/null")


@pytest.mark.parametrize("field, value, words", [
    ("ports", '["8080:80"]', "published ports"),
    ("volumes", '["/etc:/host-etc"]', "bind mounts"),
    ("privileged", "true", "privileged"),
    ("cap_add", "[SYS_ADMIN]", "profile"),
    ("network_mode", "host", "loopback"),
    ("devices", '["/dev/kvm"]', "devices"),
    ("frobnicate", "1", "not a compose field"),
])
def test_fields_offswitch_cannot_honour_are_refused_by_name(tmp_path, field, value, words):
    path = compose(tmp_path, f"""
        services:
          default:
            image: debian:12
            {field}: {value}
    """)
    with pytest.raises(ComposeError) as raised:
        load(path)
    message = str(raised.value)
    assert path in message and f"services.default.{field}" in message and words in message


def test_harmless_fields_warn_and_run(tmp_path, caplog):
    project = load(compose(tmp_path, """
        services:
          default: {image: "debian:12", restart: always, init: false, stop_grace_period: 1s, networks: [inner]}
        networks: {inner: {internal: true}}
    """))
    text = " ".join(project.warnings)
    assert "services.default.restart" in text and "services.default.init" in text and "services.default.networks" in text


def test_the_default_service_and_start_order(tmp_path):
    project = load(compose(tmp_path, """
        services:
          db: {image: "db:1", healthcheck: {test: "true"}}
          web: {image: "web:1", depends_on: {db: {condition: service_healthy}}, x-default: true}
          cache: {image: "cache:1"}
    """))
    assert [s.name for s in project.services] == ["web", "db", "cache"]
    assert [s.name for s in start_order(project)] == ["db", "web", "cache"]
    with pytest.raises(ComposeError, match="no service is named 'default'"):
        load(compose(tmp_path, "services:\n  app: {image: 'a:1'}\n"))
    with pytest.raises(ComposeError, match="depends_on: no service named 'nothere'"):
        load(compose(tmp_path, "services:\n  default: {image: 'a:1', depends_on: [nothere]}\n"))


def test_a_compose_config_from_inspect_reads_as_its_file(tmp_path):
    config = ComposeConfig.model_validate({"services": {"default": {"image": "debian:12", "working_dir": "/w", "x-default": True}}})
    (service,) = load(config).services
    assert service.image == "debian:12" and service.working_dir == "/w" and service.default


def test_sizes_and_durations():
    assert memory_bytes("256M", "f") == 256 << 20 and memory_bytes("512k", "f") == 512 << 10 and memory_bytes(1024, "f") == 1024
    assert memory_bytes("1.5g", "f") == 3 << 29
    assert duration_seconds("1m30s", "f") == 90 and duration_seconds("500ms", "f") == 0.5
    with pytest.raises(ComposeError, match="not a duration"):
        duration_seconds("soon", "f")
    with pytest.raises(ComposeError, match="not a size"):
        memory_bytes("lots", "f")


def test_users_as_offswitch_runs_them(tmp_path):
    (service,) = load(compose(tmp_path, "services:\n  default: {image: 'a:1'}\n")).services
    # Docker's default is the image's User, else root.
    assert effective_user(service, {}, "u") == "root"
    assert effective_user(service, {"User": "1000:1000"}, "u") == "user"
    with pytest.raises(ComposeError, match="root .uid 0. or user .uid 1000."):
        effective_user(service, {"User": "www-data"}, "u")


def test_the_build_cache_key_follows_the_context(tmp_path):
    path = compose(tmp_path, "services:\n  default: {build: .}\n")
    (tmp_path / "data.txt").write_text("one")
    first = cache_key(load(path).services[0].build, "buildah")
    assert cache_key(load(path).services[0].build, "buildah") == first
    (tmp_path / "data.txt").write_text("two")
    assert cache_key(load(path).services[0].build, "buildah") != first
    assert cache_key(load(path).services[0].build, "podman") != cache_key(load(path).services[0].build, "buildah")
    assert image_name("Web_Server", first).startswith("localhost/inspect-offswitch/web_server:")
