"""``python -m app audit``: real archives from the real store, tampered with as an attacker or a
failing share would, each reported with its code; exit statuses; the JSON document's shape."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path, PurePosixPath

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.audit.cli import main
from app.storage.manifest import ArchiveManifest
from app.storage.manifest_format import EVENT_LTA_REFRESH, ManifestEntry
from app.storage.store import ArchiveStore
from app.storage.versions import NewVersion, archive_families, lta_version_name
from app.workflow.ports import TicketSnapshot
from tests.audit.archives import ARCHIVED_AT
from tests.audit.conftest import ArchiveRoot

REPO = Path(__file__).resolve().parents[2]


def audit(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(args), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def audit_json(archives: ArchiveRoot, *args: str) -> tuple[int, dict]:
    status, out, _ = audit(
        "--root", str(archives.root), "--trust", str(archives.trust), "--json", "--jobs", "1", *args
    )
    return status, json.loads(out)


def signed_ranges(pdf: bytes) -> tuple[int, int, int, int]:
    *_, match = re.finditer(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]", pdf)
    a, b, c, d = (int(x) for x in match.groups())
    return a, b, c, d


def results(document: dict) -> dict[str, str]:
    return {item["path"]: item["result"] for item in document["files"]}


def codes(document: dict, path: str) -> set[str]:
    (item,) = [f for f in document["files"] if f["path"] == path]
    return {p["code"] for p in item["problems"]}


def test_good_archives_are_ok_and_exit_0(archive_root: ArchiveRoot) -> None:
    status, document = audit_json(archive_root, "--manifest")

    assert status == 0
    assert set(results(document).values()) == {"ok"} and len(document["files"]) == 3
    item = document["files"][0]
    assert item["signature_check"] == "byte_range" and item["pades_level"] == "B-T"
    assert item["sha256"] == archive_root.stored[0].sha256 and item["size"] == archive_root.stored[0].size
    assert document["summary"]["ok"] is True and document["summary"]["trust_checked"] is True
    assert document["manifest"]["ok"] is True and document["manifest"]["lines"] == 3


def test_an_archive_with_a_sidecar_over_one_mib_is_ok(
    tmp_path: Path, signed_pdfs: list[bytes], dev_pki
) -> None:
    """A ticket of 10,000 embedded originals has a sidecar over 1 MiB (its embedded_files):
    the store writes it, so the audit must read it (it reported hash_mismatch, "sidecar is not
    usable: larger than 1048576 bytes", for a valid archive)."""
    root = tmp_path / "archive"
    root.mkdir()
    store = ArchiveStore(root, fsync=False, manifest=ArchiveManifest(root, fsync=False))
    embedded = [{"name": f"article-{n}/body.txt", "sha256": "0" * 64, "size": 2280} for n in range(10_000)]
    ticket = {"id": 31000, "number": "31000", "group": "Support", "created_at": "2026-01-05T10:00:00Z"}
    sidecar = {
        "ticket_id": 31000,
        "ticket_number": "31000",
        "job_id": "job-31000",
        "archived_at": ARCHIVED_AT.isoformat(),
        "signed": True,
        "pades_level": "B-T",
        "embedded_files": embedded,
    }
    stored = asyncio.run(
        store.store(TicketSnapshot(ticket, [], [], ARCHIVED_AT), signed_pdfs[0], sidecar=sidecar)
    )
    assert stored.path.with_name(stored.path.name + ".json").stat().st_size > 1 << 20

    status, document = audit_json(ArchiveRoot(root, [stored], dev_pki.root_pem), "--manifest")

    assert (status, results(document)) == (0, {stored.relative_path: "ok"}), document["files"]


def test_json_document_shape(archive_root: ArchiveRoot) -> None:
    _, document = audit_json(archive_root)

    assert list(document) == ["audit", "manifest", "files", "summary"]
    assert document["manifest"] is None  # not asked for
    assert set(document["audit"]) == {
        "root",
        "started_at",
        "since",
        "expiry_days",
        "trust_roots",
        "manifest",
        "temp_file_minutes",
        "remove_temp_files",
    }
    assert document["audit"]["trust_roots"] == 1 and document["audit"]["expiry_days"] == 90
    for item in document["files"]:
        assert set(item) == {
            "path",
            "result",
            "problems",
            "size",
            "sha256",
            "pades_level",
            "signature_check",
            "evidence_expires_at",
        }
        datetime.fromisoformat(item["evidence_expires_at"])
    summary = document["summary"]
    assert summary["files"] == 3 and summary["problems"] == 0
    assert summary["results"]["ok"] == 3 and set(summary["results"]) >= {
        "ok",
        "hash_mismatch",
        "signature_invalid",
        "missing_sidecar",
        "orphan_sidecar",
        "certificate_expiring",
    }


def test_flipped_byte_is_a_hash_mismatch_and_breaks_the_signature(archive_root: ArchiveRoot) -> None:
    target = archive_root.stored[1]
    data = bytearray(target.path.read_bytes())
    _, before_gap, _, _ = signed_ranges(bytes(data))
    data[before_gap // 2] ^= 0x01  # inside the signed bytes, before the signature's /Contents
    target.path.write_bytes(bytes(data))

    status, document = audit_json(archive_root)

    assert status == 1
    assert results(document)[target.relative_path] == "hash_mismatch"
    assert codes(document, target.relative_path) == {"hash_mismatch", "signature_invalid"}
    others = {p: r for p, r in results(document).items() if p != target.relative_path}
    assert set(others.values()) == {"ok"}


def test_replaced_file_is_a_hash_mismatch(archive_root: ArchiveRoot) -> None:
    # Another archive's bytes: a valid signature of the same signer, but not this file.
    first, second = archive_root.stored[0], archive_root.stored[1]
    first.path.write_bytes(second.path.read_bytes())

    status, document = audit_json(archive_root)

    assert status == 1
    assert codes(document, first.relative_path) == {"hash_mismatch"}


def test_replaced_file_with_a_matching_sidecar_is_caught_by_the_manifest(archive_root: ArchiveRoot) -> None:
    first, second = archive_root.stored[0], archive_root.stored[1]
    first.path.write_bytes(second.path.read_bytes())
    sidecar = json.loads(archive_root.sidecar(0).read_text())
    sidecar.update(sha256=second.sha256, size=second.size)
    archive_root.sidecar(0).write_text(json.dumps(sidecar))

    status, document = audit_json(archive_root)
    assert status == 0  # the sidecar alone cannot tell

    status, document = audit_json(archive_root, "--manifest")
    assert status == 1
    assert codes(document, first.relative_path) == {"manifest_mismatch"}


def test_deleted_sidecar_is_missing_sidecar(archive_root: ArchiveRoot) -> None:
    archive_root.sidecar(2).unlink()

    status, document = audit_json(archive_root)

    assert status == 1
    assert codes(document, archive_root.stored[2].relative_path) == {"missing_sidecar"}


def test_sidecar_without_its_pdf_is_an_orphan(archive_root: ArchiveRoot) -> None:
    archive_root.stored[0].path.unlink()

    status, document = audit_json(archive_root)

    assert status == 1
    orphan = archive_root.stored[0].relative_path + ".json"
    assert results(document)[orphan] == "orphan_sidecar"
    assert len(document["files"]) == 3


def test_deleted_archive_is_missing_against_the_manifest(archive_root: ArchiveRoot) -> None:
    gone = archive_root.stored[1]
    gone.path.unlink()
    archive_root.sidecar(1).unlink()

    status, document = audit_json(archive_root)
    assert status == 0  # without the manifest nothing says it was there

    status, document = audit_json(archive_root, "--manifest")
    assert status == 1
    assert codes(document, gone.relative_path) == {"missing_archive"}
    (item,) = [f for f in document["files"] if f["path"] == gone.relative_path]
    assert gone.sha256 in item["problems"][0]["detail"]
    assert document["summary"]["results"]["missing_archive"] == 1
    assert document["summary"]["problems"] == 1 and document["summary"]["ok"] is False
    assert document["manifest"]["ok"] is True  # the chain itself is intact


def test_deleted_archive_is_reported_in_text_and_despite_since(archive_root: ArchiveRoot) -> None:
    archive_root.stored[0].path.unlink()
    archive_root.sidecar(0).unlink()
    args = ("--root", str(archive_root.root), "--trust", str(archive_root.trust), "--jobs", "1", "--manifest")

    status, out, _ = audit(*args)
    assert status == 1
    assert out.startswith(f"missing_archive       {archive_root.stored[0].relative_path}")
    assert "audited 3 file(s)" in out and "2 ok" in out and "1 missing_archive" in out
    assert out.rstrip().endswith("result: PROBLEMS FOUND")

    status, out, _ = audit(*args, "--since", "2999-01-01")  # a deletion leaves no mtime behind
    assert status == 1 and "audited 1 file(s)" in out and "1 missing_archive" in out


def test_deleted_pdf_beside_its_sidecar_is_one_missing_archive(archive_root: ArchiveRoot) -> None:
    archive_root.stored[0].path.unlink()

    status, document = audit_json(archive_root, "--manifest")

    assert status == 1
    orphan = archive_root.stored[0].relative_path + ".json"
    assert codes(document, orphan) == {"orphan_sidecar", "missing_archive"}
    assert results(document)[orphan] == "missing_archive"
    assert len(document["files"]) == 3


def test_versions_of_an_archive_are_all_kept_by_the_manifest(archive_root: ArchiveRoot) -> None:
    """A newer version (an LTA refresh) is a new file beside the old one; neither stands in for
    the other, so both are ok when present and the old one is missing when deleted."""
    old = archive_root.stored[2]
    sidecar = json.loads(archive_root.sidecar(2).read_text())
    folder = PurePosixPath(old.relative_path).parent
    with NewVersion(archive_root.root, folder, lta_version_name(old.path.name, date(2026, 12, 7))) as version:
        version.file.write(old.path.read_bytes())
        newer = version.publish(sidecar)
    ArchiveManifest(archive_root.root, fsync=False).record_archive(
        newer, sidecar, event=EVENT_LTA_REFRESH, source_path=old.relative_path
    )

    status, document = audit_json(archive_root, "--manifest")
    assert status == 0 and len(document["files"]) == 4

    old.path.unlink()
    archive_root.sidecar(2).unlink()
    status, document = audit_json(archive_root, "--manifest")
    assert status == 1
    assert results(document)[old.relative_path] == "missing_archive"
    assert results(document)[newer.relative_path] == "ok"


def test_archive_the_manifest_records_in_a_skipped_folder_is_checked(archive_root: ArchiveRoot) -> None:
    """An archive under the top-level ``_manifest`` folder (where a group named ``_manifest``
    put them before its name was remapped) is not walked, but the manifest leads to it."""
    source = archive_root.stored[0]
    hidden = archive_root.root / "_manifest" / "2026" / source.path.name
    hidden.parent.mkdir()
    hidden.write_bytes(source.path.read_bytes())
    relative = f"_manifest/2026/{source.path.name}"
    sidecar = json.loads(archive_root.sidecar(0).read_text())
    Path(str(hidden) + ".json").write_text(json.dumps({**sidecar, "path": relative}))
    ArchiveManifest(archive_root.root, fsync=False).record(
        ManifestEntry(path=relative, sha256=source.sha256, size=source.size)
    )

    status, document = audit_json(archive_root, "--manifest")
    assert status == 0 and results(document)[relative] == "ok"

    data = bytearray(hidden.read_bytes())
    data[100] ^= 1
    hidden.write_bytes(bytes(data))
    status, document = audit_json(archive_root, "--manifest")
    assert status == 1 and results(document)[relative] == "hash_mismatch"


def test_group_named_like_the_manifest_folder_is_archived_beside_it_and_audited(
    archive_root: ArchiveRoot, signed_pdfs: list[bytes]
) -> None:
    root = archive_root.root
    store = ArchiveStore(root, fsync=False, manifest=ArchiveManifest(root, fsync=False))
    ticket = {"id": 31999, "number": "31999", "group": "_manifest", "created_at": "2026-01-05T10:00:00Z"}
    sidecar = {"ticket_id": 31999, "ticket_number": "31999", "job_id": "job-31999", "signed": True}
    stored = asyncio.run(
        store.store(TicketSnapshot(ticket, [], [], ARCHIVED_AT), signed_pdfs[0], sidecar=sidecar)
    )

    assert stored.relative_path.split("/")[0] == "zammad_manifest"
    assert stored.relative_path in {family.newest_relative for family in archive_families(root)}
    status, document = audit_json(archive_root, "--manifest")
    assert status == 0 and results(document)[stored.relative_path] == "ok"

    stored.path.unlink()  # the walk finds it: a deletion is seen without the manifest too
    status, document = audit_json(archive_root)
    assert status == 1 and results(document)[stored.relative_path + ".json"] == "orphan_sidecar"


def test_broken_manifest_line_is_reported_with_its_place(archive_root: ArchiveRoot) -> None:
    (day_file,) = (archive_root.root / "_manifest").glob("*.jsonl")
    lines = day_file.read_bytes().splitlines(keepends=True)
    line = json.loads(lines[1])
    line["size"] += 1  # an edited line: its own content, so the next line's prev no longer matches
    lines[1] = json.dumps(line, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    day_file.write_bytes(b"".join(lines))

    status, document = audit_json(archive_root, "--manifest")

    assert status == 1
    broken = document["manifest"]["first_break"]
    assert broken["file"] == day_file.name and broken["line"] == 3
    assert "prev is not the hash of the line before it" in broken["reason"]
    assert document["summary"]["manifest_ok"] is False
    assert set(results(document).values()) == {"ok"}  # the archives themselves are fine


def test_removed_manifest_line_breaks_the_chain(archive_root: ArchiveRoot) -> None:
    (day_file,) = (archive_root.root / "_manifest").glob("*.jsonl")
    lines = day_file.read_bytes().splitlines(keepends=True)
    day_file.write_bytes(lines[0] + lines[2])

    _, document = audit_json(archive_root, "--manifest")

    assert document["manifest"]["first_break"]["line"] == 2


def test_untrusted_signer_is_signature_invalid(archive_root: ArchiveRoot, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Someone Else's Root")])
    now = datetime.now(UTC)
    other = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    other_pem = tmp_path / "other-root.pem"
    other_pem.write_bytes(other.public_bytes(serialization.Encoding.PEM))

    status, out, _ = audit(
        "--root", str(archive_root.root), "--trust", str(other_pem), "--json", "--jobs", "1"
    )

    assert status == 1
    document = json.loads(out)
    assert set(results(document).values()) == {"signature_invalid"}
    detail = document["files"][0]["problems"][0]["detail"]
    assert "does not chain to a trust root" in detail


@pytest.mark.parametrize("listing", [[], ["--all"]])
def test_a_reader_that_goes_away_gets_no_traceback(archive_root: ArchiveRoot, listing: list[str]) -> None:
    """``python -m app audit | head -1``: the pipe is closed before the report is written, the
    files' lines (``--all``) or only the summary at the end: exit 1, as for any report not made."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "audit", "--root", str(archive_root.root), "--manifest", *listing],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)

    assert proc.returncode == 1, err.decode()
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err.decode()


def test_certificate_expiring_within_the_window(archive_root: ArchiveRoot) -> None:
    # The dev certificates live 825 days (signer) and 10 years (root): within 5,000 days they expire.
    status, document = audit_json(archive_root, "--expiry-days", "5000")

    assert status == 1
    assert set(results(document).values()) == {"certificate_expiring"}
    detail = document["files"][0]["problems"][0]["detail"]
    # B-T: the signer's chain counts too (here it ends first), not only the timestamp's.
    assert detail.startswith("a certificate chain of its signature (the signer's, or its signature") and (
        "expires on" in detail
    ), detail

    status, document = audit_json(archive_root, "--expiry-days", "30")
    assert status == 0


def test_since_limits_the_audit_to_recent_changes(archive_root: ArchiveRoot) -> None:
    old = datetime(2020, 1, 1, tzinfo=UTC).timestamp()
    for index in (0, 1):
        for path in (archive_root.stored[index].path, archive_root.sidecar(index)):
            os.utime(path, (old, old))

    _, document = audit_json(archive_root, "--since", "2021-01-01")

    assert [f["path"] for f in document["files"]] == [archive_root.stored[2].relative_path]


def test_text_output_lists_problems_and_the_totals(archive_root: ArchiveRoot) -> None:
    archive_root.sidecar(2).unlink()

    status, out, err = audit(
        "--root", str(archive_root.root), "--trust", str(archive_root.trust), "--jobs", "1", "--manifest"
    )

    assert status == 1 and err == ""
    assert out.startswith(f"missing_sidecar       {archive_root.stored[2].relative_path}")
    assert "audited 3 file(s)" in out and "2 ok" in out and "1 missing_sidecar" in out
    assert "chain intact" in out and out.rstrip().endswith("result: PROBLEMS FOUND")


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert audit("--root", str(tmp_path / "missing"))[0] == 2
    assert audit("--bogus")[0] == 2
    status, _, err = audit("--root", str(tmp_path), "--trust", str(tmp_path / "nope.pem"))
    assert status == 2 and "nope.pem" in err


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_command_line_in_a_process_of_its_own(archive_root: ArchiveRoot, jobs: str) -> None:
    """The real ``python -m app audit`` (worker processes with ``--jobs 2``): same report, exit 1."""
    archive_root.sidecar(1).unlink()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STORAGE_", "SIGNING_", "AUDIT_", "CONFIG_PATH"))
    }
    env["STORAGE_ROOT"] = str(archive_root.root)
    env["SIGNING_TRUST_ROOTS_PATH"] = str(archive_root.trust)

    proc = subprocess.run(
        [sys.executable, "-m", "app", "audit", "--json", "--jobs", jobs],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert proc.returncode == 1, proc.stderr
    document = json.loads(proc.stdout)
    assert [f["result"] for f in document["files"]] == ["ok", "missing_sidecar", "ok"]
    assert document["audit"]["trust_roots"] == 1
