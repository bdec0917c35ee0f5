"""Errors of the home layer: each one a sentence for the person (or model) that caused it."""

from collections.abc import Iterable

from ondol.errors import OndolError


class HomeError(OndolError):
    """Base class of everything a home, its file or its actions can get wrong."""


class ActionError(HomeError):
    """An action was refused: unsupported by the device type, bad parameters, or impossible in the
    device's current state (pausing a washer that is not running). Nothing was changed."""


class HomeFileError(HomeError):
    """The home file cannot be read or does not describe a valid home; the message names where."""


class TargetError(HomeError):
    """A target names nothing, or more than one thing where one was meant, or a kind an area lacks.

    ``candidates`` holds the ids (devices, or areas for an area name) the assistant can offer;
    ``ambiguous`` says they all fit (ask which), rather than being close spellings of a wrong name."""

    def __init__(self, message: str, candidates: Iterable[str] = (), ambiguous: bool = False):
        super().__init__(message)
        self.candidates = tuple(candidates)
        self.ambiguous = ambiguous
