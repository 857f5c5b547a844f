"""The domain's exception tree.

Connector errors are split by what the pipeline must do with them: a
``ConnectorConfigError`` or ``ConnectorRejectedError`` is permanent (retrying
cannot help), a ``ConnectorTransientError`` is worth retrying. Adapters
translate library exceptions into these at their boundary, and never put a
secret into the message.
"""

from __future__ import annotations


class OrderFlowError(Exception):
    """Base class of every error this project raises on purpose."""


class ConnectorError(OrderFlowError):
    """An ERP connector could not do what was asked.

    ``retryable`` tells the pipeline whether a later attempt may succeed.
    The base class is permanent: an unknown failure is not retried blindly.
    """

    retryable: bool = False

    def __init__(self, message: str, *, stage: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.stage = stage

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ConnectorConfigError(ConnectorError):
    """The connector configuration is missing fields or has invalid values (permanent)."""


class ConnectorTransientError(ConnectorError):
    """A temporary failure (network, timeout, ERP unavailable): retry later."""

    retryable = True


class ConnectorRejectedError(ConnectorError):
    """The ERP understood the request and refused it (permanent)."""


class ConnectorSecurityError(ConnectorError):
    """A security check failed, e.g. the server's host key did not match (permanent)."""
