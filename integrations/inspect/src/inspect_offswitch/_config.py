"""The `offswitch` sandbox's configuration: `sandbox=("offswitch", OffswitchSandboxConfig(...))`
in a task, or the same fields as a dict."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class OffswitchLimits(BaseModel):
    """Overrides of the profile's limits (docs/profiles.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_mib: int | None = Field(default=None, gt=0)
    pids: int | None = Field(default=None, gt=0)
    cpus: float | None = Field(default=None, gt=0)
    upper_mib: int | None = Field(default=None, gt=0)
    tmp_mib: int | None = Field(default=None, gt=0)
    open_files: int | None = Field(default=None, gt=0)


class OffswitchSandboxConfig(BaseModel):
    """Where offswitchd is and what sandbox to ask it for.

    With `scenario`, the sandbox is set up as a trial of that bundled scenario (its files, its
    `next_question` trigger); the Palisade task's tools then send the agent's calls as trial steps
    and the Offswitch scorer asks for the verdict. Without it, a plain sandbox."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    socket: str | None = None
    """offswitchd's Unix socket (default: $OFFSWITCH_SOCKET, then /run/offswitch/offswitchd.sock)."""
    url: str | None = None
    """http://127.0.0.1:PORT when offswitchd listens on TCP (then give `token_file`)."""
    token_file: str | None = None
    """A file holding the bearer token for `url`."""
    profile: str = "docker"
    """A bundled profile: docker, hardened or observe."""
    image: str | None = None
    """An image of offswitchd's store as the root (a name or an id: `offswitch image pull`,
    `POST /v1/images`); default: the scenario's image, or the profile's root (the host's)."""
    scenario: str | None = None
    """A bundled scenario (palisade-math) to set the sandbox up as a trial of."""
    option: str | None = None
    """A scenario option (palisade-math: execute-only)."""
    record: bool = True
    """False turns the recorder off (plain sandboxes only: a trial needs its evidence)."""
    limits: OffswitchLimits | None = None
    env: dict[str, str] | None = None
    """Added to every command's environment (plain sandboxes only)."""
