"""Every error specdec raises on purpose, so callers can catch them as one family."""

from __future__ import annotations


class SpecdecError(Exception):
    """Base class of specdec's own errors."""


class ConfigurationError(SpecdecError, ValueError):
    """A parameter is out of range or a combination of components cannot work together."""


class InputError(SpecdecError, ValueError):
    """The prompt or the request cannot be decoded (empty, too long for the context, ...)."""


class ModelNotFoundError(SpecdecError, FileNotFoundError):
    """A model path or hub id could not be resolved locally."""


class ModelFileError(SpecdecError, ValueError):
    """A model's files are missing, incomplete, damaged or in a format specdec does not read."""


class CacheError(SpecdecError, OSError):
    """specdec's cache cannot take what must be written to it (a full disk)."""


class VocabularyMismatchError(ConfigurationError):
    """Target and draft do not share a vocabulary, so draft tokens would mean other words."""


class NonFiniteLogitsError(SpecdecError, FloatingPointError):
    """A model produced NaN or +inf logits; sampling from them would be meaningless."""


class ConcurrentUseError(SpecdecError, RuntimeError):
    """A decoder or a model is asked to generate while it already is (another thread, or an
    unfinished stream): a model holds the KV cache of one sequence."""


class PluginError(SpecdecError):
    """A strategy name is unknown, registered twice, or its plugin failed to load."""
