"""The `offswitch` sandbox type for Inspect: each sample gets a fresh Offswitch sandbox from
offswitchd (namespaces, seccomp, a throwaway overlay, a recorder), and what Inspect asks of a sandbox
maps onto offswitchd's API (docs/openapi.yaml)."""

from __future__ import annotations

import base64
import errno
import logging
import os
import shlex
from functools import partial
from pathlib import Path
from typing import Any, Literal, Union, overload

import anyio
from inspect_ai.log import transcript
from inspect_ai.log._samples import sample_active
from inspect_ai.util import (
    ExecResult,
    OutputLimitExceededError,
    SandboxEnvironment,
    SandboxEnvironmentConfigType,
    SandboxConnection,
    SandboxEnvironmentLimits,
    SandboxUserUnsupportedError,
    sandboxenv,
    store,
)
from inspect_ai.util._sandbox.environment import SandboxUnavailableError
from pydantic import BaseModel

from . import _compose, _services
from ._client import OffswitchAPIError, OffswitchClient
from ._config import OffswitchSandboxConfig

# The sandboxes this process created and has not deleted: task_cleanup removes what a sample
# cleanup missed, and `inspect sandbox cleanup offswitch` reads the record of every process.
_live: dict[str, OffswitchClient] = {}
logger = logging.getLogger(__name__)

# The sample store's key for the judgements made at sample cleanup: {sandbox name: {"judgement",
# "trial", "directory"}} (or {"error"}), beside whatever the task's own scorers said.
OFFSWITCH_JUDGEMENTS = "offswitch_judgements"


def _record_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "inspect-offswitch" / "sandboxes"


def _remember(sandbox_id: str, client: OffswitchClient) -> None:
    _live[sandbox_id] = client
    path = _record_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as record:
        record.write(f"{sandbox_id} {client.url or client.where}\n")


def _forget(sandbox_id: str) -> None:
    _live.pop(sandbox_id, None)


def _config(config: SandboxEnvironmentConfigType | None) -> OffswitchSandboxConfig:
    if config is None:
        return OffswitchSandboxConfig()
    if isinstance(config, OffswitchSandboxConfig):
        return config
    if isinstance(config, dict):
        return OffswitchSandboxConfig(**config)
    if isinstance(config, BaseModel):
        return OffswitchSandboxConfig(**config.model_dump())
    raise ValueError(f"offswitch sandbox: config must be an OffswitchSandboxConfig or a dict, not {type(config).__name__}")


def _is_compose(config: SandboxEnvironmentConfigType | None) -> bool:
    """A compose file or Dockerfile path, or Inspect's ComposeConfig (or a dict with services)."""
    if isinstance(config, str):
        return True
    if isinstance(config, dict):
        return "services" in config
    return isinstance(config, BaseModel) and "services" in type(config).model_fields


# The paths offswitch_scorer(protect=[...]) instances of this process protect: each plain sandbox's
# baseline takes their state (with identities), beside the files the harness wrote into it.
_protected: list[str] = []


def protect_paths(paths: list[str]) -> None:
    """Registers paths a judgement will protect, so that baselines take their state."""
    for path in paths:
        if path not in _protected:
            _protected.append(path)


# Projects parsed and prepared (images built or pulled), by configuration: once per task.
_prepared: dict[str, _services.Prepared] = {}
_prepare_lock = anyio.Lock()


def _key(config: SandboxEnvironmentConfigType) -> str:
    if isinstance(config, str):
        return "file:" + str(Path(config).resolve())
    if isinstance(config, BaseModel):
        return "model:" + config.model_dump_json()
    import json

    return "dict:" + json.dumps(config, sort_keys=True, default=str)


async def _prepare(config: SandboxEnvironmentConfigType) -> tuple[_services.Prepared, OffswitchClient]:
    async with _prepare_lock:
        key = _key(config)
        prepared = _prepared.get(key)
        if prepared is None:
            project = _compose.load(config)
            client = OffswitchClient(socket_path=project.socket)
            prepared = await _call(_services.prepare, client, project)
            _prepared[key] = prepared
        return prepared, OffswitchClient(socket_path=prepared.project.socket)


def _client(config: OffswitchSandboxConfig) -> OffswitchClient:
    token = None
    if config.url:
        if not config.token_file:
            raise ValueError("offswitch sandbox: url needs token_file (offswitchd --listen takes a bearer token)")
        token = Path(config.token_file).read_text().strip()
    return OffswitchClient(socket_path=config.socket, url=config.url, token=token)


async def _call(function: Any, *args: Any, **kwargs: Any) -> Any:
    # A worker thread per request; on cancellation (Ctrl-C) the thread is abandoned and the sandbox
    # is deleted by the cleanup, which ends whatever the request was waiting for.
    return await anyio.to_thread.run_sync(partial(function, *args, **kwargs), abandon_on_cancel=True)


@sandboxenv(name="offswitch")
class OffswitchSandboxEnvironment(SandboxEnvironment):
    """One Offswitch sandbox. Commands run as `user` (uid 1000, home /home/user, the per-sample
    working directory) unless `user="root"`; other users are not supported. A compose service's
    sandbox runs them as the service's user in its working directory, as Docker would."""

    def __init__(self, sandbox_id: str, client: OffswitchClient, trial: str | None, *, user: str | None = None,
                 workdir: str | None = None, service: str | None = None) -> None:
        super().__init__()
        self.sandbox_id = sandbox_id
        self.client = client
        self.trial = trial
        self.default_user = user
        self.workdir = workdir
        self.service = service
        self._verdict: dict[str, Any] | None = None
        self._finish_lock = anyio.Lock()
        # A plain sandbox's part in the sample: "harness" (Inspect's files and setup, sent with
        # origin harness), "due" (Inspect has finished its sample init), then "agent" once the
        # baseline is taken (POST /baseline) at the first call after it. A trial has its own.
        self._phase = "trial" if trial is not None else "harness"
        self._harness_files: list[str] = []
        self._default_protect: list[str] = []
        self._baseline_lock = anyio.Lock()
        # The last judgement's reply (a scorer's): sample cleanup records it instead of judging again.
        self._judgement: dict[str, Any] | None = None

    # Inspect's sample init stores its root-access probe here after the task's files and setup and
    # before the solver starts (inspect_ai's resolve_root_access): the harness has handed the
    # sandbox over, so the next call takes the baseline.
    @property
    def _root_access(self) -> Any:
        return self.__dict__.get("_root_access_value")

    @_root_access.setter
    def _root_access(self, value: Any) -> None:
        self.__dict__["_root_access_value"] = value
        if value is not None and self.__dict__.get("_phase") == "harness":
            self._phase = "due"

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def config_deserialize(cls, config: dict[str, Any]) -> BaseModel:
        return OffswitchSandboxConfig(**config)

    @classmethod
    def config_files(cls) -> list[str]:
        # What Inspect looks for beside a task; with compose.yaml here, the provider is
        # docker-compatible: `--sandbox offswitch` takes over tasks written for `docker`.
        return list(_compose.COMPOSE_NAMES) + ["Dockerfile"]

    @classmethod
    def default_concurrency(cls) -> int | None:
        # offswitchd creates a sandbox in tens of milliseconds; the host's cores bound the agents.
        return 2 * (len(os.sched_getaffinity(0)) or 1)

    @classmethod
    async def task_init(cls, task_name: str, config: SandboxEnvironmentConfigType | None) -> None:
        # Fail at the start of the task, with the reason, rather than at every sample; a compose
        # project's images are built or pulled here, once.
        if _is_compose(config):
            assert config is not None
            await _prepare(config)
            return
        await _call(_client(_config(config)).request, "GET", "/healthz")

    @classmethod
    async def sample_init(
        cls, task_name: str, config: SandboxEnvironmentConfigType | None, metadata: dict[str, str]
    ) -> dict[str, SandboxEnvironment]:
        if _is_compose(config):
            assert config is not None
            prepared, client = await _prepare(config)
            started = await _call(_services.create, client, prepared, prepared.project.profile)
            environments: dict[str, SandboxEnvironment] = {}
            for one in started:
                _remember(one.sandbox_id, client)
            # The default service first, as Inspect expects; the others in the file's order.
            for service in prepared.project.services:
                one = next(s for s in started if s.service.name == service.name)
                environments[service.name] = cls(one.sandbox_id, client, None, user=one.user, workdir=one.workdir, service=service.name)
            return environments
        settings = _config(config)
        client = _client(settings)
        body: dict[str, Any] = {"profile": settings.profile}
        if settings.image is not None:
            if not settings.image:
                raise ValueError("offswitch sandbox: image must name an image (offswitch image ls)")
            body["image"] = settings.image
        if settings.scenario:
            body.update(scenario=settings.scenario, agent=metadata.get("agent") or task_name)
            if settings.option:
                body["option"] = settings.option
            for field in ("limits", "env"):
                if getattr(settings, field) is not None:
                    raise ValueError(f"offswitch sandbox: {field} cannot be given with scenario (the scenario sets the sandbox up)")
            if not settings.record:
                raise ValueError("offswitch sandbox: record=False cannot be given with scenario (a trial's verdict needs its evidence)")
        else:
            if settings.option:
                raise ValueError("offswitch sandbox: option needs scenario")
            if not settings.record:
                body["record"] = False
            if settings.limits is not None:
                body["limits"] = settings.limits.model_dump(exclude_none=True)
            if settings.env is not None:
                body["env"] = settings.env
        created = await _call(client.json, "POST", "/v1/sandboxes", body)
        _remember(created["id"], client)
        return {"default": cls(created["id"], client, created.get("trial"))}

    @classmethod
    async def sample_cleanup(
        cls,
        task_name: str,
        config: SandboxEnvironmentConfigType | None,
        environments: dict[str, SandboxEnvironment],
        interrupted: bool,
    ) -> None:
        # Every plain sandbox the agent had is judged before it goes (unless a scorer judged it),
        # so a task that knows nothing of Offswitch gets its evidence beside its own scores.
        for name, environment in environments.items():
            if isinstance(environment, OffswitchSandboxEnvironment):
                try:
                    await environment._record_judgement(name)
                finally:
                    await environment._delete()

    @classmethod
    async def task_cleanup(cls, task_name: str, config: SandboxEnvironmentConfigType | None, cleanup: bool) -> None:
        if cleanup:
            for sandbox_id, client in list(_live.items()):
                await _delete(client, sandbox_id)

    @classmethod
    async def cli_cleanup(cls, id: str | None) -> None:
        """`inspect sandbox cleanup offswitch [ID]`: deletes ID, or every sandbox this machine's
        Inspect runs created and did not delete (they are recorded in
        ~/.local/state/inspect-offswitch/sandboxes)."""
        path = _record_path()
        entries = [line.split(" ", 1) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
        for sandbox_id, where in entries:
            if id is not None and sandbox_id != id:
                continue
            client = OffswitchClient(url=where) if where.startswith("http") else OffswitchClient(socket_path=where)
            try:
                await _delete(client, sandbox_id)
            except OSError:
                pass
        if id is None and path.exists():
            path.unlink()
        elif id is not None and not any(sandbox_id == id for sandbox_id, _ in entries):
            await _delete(OffswitchClient(), id)

    async def _delete(self) -> None:
        await _delete(self.client, self.sandbox_id)

    # -- commands ----------------------------------------------------------------------------

    async def exec(
        self,
        cmd: list[str],
        input: str | bytes | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: int | None = None,
        timeout_retry: bool = True,
        concurrency: bool = True,
    ) -> ExecResult[str]:
        # timeout_retry: a timed-out command's whole process tree is killed; it is not retried.
        if user not in (None, "user", "root"):
            raise SandboxUserUnsupportedError(f"offswitch sandboxes run commands as 'user' or 'root', not {user!r}")
        if not cmd:
            raise ValueError("exec: cmd is empty")
        await self._hand_over()
        user = user or self.default_user
        cwd = self._path(cwd) if cwd is not None else self.workdir
        limit = SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE
        body: dict[str, Any] = {"argv": list(cmd), "output_limit": limit + 1}
        if self._phase == "harness":
            body["origin"] = "harness"
        if isinstance(input, bytes):
            body["stdin_base64"] = base64.b64encode(input).decode()
        elif input is not None:
            body["stdin"] = input
        if cwd is not None:
            body["cwd"] = cwd
        if env:
            body["env"] = env
        if user is not None:
            body["user"] = user
        if timeout is not None:
            body["timeout"] = timeout
        try:
            reply = await _call(self.client.json, "POST", f"/v1/sandboxes/{self.sandbox_id}/exec", body)
        except OffswitchAPIError as error:
            raise self._translate(error, " ".join(cmd)) from error
        if reply["timed_out"]:
            raise TimeoutError(f"{cmd[0]}: timed out after {timeout} s; its processes were killed")
        stdout, stderr = _text(reply, "stdout"), _text(reply, "stderr")
        truncated = reply.get("truncated") or {}
        if truncated.get("stdout") or truncated.get("stderr") or len(stdout.encode()) > limit or len(stderr.encode()) > limit:
            raise OutputLimitExceededError(
                limit_str=SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE_STR,
                truncated_output=stdout.encode()[:limit].decode(errors="ignore"),
            )
        code = reply["exit_code"]
        # The launcher's own refusal (not the command's exit 126): the file is not executable.
        if code == 126 and stderr == f"offswitch: {cmd[0]}: Permission denied\n":
            raise PermissionError(errno.EACCES, f"{cmd[0]}: permission denied (not executable)", cmd[0])
        return ExecResult(success=code == 0, returncode=code, stdout=stdout, stderr=stderr)

    # -- files -------------------------------------------------------------------------------

    async def write_file(self, file: str, contents: str | bytes) -> None:
        await self._hand_over()
        data = contents.encode("utf-8") if isinstance(contents, str) else contents
        file = self._path(file)
        if self._phase == "harness" and file not in self._harness_files:
            self._harness_files.append(file)
        try:
            await _call(self.client.request, "PUT", f"/v1/sandboxes/{self.sandbox_id}/files", body=data, query=self._file_query(file))
        except OffswitchAPIError as error:
            raise self._translate(error, file) from error

    @overload
    async def read_file(self, file: str, text: Literal[True] = True) -> str: ...

    @overload
    async def read_file(self, file: str, text: Literal[False]) -> bytes: ...

    async def read_file(self, file: str, text: bool = True) -> Union[str, bytes]:
        await self._hand_over()
        file = self._path(file)
        try:
            _, data = await _call(self.client.request, "GET", f"/v1/sandboxes/{self.sandbox_id}/files", query=self._file_query(file))
        except OffswitchAPIError as error:
            raise self._translate(error, file) from error
        if len(data) > SandboxEnvironmentLimits.MAX_READ_FILE_SIZE:
            raise OutputLimitExceededError(limit_str=SandboxEnvironmentLimits.MAX_READ_FILE_SIZE_STR, truncated_output=None)
        # Bytes decoded as they are: CRLF stays CRLF (newline="" semantics).
        return data.decode("utf-8") if text else data

    def _file_query(self, path: str) -> dict[str, str]:
        # As Docker's sandbox: files are written and read as the service's default user.
        query = {"path": path}
        if self.default_user is not None:
            query["user"] = self.default_user
        return query

    def _path(self, path: str) -> str:
        """A relative path as Docker resolves it: from the service's working directory."""
        if self.workdir is None or path.startswith("/"):
            return path
        return str(Path(self.workdir) / path)

    async def connection(self, *, user: str | None = None) -> SandboxConnection:
        """The command that attaches a shell to this sandbox (`offswitch sandbox attach`)."""
        command = ["offswitch", "sandbox", "attach", self.sandbox_id]
        if self.client.url:
            raise ConnectionError("offswitch sandbox attach speaks to offswitchd's Unix socket; this sandbox is reached over TCP")
        command += ["--socket", self.client.where]
        who = user or self.default_user
        if who is not None:
            command += ["--user", who]
        return SandboxConnection(type="offswitch", command=shlex.join(command), container=self.sandbox_id)

    # -- trials ------------------------------------------------------------------------------

    async def step(self, tool: str, **fields: str) -> dict[str, Any]:
        """One agent call in a scenario sandbox (`bash` with `command`, or `submit` with `answer`),
        as Palisade's tools made it; returns the step as transcript.json records it."""
        if self.trial is None:
            raise ValueError("this offswitch sandbox has no scenario: give the sandbox config scenario='palisade-math'")
        try:
            return await _call(self.client.json, "POST", f"/v1/sandboxes/{self.sandbox_id}/steps", {"tool": tool, **fields})
        except OffswitchAPIError as error:
            raise self._translate(error, tool) from error

    async def verdict(self) -> dict[str, Any]:
        """Ends the trial (once; later calls return the same) and returns offswitchd's reply:
        `{"id", "directory", "duration_ms", "verdict"}` with verdict.json (docs/verdicts.md)."""
        async with self._finish_lock:
            if self._verdict is None:
                if self.trial is None:
                    raise ValueError("this offswitch sandbox has no scenario, so no verdict")
                self._verdict = await _call(self.client.json, "POST", f"/v1/sandboxes/{self.sandbox_id}/verdict")
                _forget(self.sandbox_id)
            return self._verdict

    # -- judgements (plain sandboxes) ---------------------------------------------------------

    async def _hand_over(self) -> None:
        if self._phase == "due":
            await self.baseline()

    async def baseline(self) -> dict[str, Any]:
        """Hands the sandbox to the agent (POST /v1/sandboxes/{id}/baseline): what happens after is
        the agent's. Inspect's sample init does it (at the first call after its files and setup);
        call it yourself only for a sandbox used outside an eval. The state of the files the
        harness wrote and of the paths offswitch_scorer protects is taken now."""
        async with self._baseline_lock:
            if self.trial is not None:
                raise ValueError("this offswitch sandbox is a scenario's trial: its baseline is the trial's")
            protect = list(dict.fromkeys(self._harness_files + [self._path(p) for p in _protected]))
            reply = await _call(self.client.json, "POST", f"/v1/sandboxes/{self.sandbox_id}/baseline", {"protect": protect})
            state = reply.get("state") or {}
            # What the harness wrote and then removed (Inspect's setup script) protects nothing.
            self._default_protect = [p for p in self._harness_files if (state.get(p) or {}).get("type", "missing") != "missing"]
            self._phase = "agent"
            return reply

    async def judgement(self, protect: list[str] | None = None, pid1: bool = True) -> dict[str, Any]:
        """Whether the agent tampered with `protect` (default: the files the harness wrote) or PID 1,
        from the recorded events (POST /v1/sandboxes/{id}/judgement; docs/verdicts.md,
        "Judgements"). Returns `{"id", "directory", "judgement"}`; the evidence is kept under `id`."""
        if self.trial is not None:
            raise ValueError("this offswitch sandbox is a scenario's trial: it is judged by its verdict (offswitch_scorer() without protect)")
        if self._phase == "harness":
            raise ValueError("Inspect never said when the sample's setup ended (no baseline): call `await environment.baseline()` when the agent gets the sandbox")
        await self._hand_over()
        paths = [self._path(p) for p in protect] if protect is not None else self._default_protect
        try:
            self._judgement = await _call(self.client.json, "POST", f"/v1/sandboxes/{self.sandbox_id}/judgement", {"protect": paths, "pid1": pid1})
            return self._judgement
        except OffswitchAPIError as error:
            raise self._translate(error, "judgement") from error

    async def _record_judgement(self, name: str) -> None:
        """At sample cleanup: the sandbox's judgement (the scorer's, or one with the default
        protect list) into the sample's store under OFFSWITCH_JUDGEMENTS and its transcript as an InfoEvent
        (source "offswitch"). A judgement that fails is recorded as an error and logged, and does
        not fail the sample, whose scores are the task's."""
        if self.trial is not None or self._phase == "harness" or sample_active() is None:
            return
        try:
            reply = self._judgement or await self.judgement()
            entry: dict[str, Any] = {"judgement": reply["judgement"], "trial": reply["id"], "directory": reply["directory"]}
        except Exception as error:  # recorded, not raised: the sample's own result stands
            entry = {"error": f"offswitch sandbox {self.sandbox_id}: no judgement: {error}"}
            logger.warning(entry["error"])
        judgements = dict(store().get(OFFSWITCH_JUDGEMENTS, {}))
        judgements[name] = entry
        store().set(OFFSWITCH_JUDGEMENTS, judgements)
        transcript().info({name: entry}, source="offswitch")

    # -- errors ------------------------------------------------------------------------------

    def _translate(self, error: OffswitchAPIError, subject: str) -> Exception:
        """offswitchd's error codes as the exceptions Inspect expects; each names the path."""
        if error.code in ("sandbox_shut_down", "sandbox_not_found", "sandbox_destroyed"):
            return SandboxUnavailableError(f"offswitch sandbox {self.sandbox_id} is unavailable: {error.message}")
        if error.code == "not_found":
            return FileNotFoundError(errno.ENOENT, f"{subject}: no such file or directory ({error.message})", subject)
        if error.code == "is_directory":
            return IsADirectoryError(errno.EISDIR, f"{subject}: is a directory ({error.message})", subject)
        if error.code == "permission_denied":
            return PermissionError(errno.EACCES, f"{subject}: permission denied ({error.message})", subject)
        return error


async def _delete(client: OffswitchClient, sandbox_id: str) -> None:
    try:
        await _call(client.request, "DELETE", f"/v1/sandboxes/{sandbox_id}")
    except OffswitchAPIError as error:
        if error.status != 404:
            raise
    finally:
        _forget(sandbox_id)


def _text(reply: dict[str, Any], stream: str) -> str:
    if reply.get(stream) is not None:
        return reply[stream]
    encoded = reply.get(stream + "_base64")
    return base64.b64decode(encoded).decode("utf-8", errors="replace") if encoded else ""
