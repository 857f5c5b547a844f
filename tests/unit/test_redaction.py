"""RedactedConfig and scrub: secrets readable by code, never visible when printed."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.config_schema import MASK
from domain.redaction import RedactedConfig, scrub

PASSWORD = "pa55-W0rd-Redacted"
TOKEN = "tok-9f8e7d6c5b4a"
DATA: dict[str, Any] = {"host": "erp.example.com", "password": PASSWORD, "token": TOKEN, "n": 3}
SECRETS = frozenset({"password", "token"})


@pytest.fixture
def config() -> RedactedConfig:
    return RedactedConfig(DATA, SECRETS)


def test_values_are_readable_as_a_mapping(config: RedactedConfig) -> None:
    assert config["password"] == PASSWORD
    assert config.get("token") == TOKEN
    assert config.get("missing") is None
    assert list(config) == ["host", "password", "token", "n"]
    assert len(config) == 4
    assert "host" in config
    assert dict(config) == DATA
    assert config == DATA
    with pytest.raises(KeyError):
        config["missing"]


def test_every_printed_form_masks_secrets(
    config: RedactedConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("test.redaction").info("config: %s", config)
    logging.getLogger("test.redaction").debug("config: %r", config)
    rendered = [
        repr(config),
        str(config),
        f"{config}",
        f"{config!r}",
        "%s" % (config,),  # noqa: UP031 - the old formatting path must mask too
        "{}".format(config),  # noqa: UP032
        repr([config]),
        repr({"cfg": config}),
        caplog.text,
    ]
    for text in rendered:
        assert PASSWORD not in text
        assert TOKEN not in text
        assert MASK in text
        assert "erp.example.com" in text
    assert repr(config) == (
        "RedactedConfig({'host': 'erp.example.com', 'password': '***', 'token': '***', 'n': 3})"
    )


def test_masked_and_secret_values(config: RedactedConfig) -> None:
    assert config.masked() == {"host": "erp.example.com", "password": MASK, "token": MASK, "n": 3}
    assert sorted(config.secret_values()) == sorted([PASSWORD, TOKEN])
    assert config.secret_keys == SECRETS


def test_secret_values_skip_empty_and_stringify() -> None:
    config = RedactedConfig({"a": "", "b": None, "c": 12345678, "d": "x"}, frozenset("abc"))
    assert config.secret_values() == ["12345678"]


def test_it_is_an_immutable_copy() -> None:
    source = dict(DATA)
    config = RedactedConfig(source, SECRETS)
    source["password"] = "changed"
    assert config["password"] == PASSWORD
    with pytest.raises(TypeError):
        config["password"] = "x"  # type: ignore[index]
    with pytest.raises(AttributeError):
        config.extra = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        vars(config)


def test_secret_keys_not_in_the_data_are_harmless() -> None:
    config = RedactedConfig({"host": "h"}, frozenset({"password"}))
    assert repr(config) == "RedactedConfig({'host': 'h'})"
    assert config.secret_values() == []


def test_nested_secret_values_are_masked_whole() -> None:
    config = RedactedConfig({"auth": {"user": "u", "password": PASSWORD}}, frozenset({"auth"}))
    assert PASSWORD not in repr(config)
    assert config.masked() == {"auth": MASK}


# --- scrub ------------------------------------------------------------------------------


def test_scrub_replaces_every_occurrence() -> None:
    text = f"login {PASSWORD} failed; retried with {PASSWORD} and {TOKEN}"
    assert scrub(text, [PASSWORD, TOKEN]) == "login *** failed; retried with *** and ***"


def test_scrub_replaces_longer_secrets_first() -> None:
    assert scrub("key=abcdef", ["abc", "abcdef"]) == "key=***"
    assert scrub("key=abcdef", ["abcdef", "abc"]) == "key=***"


def test_scrub_ignores_empty_secrets_and_accepts_iterators() -> None:
    assert scrub("nothing here", ["", ""]) == "nothing here"
    assert scrub("a secret here", iter(["secret"])) == "a *** here"
    assert scrub("text", []) == "text"


secrets_ = st.text(alphabet=st.characters(exclude_characters="*"), min_size=1, max_size=20)


@given(
    prefix=st.text(max_size=30),
    suffix=st.text(max_size=30),
    secrets=st.lists(secrets_, min_size=1, max_size=4),
)
def test_scrubbed_text_contains_no_secret(prefix: str, suffix: str, secrets: list[str]) -> None:
    text = prefix + " ".join(secrets) + suffix
    scrubbed = scrub(text, secrets)
    for secret in secrets:
        assert secret not in scrubbed
