"""Exceptions raised by mlx-audio-stack. Each names the item and the values involved."""


class MasError(Exception):
    """Base class: the CLI prints these as one line and exits non-zero."""


class AudioError(MasError):
    """An audio file or array cannot be used (unreadable, empty, non-finite...)."""


class ConversionError(MasError):
    """A checkpoint cannot be converted (unknown format, unsafe pickle, bad layout)."""


class WeightsError(MasError):
    """Converted weights are missing or do not match the model (missing/unexpected keys)."""


class UnsafePickleError(ConversionError):
    """A pickle asked for a global outside the allow-list."""
