"""Errors a user can act on. The CLI prints `str(error)` as one line and exits 2."""

from __future__ import annotations

__all__ = ["TraindoctorError", "InputError", "MissingExtraError"]


class TraindoctorError(Exception):
    """Base class: the message is one line saying what was expected, what was found, what to do."""


class InputError(TraindoctorError):
    """A path, file or argument that cannot be used. The message names the file."""

    def __init__(self, path, message: str):
        self.path = str(path) if path is not None else None
        text = f"{self.path}: {message}" if self.path else message
        super().__init__(" ".join(text.split()))  # always one line


class MissingExtraError(TraindoctorError):
    """An optional dependency is not installed."""

    def __init__(self, package: str, extra: str, purpose: str):
        super().__init__(
            f"{purpose} needs {package}, which is not installed: pip install 'traindoctor[{extra}]'"
        )


def require(module: str, extra: str, purpose: str):
    """Import an optional dependency or raise MissingExtraError with the pip command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(module.split(".")[0], extra, purpose) from None
