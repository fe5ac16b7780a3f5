"""Shared fixtures: real services on loopback, started here and stopped by pid."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from etrid_ray.testing.devnet_process import DevnetProcess


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
