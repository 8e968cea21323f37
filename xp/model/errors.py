"""Errors raised while loading a model; messages are written for the user."""


class ModelLoadError(ValueError):
    """A checkpoint, tokenizer or adapter that cannot be loaded as given (says what to fix)."""
