"""Errors raised by progenitor. Every error a user can cause is a ProgenitorError subclass.

The CLI prints a ProgenitorError as one line and exits non-zero; anything else is a bug and shows
a traceback only under ``--debug``.
"""

from __future__ import annotations


class ProgenitorError(Exception):
    """Base class of every error caused by input, environment or a refused operation."""


class ModelLoadError(ProgenitorError):
    """A model reference cannot be opened: missing, unreadable, corrupt or of an unknown format."""


class UnsafeFileError(ModelLoadError):
    """A file would need arbitrary code to load (a pickle of objects); it is refused."""


class AccessError(ProgenitorError):
    """The model's format does not allow the requested access (weights, features or outputs)."""


class ProbeError(ProgenitorError):
    """A probe set cannot be read, or does not fit a model's input."""


class EndpointError(ProgenitorError):
    """A black-box HTTP endpoint timed out, refused, or answered something that is not outputs."""


class DNAFormatError(ProgenitorError):
    """A .dna file is corrupt, truncated, or of a version this release does not know."""


class IncomparableError(ProgenitorError):
    """Two DNAs (or genes) were made differently and cannot be compared."""


class MissingExtraError(ProgenitorError):
    """An optional dependency is not installed; the message names the extra to install."""
