"""The registered checks, imported in the order they run."""

from . import schema, audio, limits, labels, splits, label_errors  # noqa: F401, I001
