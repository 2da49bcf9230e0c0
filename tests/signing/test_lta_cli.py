"""``python -m app lta-refresh`` as an operator runs it: a real process on a storage root the
service wrote, certomancer's TSA, OCSP responder and CRLs on loopback."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from pyhanko.pdf_utils.reader import PdfFileReader

from tests.signing.certomancer_pki import build_pki, free_port
from tests.signing.lta_archives import ades_lta, sha256, sign, store
from tests.signing.signing_helpers import REPO_ROOT, pdfsig

SOON, FAR = "25004711", "25004712"
TSA_PASS, PFX_PASS = "Tsa-Lta-S3cret!", "Pfx-Lta-S3cret!"


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def archive_root(cm_pki, animator, session, tmp_path: Path) -> Path:
    """A storage root with two B-T archives: one signed by ``signer-expiring``, one far from expiry."""
    root = tmp_path / "archive"
    root.mkdir()
    await store(root, await sign(cm_pki, session, cert="signer-expiring"), number=SOON, job_id="job-soon")
    await store(root, await sign(cm_pki, session), number=FAR, job_id="job-far")
    return root


def environment(pki, root: Path, **overrides: str | None) -> dict[str, str]:
    env = {
        "PATH": os.environ["PATH"],
        "LANG": "C.UTF-8",
        "STORAGE_ROOT": str(root),
        "TSA_URL": pki.tsa_url,
        "TSA_TIMEOUT_SECONDS": "5",
        "SIGNING_TRUST_ROOTS_PATH": str(pki.root_pem),
        "ALLOW_INSECURE_HTTP": "true",
    }
    env.update(overrides)  # type: ignore[arg-type]  # None values are removed below
    return {k: v for k, v in env.items() if v is not None}


async def run_app(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", *args,
        env=env, cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=180)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def lta_refresh(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    return await run_app(env, "lta-refresh", *args)


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def archive(root: Path, number: str) -> Path:
    (path,) = root.rglob(f"Ticket-{number}_*Z.pdf")
    return path


async def test_dry_run_lists_the_due_archive_and_writes_nothing(cm_pki, archive_root: Path) -> None:
    before = tree(archive_root)

    code, out, err = await lta_refresh(environment(cm_pki, archive_root), "--dry-run")
    narrow, narrow_out, _ = await lta_refresh(
        environment(cm_pki, archive_root), "--dry-run", "--within-days", "10"
    )

    assert code == 0, err
    soon = archive(archive_root, SOON).relative_to(archive_root)
    (line,) = [x for x in out.splitlines() if x.startswith("would refresh")]
    assert line.startswith(f"would refresh {soon}: signer certificate 'CN=Helpdesk Signer")
    assert FAR not in out
    assert out.splitlines()[-1] == (
        "lta-refresh: 2 archives, 0 unsigned, 1 due within 90 days, would refresh 1, 0 failed, 0 skipped"
    )
    assert narrow == 0 and "would refresh" not in narrow_out.replace("would refresh 0", "")
    assert "0 due within 10 days" in narrow_out
    assert tree(archive_root) == before


async def test_refresh_writes_a_valid_b_lta_version_beside_the_original(
    cm_pki, animator, archive_root: Path
) -> None:
    before = tree(archive_root)
    original = archive(archive_root, SOON)
    env = environment(cm_pki, archive_root)

    code, out, err = await lta_refresh(env)

    assert code == 0, out + err
    day = datetime.now(UTC).strftime("%Y%m%d")
    new = original.with_name(original.name.removesuffix(".pdf") + f".lta-{day}.pdf")
    rel, new_rel = (str(p.relative_to(archive_root)) for p in (original, new))
    after = tree(archive_root)
    manifest_rel = f"_manifest/{datetime.now(UTC):%Y-%m-%d}.jsonl"
    assert set(after) - set(before) == {new_rel, new_rel + ".json", manifest_rel}
    # The new version is recorded in the tamper-evident manifest, naming what it was made from.
    (line,) = (json.loads(raw) for raw in after[manifest_rel].decode().splitlines())
    assert (line["event"], line["path"], line["source_path"]) == ("lta_refresh", new_rel, rel)
    assert (line["sha256"], line["size"]) == (sha256(new), new.stat().st_size)
    assert {k: after[k] for k in before} == before, "the original, its sidecar and the other archive stay"
    assert f"refreshed {rel} -> {new_rel}: signer certificate" in out
    assert (
        "lta-refresh: 2 archives, 0 unsigned, 1 due within 90 days, refreshed 1, 0 failed, 0 skipped" in out
    )
    sidecar = json.loads((archive_root / (new_rel + ".json")).read_text())
    assert sidecar["sha256"] == sha256(new) and sidecar["size"] == new.stat().st_size
    assert sidecar["path"] == new_rel and sidecar["pades_level"] == "B-LTA"
    assert sidecar["job_id"] == "job-soon" and sidecar["ticket_number"] == SOON
    lta = sidecar["lta_refresh"]
    assert lta["source"] == rel == lta["original"] and lta["source_sha256"] == sha256(original)
    assert lta["timestamp_authority"] == "CN=Test TSA,O=Helpdesk Test PKI,C=DE"
    assert lta["valid_until"].startswith("2050-") and lta["reasons"][0].startswith("signer certificate")
    data = new.read_bytes()
    assert data.startswith(original.read_bytes())
    assert [s.sig_object["/Type"] for s in PdfFileReader(io.BytesIO(data)).embedded_signatures] == [
        "/Sig",
        "/DocTimeStamp",
    ]
    assert "Signature Validation: Signature is Valid." in pdfsig(new)
    # What follows the signature is validation data and a document timestamp: an archivist's
    # extract and audit take it as such (the manifest line's ticket and job match the sidecar).
    root_pem = str(cm_pki.root_pem)
    code, out, err = await run_app(env, "extract", str(new), "-o", str(new.parent / "x"), "--trust", root_pem)
    assert code == 0 and "and 1 document timestamp(s) intact and trusted" in out, out + err
    code, out, err = await run_app(
        env, "audit", "--root", str(archive_root), "--trust", root_pem, "--manifest", "--expiry-days", "0"
    )
    assert code == 0 and "result: OK" in out, out + err

    again, again_out, again_err = await lta_refresh(env)  # the newest version is far from expiry now

    assert again == 0, again_out + again_err
    assert "1 due" not in again_out and "0 due within 90 days, refreshed 0" in again_out
    assert tree(archive_root) == after
    await animator.stop()
    verdict = await ades_lta(data, cm_pki)
    assert (verdict.ades_subindic.status.name, verdict.ades_subindic.name) == ("PASSED", "OK")


async def test_no_tsa_is_a_configuration_error(cm_pki, archive_root: Path) -> None:
    before = tree(archive_root)

    for args in ((), ("--dry-run",)):
        code, out, err = await lta_refresh(environment(cm_pki, archive_root, TSA_URL=None), *args)

        assert code == 2 and out == ""
        assert err.startswith("configuration error: TSA_URL / tsa.url: ") and "set TSA_URL" in err
        assert "Traceback" not in err
    code, _, err = await lta_refresh(environment(cm_pki, archive_root, SIGNING_TRUST_ROOTS_PATH=None))
    assert code == 2 and "SIGNING_TRUST_ROOTS_PATH" in err and "Traceback" not in err
    assert tree(archive_root) == before


async def test_a_failing_tsa_fails_the_run_without_leaking_a_secret(cm_pki, archive_root: Path) -> None:
    before = tree(archive_root)
    env = environment(
        cm_pki,
        archive_root,
        TSA_URL=f"http://127.0.0.1:{free_port()}/tsa",
        TSA_USER="archiver",
        TSA_PASS=TSA_PASS,
        SIGNING_PFX_PASSWORD=PFX_PASS,
    )

    code, out, err = await lta_refresh(env)

    assert code == 1
    soon = archive(archive_root, SOON).relative_to(archive_root)
    assert f"failed {soon}: TSA error" in err and "Traceback" not in err
    assert "refreshed 0, 1 failed" in out
    assert TSA_PASS not in out + err and PFX_PASS not in out + err
    assert tree(archive_root) == before, "nothing written, no temp file left"


async def test_an_archive_that_no_longer_matches_its_sidecar_is_not_refreshed(
    cm_pki, archive_root: Path
) -> None:
    path = archive(archive_root, SOON)
    with path.open("ab") as fh:
        fh.write(b"\n% appended by hand\n")
    before = tree(archive_root)

    code, out, err = await lta_refresh(environment(cm_pki, archive_root))

    assert code == 1
    assert f"failed {path.relative_to(archive_root)}: the file does not match its sidecar" in err
    assert tree(archive_root) == before


async def test_an_archive_whose_chain_is_not_trusted_fails_in_one_line_without_a_traceback(
    cm_pki, archive_root: Path, tmp_path: Path
) -> None:
    elsewhere = build_pki(tmp_path / "elsewhere")  # its root named as cm_pki's, another key
    before = tree(archive_root)

    code, out, err = await lta_refresh(
        environment(cm_pki, archive_root, SIGNING_TRUST_ROOTS_PATH=str(elsewhere.root_pem))
    )

    assert code == 1 and "refreshed 0, 1 failed" in out
    soon = archive(archive_root, SOON).relative_to(archive_root)
    assert f"failed {soon}: " in err and "does not lead to a root in SIGNING_TRUST_ROOTS_PATH" in err
    assert "Traceback" not in err, err
    logged = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert logged and all("exc" not in line and line["logger"].startswith("pyhanko") for line in logged)
    assert tree(archive_root) == before


async def test_a_manifest_that_cannot_be_extended_stops_the_run_before_anything_is_written(
    cm_pki, archive_root: Path
) -> None:
    # The newcomer's case: the newest day file ends in a line that is not a manifest line.
    # The manifest's writers refuse to chain to it, so a version made now could not be recorded.
    day_file = archive_root / "_manifest" / f"{datetime.now(UTC):%Y-%m-%d}.jsonl"
    day_file.parent.mkdir()
    day_file.write_bytes(b"this is not a manifest line\n")
    before = tree(archive_root)

    for args in ((), ("--dry-run",), ("--within-days", "1000")):
        code, out, err = await lta_refresh(environment(cm_pki, archive_root), *args)

        assert code == 1, out + err
        assert "ends in a line that is not a manifest line" in err and "Traceback" not in err
        assert "refreshed" not in out and "would refresh" not in out
        assert tree(archive_root) == before, "no new version, no temp file, nothing asked of the TSA"


@pytest.mark.parametrize("line_landed", [False, True])
async def test_a_version_whose_manifest_line_cannot_be_written_is_taken_back(
    cm_pki, archive_root: Path, monkeypatch: pytest.MonkeyPatch, line_landed: bool
) -> None:
    # A failure the check before the run cannot foresee (disk full, lock held too long). When the
    # line was written all the same (fsync failed after the write) the version is kept.
    from datetime import timedelta

    from app.config import load_settings
    from app.errors import StorageError
    from app.signing import lta_cli

    recorded = lta_cli.record_new_version

    def failing(*args, **kwargs) -> None:
        if line_landed:
            recorded(*args, **kwargs)
        raise StorageError("cannot write the archive manifest (_manifest): No space left on device", errno=28)

    monkeypatch.setattr(lta_cli, "record_new_version", failing)
    settings = load_settings(environment(cm_pki, archive_root), require_complete=False)
    config = lta_cli.LtaRefreshConfig.from_settings(settings, within=timedelta(days=90), dry_run=False)
    before = tree(archive_root)
    out, err = io.StringIO(), io.StringIO()

    code = await lta_cli.run(config, out=out, err=err)

    assert code == 1
    assert "refreshed 0, 1 failed" in out.getvalue()
    soon = archive(archive_root, SOON).relative_to(archive_root)
    assert f"failed {soon}: cannot write the archive manifest" in err.getvalue()
    assert "lta-refresh: stopped, as the manifest cannot be written" in err.getvalue()
    after = tree(archive_root)
    if line_landed:
        assert "all the same" in err.getvalue() and "kept" in err.getvalue()
        new = {k for k in set(after) - set(before) if not k.startswith("_manifest/")}
        assert len(new) == 2 and all(".lta-" in k for k in new)
    else:
        assert "the new version was removed, nothing refreshed" in err.getvalue()
        assert after == before, "no version, sidecar or temp file left behind"


async def test_archives_on_certificates_without_revocation_services_are_not_refreshed(
    pfx_bytes: bytes, sample_pdf: bytes, dev_certs, local_tsa, session, tmp_path: Path
) -> None:
    # The newcomer's case: archives signed with the dev PKI (no OCSP responder, no CRL). Before,
    # a version labelled pades_level "B-LTA" with no OCSP response and no CRL was written.
    from app.signing.signer import ArchiveSigner
    from app.signing.tsa import build_timestamper
    from tests.signing.signing_helpers import PFX_PASSWORD, TSA_PASSWORD, TSA_USER

    timestamper = build_timestamper(local_tsa.url, session, user=TSA_USER, password=TSA_PASSWORD)
    signed = await ArchiveSigner.from_pfx(pfx_bytes, PFX_PASSWORD.encode(), timestamper=timestamper).sign(
        sample_pdf
    )
    root = tmp_path / "archive"
    root.mkdir()
    stored = await store(root, signed.data, number=SOON, job_id="job-dev")
    env = {
        "PATH": os.environ["PATH"],
        "LANG": "C.UTF-8",
        "STORAGE_ROOT": str(root),
        "TSA_URL": local_tsa.url,
        "TSA_USER": TSA_USER,
        "TSA_PASS": TSA_PASSWORD,
        "SIGNING_TRUST_ROOTS_PATH": str(dev_certs.root_pem),
        "ALLOW_INSECURE_HTTP": "true",
    }
    before = tree(root)
    asked = local_tsa.requests

    for args in (("--dry-run",), ()):
        code, out, err = await lta_refresh(env, "--within-days", "1000", *args)

        assert code == 1, out + err
        assert f"failed {stored.relative_path}: PAdES B-LTA needs revocation data" in err, err
        assert "signer certificate 'CN=Dev Archive Signer,O=zammad-pdf-archiver dev' names no OCSP" in err
        assert "1 due within 1000 days" in out and ", 1 failed" in out
        assert ("would refresh 0, " if args else "refreshed 0, ") in out, out
        assert TSA_PASSWORD not in out + err
    assert tree(root) == before and local_tsa.requests == asked
