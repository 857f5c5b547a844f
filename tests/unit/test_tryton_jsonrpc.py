"""The Tryton JSON-RPC client: wire format and error translation, against a fake opener."""

from __future__ import annotations

import base64
import datetime
import io
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from adapters.connectors.tryton.jsonrpc import (
    SessionExpiredError,
    TrytonClient,
    TrytonUserError,
    decode_value,
    encode_value,
)
from domain.errors import (
    ConnectorConfigError,
    ConnectorError,
    ConnectorRejectedError,
    ConnectorTransientError,
)

PASSWORD = "jsonrpc-Secret-Password-77"


class FakeResponse(io.BytesIO):
    def __enter__(self) -> FakeResponse:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()


Handler = Callable[[str, dict[str, Any], dict[str, str]], Any]


def opener_for(handler: Handler, calls: list[dict[str, Any]]) -> Any:
    """An opener that decodes each request and lets ``handler`` answer it."""

    def open_(request: urllib.request.Request, timeout: float) -> FakeResponse:
        assert isinstance(request.data, bytes)
        payload = json.loads(request.data)
        headers = {k.lower(): v for k, v in request.header_items()}
        calls.append(
            {"url": request.full_url, "payload": payload, "headers": headers, "timeout": timeout}
        )
        answer = handler(request.full_url, payload, headers)
        if isinstance(answer, BaseException):
            raise answer
        return FakeResponse(json.dumps({"id": payload["id"], **answer}).encode())

    return open_


def http_error(code: int) -> urllib.error.HTTPError:
    return urllib.error.HTTPError("http://erp/db/rpc/", code, "status", {}, None)  # type: ignore[arg-type]


def server(handler: Handler | None = None) -> Handler:
    """A minimal Tryton: login ok, preferences, then ``handler`` for everything else."""

    def answer(url: str, payload: dict[str, Any], headers: dict[str, str]) -> Any:
        method = payload["method"]
        if method == "common.db.login":
            return {"result": [7, "session-token"]}
        if method == "model.res.user.get_preferences":
            return {"result": {"company": 1, "language": "en"}}
        if method == "common.db.logout":
            return {"result": None}
        assert handler is not None, method
        return handler(url, payload, headers)

    return answer


def client(handler: Handler, calls: list[dict[str, Any]] | None = None) -> TrytonClient:
    return TrytonClient(
        "http://erp.example:8000/",
        "db",
        timeout_s=3,
        opener=opener_for(handler, [] if calls is None else calls),
    )


def test_values_travel_in_trytons_class_form() -> None:
    assert encode_value(Decimal("2.50")) == {"__class__": "Decimal", "decimal": "2.50"}
    assert encode_value(datetime.date(2026, 1, 2)) == {
        "__class__": "date",
        "year": 2026,
        "month": 1,
        "day": 2,
    }
    assert decode_value({"__class__": "Decimal", "decimal": "1.10"}) == Decimal("1.10")
    assert decode_value({"__class__": "bytes", "base64": "aGk="}) == b"hi"
    assert decode_value({"plain": 1}) == {"plain": 1}
    with pytest.raises(TypeError):
        encode_value(object())


def test_login_sends_the_password_once_then_uses_the_session_header() -> None:
    calls: list[dict[str, Any]] = []
    rpc = client(server(lambda url, payload, headers: {"result": [1]}), calls)
    rpc.login("admin", PASSWORD)
    assert rpc.search_read("sale.sale", [("reference", "=", "k")], ["id"]) == []
    login, preferences, search = calls
    assert login["url"] == "http://erp.example:8000/db/rpc/"
    assert login["payload"]["params"] == ["admin", {"password": PASSWORD}, "en"]
    assert "authorization" not in login["headers"]
    token = base64.b64encode(b"admin:7:session-token").decode()
    assert preferences["headers"]["authorization"] == f"Session {token}"
    assert search["payload"]["method"] == "model.sale.sale.search_read"
    assert search["payload"]["params"][-1] == {"company": 1, "language": "en"}
    for call in (preferences, search):
        assert PASSWORD not in json.dumps(call["payload"])
    assert PASSWORD not in repr(rpc)


def test_server_version_is_asked_at_the_root_endpoint() -> None:
    calls: list[dict[str, Any]] = []
    rpc = client(lambda url, payload, headers: {"result": "8.0"}, calls)
    assert rpc.server_version() == "8.0"
    assert calls[0]["url"] == "http://erp.example:8000/rpc/"


def test_a_server_that_is_not_tryton_fails_at_the_version_stage() -> None:
    rpc = client(lambda url, payload, headers: {"result": {"not": "a version"}})
    with pytest.raises(ConnectorError) as excinfo:
        rpc.server_version()
    assert excinfo.value.stage == "version"


@pytest.mark.parametrize(
    ("failure", "error_class", "retryable", "stage"),
    [
        (http_error(401), ConnectorConfigError, False, "auth"),
        (http_error(404), ConnectorConfigError, False, "database"),
        (http_error(429), ConnectorTransientError, True, "auth"),
        (http_error(503), ConnectorTransientError, True, "auth"),
        (
            urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")),
            ConnectorTransientError,
            True,
            "reachable",
        ),
        (TimeoutError("timed out"), ConnectorTransientError, True, "auth"),
    ],
    ids=["401", "404", "429", "503", "refused", "timeout"],
)
def test_login_failures_are_classified(
    failure: BaseException, error_class: type[ConnectorError], retryable: bool, stage: str
) -> None:
    rpc = client(lambda url, payload, headers: failure)
    with pytest.raises(ConnectorError) as excinfo:
        rpc.login("admin", PASSWORD)
    error = excinfo.value
    assert type(error) is error_class
    assert error.retryable is retryable
    assert error.stage == stage
    assert PASSWORD not in str(error) + repr(error)


def test_a_user_error_is_a_permanent_rejection_with_trytons_message() -> None:
    fault = {"error": ["UserError", ["The product is not salable.", "Pick another.", None]]}
    rpc = client(server(lambda url, payload, headers: fault))
    rpc.login("admin", PASSWORD)
    with pytest.raises(TrytonUserError) as excinfo:
        rpc.model("sale.sale", "create", [{}])
    error = excinfo.value
    assert isinstance(error, ConnectorRejectedError)
    assert error.retryable is False
    assert error.fault == "UserError"
    assert "The product is not salable. - Pick another." in error.message


def test_a_user_warning_is_rejected_too_without_its_internal_name() -> None:
    fault = {"error": ["UserWarning", ["warning_key_123", "Credit limit exceeded", ""]]}
    rpc = client(server(lambda url, payload, headers: fault))
    rpc.login("admin", PASSWORD)
    with pytest.raises(TrytonUserError) as excinfo:
        rpc.model("sale.sale", "create", [{}])
    assert excinfo.value.fault == "UserWarning"
    assert "Credit limit exceeded" in excinfo.value.message
    assert "warning_key_123" not in excinfo.value.message


def test_a_concurrency_exception_is_transient() -> None:
    rpc = client(
        server(
            lambda url, payload, headers: {
                "error": ["ConcurrencyException", "Records were modified in the meanwhile"]
            }
        )
    )
    rpc.login("admin", PASSWORD)
    with pytest.raises(ConnectorTransientError):
        rpc.model("sale.sale", "write", [1], {})


def test_a_server_crash_is_permanent_and_quotes_only_the_first_line() -> None:
    rpc = client(
        server(
            lambda url, payload, headers: {
                "error": [
                    "KeyError: 'x'\nmore",
                    "Traceback (most recent call last):\n  secret path",
                ]
            }
        )
    )
    rpc.login("admin", PASSWORD)
    with pytest.raises(ConnectorError) as excinfo:
        rpc.model("sale.sale", "create", [{}])
    error = excinfo.value
    assert type(error) is ConnectorError
    assert error.retryable is False
    assert "KeyError: 'x'" in error.message
    assert "Traceback" not in error.message


def test_an_expired_session_is_reported_so_the_caller_can_log_in_again() -> None:
    rpc = client(server(lambda url, payload, headers: http_error(401)))
    rpc.login("admin", PASSWORD)
    with pytest.raises(SessionExpiredError):
        rpc.model("sale.sale", "search", [], 0, 1, None)
    assert not rpc.logged_in


def test_a_session_deleted_under_a_request_is_an_expired_session_not_a_rejection() -> None:
    # Tryton raises this UserError when the session record vanished mid-request
    # (concurrent logins under load): the order is fine, a fresh login will do.
    message = 'You are trying to read records "98" of "Session" that don\'t exist.'
    rpc = client(server(lambda url, payload, headers: {"error": ["UserError", [message, ""]]}))
    rpc.login("admin", PASSWORD)
    with pytest.raises(SessionExpiredError):
        rpc.model("sale.sale", "create", [{}])
    assert not rpc.logged_in


def test_an_answer_that_is_not_json_is_an_error() -> None:
    def open_(request: urllib.request.Request, timeout: float) -> FakeResponse:
        return FakeResponse(b"<html>proxy error</html>")

    rpc = TrytonClient("http://erp.example", "db", opener=open_)
    with pytest.raises(ConnectorError) as excinfo:
        rpc.server_version()
    assert excinfo.value.stage == "version"


def test_the_deadline_bounds_every_request() -> None:
    calls: list[dict[str, Any]] = []
    rpc = client(lambda url, payload, headers: {"result": "8.0"}, calls)
    rpc.deadline = 0.0  # long past
    with pytest.raises(ConnectorTransientError, match="in time"):
        rpc.server_version()
    assert calls == []


@pytest.mark.parametrize("url", ["ftp://erp", "erp.example:8000", "http://"])
def test_only_http_urls_with_a_host_are_accepted(url: str) -> None:
    with pytest.raises(ConnectorConfigError):
        TrytonClient(url, "db")
