"""Exceptions raised by headstart.

Every error says what was wrong, where, and how to fix it. The CLI turns any
:class:`HeadstartError` into a one-paragraph message and exit code 1.
"""

from __future__ import annotations

__all__ = [
    "BackboneError",
    "BundleError",
    "CacheError",
    "ConfigError",
    "DataError",
    "HeadstartError",
    "ImageTooLargeError",
    "NotFittedError",
    "OutputError",
    "RequestError",
]


class HeadstartError(Exception):
    """Base class of every error headstart raises on purpose."""


class DataError(HeadstartError, ValueError):
    """The data given to headstart cannot be used as it is (missing column, corrupt file...)."""


class ImageTooLargeError(DataError):
    """An image has more pixels than allowed: decoding it would hold too much memory."""


class RequestError(DataError):
    """An item of a request to the service is refused: ``status`` and ``code`` are the answer's.

    Raised by modalities when they read request items (:meth:`headstart.modalities.base.Modality.read_json_item`),
    so that the rules for an item live with its modality and the service only turns them into answers.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class BackboneError(HeadstartError):
    """A backbone cannot be found, built or loaded."""


class BundleError(HeadstartError):
    """A model bundle is missing, incomplete, tampered with or from an unsupported version."""


class CacheError(HeadstartError):
    """The embedding cache cannot be used (location not writable...)."""


class OutputError(HeadstartError, OSError):
    """A file or folder cannot be written where asked (not writable, under a file, disk full...).

    Subclasses ``OSError`` so code that catches write failures keeps working.
    """


class ConfigError(HeadstartError, ValueError):
    """A parameter has a value headstart cannot accept."""


class NotFittedError(HeadstartError, ValueError, AttributeError):
    """The estimator is used before ``fit`` was called.

    Subclasses ``ValueError`` and ``AttributeError`` like scikit-learn's own
    ``NotFittedError`` so code written against scikit-learn keeps working.
    """
