"""Exceptions that the command line turns into one-line messages (exit code 2)."""

from __future__ import annotations


class CamixError(Exception):
    """Base class for user-facing errors: bad input, not bugs.

    The message must name the offending file or key and say what to do about it.
    """


class ConfigError(CamixError):
    """An invalid configuration file, key, type or override."""


class DataError(CamixError):
    """A dataset that is missing, misnamed, truncated or has unknown labels."""


class CheckpointError(CamixError):
    """A checkpoint or weights file that cannot be used with this model."""


class NonFiniteLoss(CamixError):
    """A loss became NaN or infinite; the run stops and keeps its last good checkpoint (exit code 1)."""

    exit_code = 1


class RunDirError(CamixError):
    """A run directory that is in use, holds another run, or cannot be written."""


class RunInUse(RunDirError):
    """Another live process holds the run directory's lock."""
