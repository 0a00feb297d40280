from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from copilot.settings import KafkaSettings


def test_plaintext_adds_only_the_protocol() -> None:
    assert KafkaSettings().client_options() == {"security_protocol": "PLAINTEXT"}


def test_sasl_ssl_carries_credentials_and_certificates() -> None:
    settings = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="copilot",
        sasl_password=SecretStr("s3cret"),
        ssl_cafile=Path("/etc/kafka/ca.pem"),
    )

    assert settings.client_options() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "copilot",
        "sasl_plain_password": "s3cret",
        "ssl_cafile": "/etc/kafka/ca.pem",
    }
    assert "s3cret" not in repr(settings)


def test_certificates_are_ignored_without_tls() -> None:
    settings = KafkaSettings(security_protocol="PLAINTEXT", ssl_cafile=Path("/ca.pem"))
    assert "ssl_cafile" not in settings.client_options()


def test_sasl_without_credentials_is_refused_at_start_up() -> None:
    with pytest.raises(ValidationError, match="needs sasl_mechanism and sasl_username"):
        KafkaSettings(security_protocol="SASL_PLAINTEXT")
