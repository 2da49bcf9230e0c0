"""Fixtures shared by the storage tests: the fixture ticket as a snapshot, and an empty root."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.workflow.ports import TicketSnapshot

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "zammad" / "ticket-expand.json"
ARCHIVED_AT = datetime(2025, 3, 6, 13, 20, 5, tzinfo=UTC)


@pytest.fixture()
def snapshot() -> TicketSnapshot:
    """Ticket 4711 (``ticket-expand.json``) archived at 2025-03-06T13:20:05Z, no articles."""
    return TicketSnapshot(json.loads(FIXTURE.read_text(encoding="utf-8")), [], [], ARCHIVED_AT)


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    """An empty storage root."""
    path = tmp_path / "root"
    path.mkdir()
    return path
