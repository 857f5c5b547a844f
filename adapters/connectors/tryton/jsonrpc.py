"""A small JSON-RPC client for a Tryton server (``trytond`` 7.x / 8.x), stdlib only.

Tryton speaks JSON-RPC over HTTP POST: ``/<database>/rpc/`` for everything of one
database (``common.db.login``, ``model.<name>.<method>``) and ``/rpc/`` for the server
itself (``common.server.version``). A login returns ``[user_id, session]``; later calls
send ``Authorization: Session base64(login:user_id:session)``. Decimals travel as
``{"__class__": "Decimal", "decimal": "2.50"}``.

Failures are translated here into the domain's connector errors, by what the pipeline
must do with them:

* network errors, timeouts, HTTP 5xx, 429 (rate limited) and Tryton's
  ``ConcurrencyException`` -> :class:`ConnectorTransientError` (retry);
* HTTP 401 on login -> :class:`ConnectorConfigError` at stage ``auth`` (permanent);
  HTTP 404 (no such database) -> :class:`ConnectorConfigError` at stage ``database``;
  HTTP 403 (method not allowed for this user) -> ``ConnectorConfigError`` at ``permission``;
* Tryton ``UserError`` / ``UserWarning`` (validation, access rights, business rules) ->
  :class:`TrytonUserError`, a :class:`ConnectorRejectedError` (permanent);
* anything else the server reports (a crash with a traceback) -> the permanent
  :class:`ConnectorError`, with only the exception's first line.

The password is sent once, in the login request body; it is never part of a message,
repr or log line. Server texts are cut to :data:`MAX_SERVER_TEXT` characters.

Size: a little over 400 lines, kept whole because the error translation above is
one table read top to bottom beside the requests it classifies.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from domain.errors import (
    ConnectorConfigError,
    ConnectorError,
    ConnectorRejectedError,
    ConnectorTransientError,
)

__all__ = [
    "MAX_SERVER_TEXT",
    "STAGE_AUTH",
    "STAGE_DATABASE",
    "STAGE_EXPORT",
    "STAGE_PERMISSION",
    "STAGE_REACHABLE",
    "STAGE_VERSION",
    "Opener",
    "SessionExpiredError",
    "TrytonClient",
    "TrytonUserError",
    "decode_value",
    "encode_value",
]

STAGE_REACHABLE = "reachable"
STAGE_VERSION = "version"
STAGE_DATABASE = "database"
STAGE_AUTH = "auth"
STAGE_PERMISSION = "permission"
STAGE_EXPORT = "export"

#: Longest server-provided text we put into an error message.
MAX_SERVER_TEXT = 500

#: Opens a request with a timeout and returns the response (``urllib.request.urlopen``).
Opener = Callable[[urllib.request.Request, float], Any]


class TrytonUserError(ConnectorRejectedError):
    """Tryton refused the request with a ``UserError`` or ``UserWarning`` (permanent).

    ``fault`` is Tryton's exception name (``"UserError"``, ``"UserWarning"``).
    """

    def __init__(self, message: str, *, stage: str | None = None, fault: str = "UserError") -> None:
        super().__init__(message, stage=stage)
        self.fault = fault


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_SERVER_TEXT else text[: MAX_SERVER_TEXT - 1] + "…"


# -- encoding ------------------------------------------------------------------------------


def encode_value(value: Any) -> Any:
    """``json.dumps`` hook: Decimal, date and datetime in Tryton's ``__class__`` form."""
    if isinstance(value, Decimal):
        return {"__class__": "Decimal", "decimal": str(value)}
    if isinstance(value, datetime.datetime):
        return {
            "__class__": "datetime",
            "year": value.year,
            "month": value.month,
            "day": value.day,
            "hour": value.hour,
            "minute": value.minute,
            "second": value.second,
            "microsecond": value.microsecond,
        }
    if isinstance(value, datetime.date):
        return {"__class__": "date", "year": value.year, "month": value.month, "day": value.day}
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot send a {type(value).__name__} to Tryton")


def decode_value(obj: dict[str, Any]) -> Any:
    """``json.loads`` hook: turn Tryton's ``__class__`` objects back into Python values."""
    kind = obj.get("__class__")
    if kind == "Decimal":
        return Decimal(str(obj["decimal"]))
    if kind == "date":
        return datetime.date(obj["year"], obj["month"], obj["day"])
    if kind == "datetime":
        return datetime.datetime(
            obj["year"],
            obj["month"],
            obj["day"],
            obj["hour"],
            obj["minute"],
            obj["second"],
            obj.get("microsecond", 0),
        )
    if kind == "bytes":
        return base64.b64decode(obj["base64"])
    return obj


def _default_opener(request: urllib.request.Request, timeout: float) -> Any:
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - scheme checked


# -- client --------------------------------------------------------------------------------


class TrytonClient:
    """One user's JSON-RPC session with one Tryton database.

    ``url`` is the server's base URL (``http://host:8000``), without credentials.
    Every request is bounded by ``timeout_s``, and by ``deadline`` (a
    ``time.monotonic()`` value) when given, so a multi-step check finishes in time.
    """

    def __init__(
        self,
        url: str,
        database: str,
        *,
        timeout_s: float = 10.0,
        opener: Opener | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectorConfigError(
                "Tryton url must be an http(s) URL with a host", stage="config"
            )
        self.base_url = url.rstrip("/")
        self.database = database
        self.timeout_s = timeout_s
        self.deadline: float | None = None
        self._opener = opener or _default_opener
        self._authorization: str | None = None
        self._request_id = 0
        #: user id and context (``res.user.get_preferences``) once logged in
        self.user_id: int | None = None
        self.context: dict[str, Any] = {}

    def __repr__(self) -> str:
        state = "logged in" if self._authorization else "not logged in"
        return f"TrytonClient({self.base_url!r}, database={self.database!r}, {state})"

    @property
    def logged_in(self) -> bool:
        """Whether the client holds a session."""
        return self._authorization is not None

    # -- server ------------------------------------------------------------------------

    def server_version(self) -> str:
        """Return the server's series (``"8.0"``); stage ``reachable`` / ``version`` on failure."""
        result = self._post(
            f"{self.base_url}/rpc/", "common.server.version", [], stage=STAGE_REACHABLE
        )
        if not isinstance(result, str):
            raise ConnectorError(
                "The server's answer to common.server.version is not a "
                "version string: is this a Tryton server?",
                stage=STAGE_VERSION,
                retryable=False,
            )
        return result

    # -- session -----------------------------------------------------------------------

    def login(self, username: str, password: str, *, language: str = "en") -> None:
        """Open a session and load the user's context; ``ConnectorConfigError`` if refused."""
        result = self._post(
            self._db_url,
            "common.db.login",
            [username, {"password": password}, language],
            stage=STAGE_AUTH,
        )
        if (
            not isinstance(result, list)
            or len(result) < 2
            or not isinstance(result[0], int)
            or not isinstance(result[1], str)
        ):
            raise ConnectorError(
                "Unexpected answer to common.db.login", stage=STAGE_AUTH, retryable=False
            )
        user_id, session = result[0], result[1]
        token = base64.b64encode(f"{username}:{user_id}:{session}".encode()).decode("ascii")
        self._authorization = f"Session {token}"
        self.user_id = user_id
        preferences = self.call("model.res.user.get_preferences", True, {}, stage=STAGE_AUTH)
        self.context = dict(preferences) if isinstance(preferences, Mapping) else {}

    def logout(self) -> None:
        """Close the session on the server (errors ignored: the session expires anyway)."""
        if self._authorization is None:
            return
        try:
            self._post(self._db_url, "common.db.logout", [], stage=STAGE_AUTH)
        except ConnectorError:
            pass
        finally:
            self._authorization = None
            self.user_id = None

    # -- models ------------------------------------------------------------------------

    def call(self, method: str, *params: Any, stage: str = STAGE_EXPORT) -> Any:
        """Call ``method`` (``model.sale.sale.search`` ...) in the session; return its result."""
        if self._authorization is None:
            raise ConnectorError("Not logged in to Tryton", stage=STAGE_AUTH, retryable=False)
        return self._post(self._db_url, method, list(params), stage=stage)

    def model(self, model: str, method: str, *params: Any, stage: str = STAGE_EXPORT) -> Any:
        """Call ``model.<model>.<method>(*params, context)`` with the user's context."""
        return self.call(f"model.{model}.{method}", *params, self.context, stage=stage)

    def search_read(
        self,
        model: str,
        domain: Sequence[Any],
        fields: Sequence[str],
        *,
        limit: int | None = None,
        order: Sequence[tuple[str, str]] | None = None,
        stage: str = STAGE_EXPORT,
    ) -> list[dict[str, Any]]:
        """Return ``fields`` of the records of ``model`` matching ``domain``."""
        rows = self.model(
            model,
            "search_read",
            list(domain),
            0,
            limit,
            [list(o) for o in order] if order else None,
            list(fields),
            stage=stage,
        )
        if not isinstance(rows, list):
            raise ConnectorError(
                f"Unexpected answer to {model}.search_read", stage=stage, retryable=False
            )
        return [row for row in rows if isinstance(row, dict)]

    # -- transport ---------------------------------------------------------------------

    @property
    def _db_url(self) -> str:
        return f"{self.base_url}/{self.database}/rpc/"

    def _timeout(self, stage: str) -> float:
        if self.deadline is None:
            return self.timeout_s
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise ConnectorTransientError("Tryton did not answer in time", stage=stage)
        return min(self.timeout_s, remaining)

    def _post(self, url: str, method: str, params: list[Any], *, stage: str) -> Any:
        self._request_id += 1
        body = json.dumps(
            {"id": self._request_id, "method": method, "params": params}, default=encode_value
        ).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._authorization is not None and method != "common.db.login":
            headers["Authorization"] = self._authorization
        request = urllib.request.Request(  # noqa: S310 - http(s) only, checked in __init__
            url, data=body, headers=headers, method="POST"
        )
        try:
            with self._opener(request, self._timeout(stage)) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the response and its socket
            raise self._http_error(exc.code, method, stage) from None
        except TimeoutError:
            raise ConnectorTransientError(
                f"Tryton at {self.base_url} did not answer {method} in time", stage=stage
            ) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConnectorTransientError(
                f"Cannot reach Tryton at {self.base_url}: {_clip(str(reason))}",
                stage=STAGE_REACHABLE if stage in (STAGE_REACHABLE, STAGE_AUTH) else stage,
            ) from None
        try:
            reply = json.loads(payload, object_hook=decode_value)
        except ValueError:
            raise ConnectorError(
                f"Tryton sent an answer to {method} that is not JSON",
                stage=STAGE_VERSION if stage == STAGE_REACHABLE else stage,
                retryable=False,
            ) from None
        if not isinstance(reply, dict) or ("result" not in reply and "error" not in reply):
            raise ConnectorError(
                f"Tryton sent a malformed JSON-RPC answer to {method}", stage=stage, retryable=False
            )
        if reply.get("error") is not None:
            fault = self._fault(reply["error"], method, stage)
            if isinstance(fault, SessionExpiredError):
                self._authorization = None  # log in again before the next call
            raise fault
        return reply.get("result")

    def _http_error(self, code: int, method: str, stage: str) -> ConnectorError:
        if code == 401:
            if method == "common.db.login":
                return ConnectorConfigError(
                    "Tryton refused the login (wrong username or password)", stage=STAGE_AUTH
                )
            self._authorization = None  # the session expired: the caller may log in again
            return SessionExpiredError("The Tryton session expired", stage=STAGE_AUTH)
        if code == 403:
            return ConnectorConfigError(
                f"Tryton does not allow {method} for this user (HTTP 403)", stage=STAGE_PERMISSION
            )
        if code == 404:
            return ConnectorConfigError(
                f"Tryton has no database {self.database!r} (HTTP 404)", stage=STAGE_DATABASE
            )
        if code == 429:
            return ConnectorTransientError(
                "Tryton refused the request: too many requests (HTTP 429)", stage=stage
            )
        if code >= 500:
            return ConnectorTransientError(
                f"Tryton failed with HTTP {code} on {method}", stage=stage
            )
        return ConnectorError(
            f"Tryton answered HTTP {code} to {method}", stage=stage, retryable=False
        )

    @staticmethod
    def _fault(error: Any, method: str, stage: str) -> ConnectorError:
        if isinstance(error, list) and error and isinstance(error[0], str):
            name, args = error[0], error[1] if len(error) > 1 else None
            if name in ("UserError", "UserWarning"):
                texts = [a for a in (args or []) if isinstance(a, str) and a]
                if name == "UserWarning" and texts:
                    texts = texts[1:]  # the first element is the warning's name
                message = " - ".join(texts) or name
                if _SESSION_VANISHED in message:
                    # Tryton deleted the session record while this request used it
                    # (seen under load with concurrent logins): not the order's fault.
                    return SessionExpiredError(
                        f"The Tryton session vanished during {method}", stage=STAGE_AUTH
                    )
                return TrytonUserError(
                    f"Tryton refused {method}: {_clip(message)}", stage=stage, fault=name
                )
            if name == "ConcurrencyException":
                return ConnectorTransientError(
                    f"Tryton reported a concurrent change during {method}", stage=stage
                )
            if name == "LoginException":
                return ConnectorConfigError(
                    "Tryton asks for more login parameters than a password", stage=STAGE_AUTH
                )
            first_line = name.splitlines()[0] if name else "unknown error"
            return ConnectorError(
                f"Tryton failed on {method}: {_clip(first_line)}", stage=stage, retryable=False
            )
        return ConnectorError(f"Tryton failed on {method}", stage=stage, retryable=False)


#: Part of the UserError Tryton raises when a request's session record is gone.
_SESSION_VANISHED = 'of "Session" that don\'t exist'


class SessionExpiredError(ConnectorTransientError):
    """The server no longer knows the session (HTTP 401 after login): log in again.

    Transient: the connector retries once with a fresh login; if the new session
    is lost too (a server under heavy load), the pipeline's retry tiers try later,
    and the retry finds a sale already created by reference.
    """
