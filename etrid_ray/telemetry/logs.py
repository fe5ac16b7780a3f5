"""Log lines for people (default) or for log shippers (`--log-format json`), never carrying a secret.

Keys are never logged by design (the `Signer` hides its secret even from `repr`); the redacting
filter here is the second line of defence: every record's final text (message, arguments,
traceback) is searched for the secret values the process can see — the seed in `ETRID_SEED` (or the
variable the config names), the contents of `ETRID_SEED_FILE`, and cloud secrets — and each is
replaced by `[REDACTED]` before any handler writes it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from etrid_ray.config import env_setting

LOG_FORMATS = ("text", "json")
SECRET_ENV = ("ETRID_SEED", "CONSUMER_SEED", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_CLIENT_SECRET",
              "GOOGLE_APPLICATION_CREDENTIALS_JSON")
SECRET_FILE_ENV = ("ETRID_SEED_FILE",)
REDACTED = "[REDACTED]"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def secret_values(extra_env: Iterable[str] = (), files: Iterable[str | Path] = ()) -> list[str]:
    """The secret strings this process holds (the whole value and, for a phrase, nothing shorter than it:
    a mnemonic's single words are ordinary English). It reads the secrets' own variables (never settings) in
    whatever process logs — the head, the CLI, a Ray task worker — so that it can redact them there."""
    out: set[str] = set()
    for name in (*SECRET_ENV, *extra_env):
        value = os.environ.get(name, "").strip()
        if len(value) >= 4:
            out.add(value)
    for path in (*[os.environ.get(n, "") for n in SECRET_FILE_ENV], *files):
        if not path:
            continue
        try:
            value = Path(path).expanduser().read_text().strip()
        except OSError:
            continue
        if len(value) >= 4:
            out.add(value)
    # the phrase without its derivation path, too (`word … word//hard` → `word … word`)
    for value in list(out):
        if "//" in value and not value.startswith("//"):
            out.add(value.split("//", 1)[0].strip())
    return sorted((v for v in out if len(v) >= 4), key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text


class SecretRedactor(logging.Filter):
    """Rewrites each record's text with every known secret replaced (secrets re-read every 30 s)."""

    def __init__(self, extra_env: Iterable[str] = ()) -> None:
        super().__init__()
        self._extra = tuple(extra_env)
        self._secrets: list[str] = []
        self._read_at = 0.0

    def secrets(self) -> list[str]:
        if time.monotonic() - self._read_at > 30:
            self._secrets = secret_values(self._extra)
            self._read_at = time.monotonic()
        return self._secrets

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self.secrets()
        if not secrets:
            return True
        message = record.getMessage()
        clean = redact(message, secrets)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, secrets)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts (ISO 8601, UTC), level, logger, message, and exc when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.threadName and record.threadName != "MainThread":
            out["thread"] = record.threadName
        return json.dumps(out, ensure_ascii=False, default=str)


def make_handler(fmt: str = "text", stream: IO[str] | None = None) -> logging.Handler:
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format {fmt!r}: use one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(SecretRedactor())
    handler._etrid = True  # type: ignore[attr-defined]
    return handler


def configure_logging(fmt: str | None = None, level: int | str = logging.INFO, stream: IO[str] | None = None, *,
                      force: bool = True) -> None:
    """Sets the root logger up with our handler (format from `fmt`, else the `ETRID_LOG_FORMAT` env var, else
    text) and puts the redactor on every root handler. Calling it again replaces our handler, never anyone
    else's; with `force=False` (inside a Ray worker, say) it adds ours only when the root has none."""
    fmt = (fmt or env_setting("log_format") or "text").lower()
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_etrid", False):
            root.removeHandler(h)
        elif not any(isinstance(f, SecretRedactor) for f in h.filters):
            h.addFilter(SecretRedactor())
    if force or not root.handlers:
        root.addHandler(make_handler(fmt, stream))
    root.setLevel(level)
