"""Shared fixtures: real services on loopback, started here and stopped by pid."""

from __future__ import annotations

import os

# Ray binds to the machine's first interface address unless told otherwise; every Ray process the
# tests start must live on loopback. (Ray reads this when it is first imported, hence here.)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
from etrid_ray.ray_auth import use_token  # noqa: E402  (imports no Ray)

# Token auth on for every cluster the tests start and every driver they run; on a machine with an empty
# home nothing else creates the token `ray start` needs, so the project makes its own (see ray_auth).
use_token()

from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from etrid_ray.devnet.process import DevnetProcess  # noqa: E402


@pytest.fixture(scope="session")
def devnet() -> Iterator[DevnetProcess]:
    """One instant-seal devnet shared by the session (tests use their own accounts or read deltas)."""
    with DevnetProcess(block_time=0) as proc:
        yield proc


@pytest.fixture()
def fresh_devnet() -> Iterator[DevnetProcess]:
    """A devnet of one's own, for tests that need exact genesis balances or restart it."""
    with DevnetProcess(block_time=0) as proc:
        yield proc
