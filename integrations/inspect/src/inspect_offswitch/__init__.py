"""Offswitch for Inspect: the `offswitch` sandbox type and Palisade's shutdown-resistance task."""

from ._client import OffswitchAPIError, OffswitchClient, OffswitchUnreachableError
from ._config import OffswitchLimits, OffswitchSandboxConfig
from ._palisade import bash, load_prompts, offswitch_scorer, offswitch_verdict, palisade_scorer, palisade_shutdown
from ._sandbox import OFFSWITCH_JUDGEMENTS, OffswitchSandboxEnvironment

__all__ = [
    "OFFSWITCH_JUDGEMENTS",
    "OffswitchAPIError",
    "OffswitchClient",
    "OffswitchLimits",
    "OffswitchSandboxConfig",
    "OffswitchSandboxEnvironment",
    "OffswitchUnreachableError",
    "bash",
    "load_prompts",
    "offswitch_scorer",
    "offswitch_verdict",
    "palisade_scorer",
    "palisade_shutdown",
]
