"""The domain's exception tree.

Connector errors are split by what the pipeline must do with them: a
``ConnectorConfigError``, ``ConnectorRejectedError`` or ``ConnectorSecurityError``
is permanent (retrying cannot help); a ``ConnectorTransientError`` and a plain
``ConnectorError`` are retried. The plain class is retried because it is what a
connector written like the seed's (``raise ConnectorError(f"MyERP export failed:
{e}")`` around every failure, timeouts included) raises for everything, and the
seed promises that pushes retry with backoff. Any error may say otherwise with
``retryable=``. Adapters translate library exceptions into these at their
boundary, and never put a secret into the message.
"""

from __future__ import annotations


class OrderFlowError(Exception):
    """Base class of every error this project raises on purpose."""


class ConnectorError(OrderFlowError):
    """An ERP connector could not do what was asked.

    ``retryable`` tells the pipeline whether a later attempt may succeed. The
    base class is retried (see the module docstring); the permanent subclasses
    set it to False. ``retryable=`` overrides the class's value for one error,
    e.g. ``ConnectorError("unknown product", retryable=False)``.
    """

    retryable: bool = True

    def __init__(
        self, message: str, *, stage: str | None = None, retryable: bool | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.stage = stage
        if retryable is not None:
            # An instance attribute: the class default stays as declared.
            self.retryable = retryable

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ConnectorConfigError(ConnectorError):
    """The connector configuration is missing fields or has invalid values (permanent)."""

    retryable = False


class ConnectorTransientError(ConnectorError):
    """A temporary failure (network, timeout, ERP unavailable): retry later."""

    retryable = True


class ConnectorRejectedError(ConnectorError):
    """The ERP understood the request and refused it (permanent)."""

    retryable = False


class ConnectorSecurityError(ConnectorError):
    """A security check failed, e.g. the server's host key did not match (permanent)."""

    retryable = False
