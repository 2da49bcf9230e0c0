"""Where the audited folder is under the storage root: from STORAGE_ROOT, else the nearest ``_manifest``."""

from __future__ import annotations

from pathlib import Path

from app.audit.root_position import described_here, root_prefix


def test_the_position_comes_from_storage_root_else_the_nearest_manifest(tmp_path: Path) -> None:
    storage = tmp_path / "archive"
    (storage / "Support" / "2026").mkdir(parents=True)
    (storage / ".hidden").mkdir()
    assert root_prefix(storage / "Support" / "2026", storage) == "Support/2026"
    assert root_prefix(storage / ".hidden", storage) == ".hidden"
    assert root_prefix(storage, storage) == ""
    assert root_prefix(storage / "Support") is None  # no manifest anywhere: the position is unknown

    (storage / "_manifest").mkdir()
    assert root_prefix(storage / "Support") == "Support"
    assert root_prefix(storage / "Support", tmp_path / "elsewhere") == "Support"  # not within it
    (tmp_path / "_manifest").symlink_to(storage / "_manifest")  # a symlink is not the manifest
    assert root_prefix(storage / "Support") == "Support"


def test_a_sidecar_path_must_be_the_prefix_and_the_walked_path() -> None:
    assert described_here("Support/2026/T.pdf", "2026/T.pdf", "Support")
    assert described_here("2026/T.pdf", "2026/T.pdf", "")
    assert not described_here("Support/2026/T.pdf", "2026/T.pdf", "")  # moved out of Support
    assert not described_here("Sales/2026/T.pdf", "2026/T.pdf", "Support")


def test_a_folder_whose_position_is_unknown_accepts_a_path_ending_in_the_walked_one() -> None:
    # a copy of one group folder, audited where no storage root is known around it
    assert described_here("Support/2026/T.pdf", "2026/T.pdf", None)
    assert described_here("2026/T.pdf", "2026/T.pdf", None)
    assert not described_here("Support/2026/U.pdf", "2026/T.pdf", None)
    assert not described_here("Support/x2026/T.pdf", "2026/T.pdf", None)
    assert not described_here(None, "2026/T.pdf", None)
