"""Fixtures for the Zammad client and simulator tests: a seeded simulator on 127.0.0.1 and
the real client talking to it through a real aiohttp session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from app.zammad.client import ZammadClient
from devtools.zammad_simulator import ZammadSimulator

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "zammad"
#: Distinctive enough that finding it in a message is never a coincidence.
TOKEN = "sEcReT-tok3n-4711-do-not-leak"
TICKET_ID = 4711


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
async def simulator() -> AsyncIterator[ZammadSimulator]:
    sim = ZammadSimulator(api_token=TOKEN)
    sim.seed_fixture_ticket(FIXTURES)
    await sim.start("127.0.0.1", 0)
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def client(simulator: ZammadSimulator, session: aiohttp.ClientSession) -> ZammadClient:
    assert simulator.base_url is not None
    return ZammadClient(session, simulator.base_url, TOKEN, timeout_seconds=5.0)
