"""Loaded by Inspect through the `inspect_ai` entry point: registers the `offswitch` sandbox type
and the Palisade task (`inspect eval inspect_offswitch/palisade_shutdown`)."""

from ._palisade import palisade_shutdown  # noqa: F401
from ._sandbox import OffswitchSandboxEnvironment  # noqa: F401
