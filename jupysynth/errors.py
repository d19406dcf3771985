"""The error hierarchy: every message says what went wrong and what to do."""

from __future__ import annotations


class JupysynthError(Exception):
    """Base class of every error jupysynth raises on purpose."""


class PatchError(JupysynthError):
    """A patch cannot be built or compiled: a cycle, a bad connection, a bad module."""


class ParamError(JupysynthError, ValueError):
    """A parameter name, value, type or range is wrong."""


class EngineError(JupysynthError):
    """The engine cannot start, answer or play."""


class JupysynthWarning(UserWarning):
    """Something went wrong but the sound goes on (a module faulted and was muted)."""
