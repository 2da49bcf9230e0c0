"""Fixtures of the audit tests: signed archives (session), and a storage root holding them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from app.workflow.ports import StoredArchive
from tests.audit.archives import sign_pdfs, store_archives
from tests.conftest import PFX_PASSWORD, DevPki


@pytest.fixture(scope="session")
def signed_pdfs(dev_pki: DevPki) -> list[bytes]:
    """Three PAdES B-T archives of three tickets, signed once per test run."""
    return sign_pdfs(
        dev_pki.folder, PFX_PASSWORD, [f"Ticket {n}: printer on floor {n} jams." for n in (1, 2, 3)]
    )


@dataclass
class ArchiveRoot:
    root: Path
    stored: list[StoredArchive]
    trust: Path

    def sidecar(self, index: int) -> Path:
        path = self.stored[index].path
        return path.with_name(path.name + ".json")


@pytest.fixture
def archive_root(tmp_path: Path, signed_pdfs: list[bytes], dev_pki: DevPki) -> ArchiveRoot:
    """A storage root with the three archives, their sidecars and the manifest (real store)."""
    root = tmp_path / "archive"
    root.mkdir()
    return ArchiveRoot(root, store_archives(root, signed_pdfs), dev_pki.root_pem)
