"""Helpers for the cloud-market tests: recorded fixtures, fake credentials, a settable clock.

Every server here listens on 127.0.0.1 (an OS-chosen free port) and is stopped by its own
handle; no test sends anything to a real cloud.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.recorded_api import RecordedApi, Reply

RECORDED = Path(__file__).resolve().parent / "recorded"
T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def fixture(name: str) -> dict[str, Any]:
    """A recorded file's JSON (routes and the named error replies kept beside them)."""
    return json.loads((RECORDED / name).read_text(encoding="utf-8"))


def reply(name: str, key: str) -> Reply:
    return Reply.from_dict(fixture(name)[key])


def recorded(*names: str, tls: tuple[Path, Path] | None = None) -> RecordedApi:
    return RecordedApi.from_files(*(RECORDED / n for n in names), tls=tls)


class Clock:
    """A clock tests move by hand (feeds and markets take `clock=`)."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeAzureCredential:
    """A TokenCredential of our own: hands out a fixed bearer token, never touches the network."""

    def __init__(self, token: str = "fake-arm-token") -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


def fake_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake static keys, no shared files, no instance metadata lookups (no traffic off loopback)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for var in ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(var, raising=False)


def no_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_aws_env(monkeypatch, tmp_path)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's ThreadedMotoServer on 127.0.0.1 (a free port), stopped on exit; yields its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def aws_session() -> Any:
    import boto3

    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing")


def gcp_service_account_file(path: Path, token_uri: str, project: str) -> Path:
    """A service-account key file (a fresh RSA key) whose token endpoint is a recorded server on loopback.

    (google-auth always sends authorized_user refreshes to Google's own endpoint, so those files
    cannot be used here; a service account's `token_uri` is honoured.)"""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({"type": "service_account", "project_id": project, "private_key_id": "0" * 40,
                                "private_key": pem, "client_email": f"etrid-prices@{project}.iam.gserviceaccount.com",
                                "client_id": "100000000000000000000", "token_uri": token_uri}))
    return path
