"""Signing through the whole service: a B-LTA archive with its sidecar, and every signing or
storage failure ending in ``pdf:error`` with the right classification, tags and cause."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from pathlib import Path

import pytest
from aiohttp import web
from pyhanko.pdf_utils.reader import PdfFileReader

from devtools.webhook import zammad_webhook
from tests.conftest import HMAC_SECRET, PFX_PASSWORD, free_port
from tests.e2e.test_archive_flow import note_fields, post
from tests.signing.certomancer_pki import PFX_PASSWORD as CM_PFX_PASSWORD
from tests.signing.certomancer_pki import Animator, build_pki

REPO = Path(__file__).resolve().parents[2]
TAGS = ["rechnung", "reklamation"]
TRANSIENT_TAGS = sorted(["pdf:error", "pdf:sign", *TAGS])
PERMANENT_TAGS = sorted(["pdf:error", *TAGS])


@pytest.fixture
async def fake_tsa():
    """An HTTP endpoint that answers like a broken TSA: ``mode`` is ``garbage`` or ``401``."""
    state = {"mode": "garbage"}

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        if state["mode"] == "401":
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="tsa"'})
        return web.Response(
            body=b"\x30\x82\xff\xffnot a timestamp", content_type="application/timestamp-reply"
        )

    app = web.Application()
    app.router.add_post("/tsa", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # the site is started: it has a server
    state["url"] = f"http://127.0.0.1:{port}/tsa"
    yield state
    await runner.cleanup()


async def archive_once(service, simulator) -> dict[str, str]:
    body, headers = zammad_webhook({"ticket_id": 4711}, HMAC_SECRET, delivery_id="e2e-sign-1")
    assert (await post(f"{service.url}/ingest", body, headers))[0] == 202
    await service.wait_idle()
    notes = simulator.notes(4711)
    assert len(notes) == 1, notes
    return note_fields(notes[0])


def assert_failed(simulator, service, fields: dict[str, str], *, transient: bool, cause: str) -> None:
    assert sorted(simulator.tags(4711)) == (TRANSIENT_TAGS if transient else PERMANENT_TAGS)
    assert fields["Classification"] == ("Transient" if transient else "Permanent"), fields
    assert cause in fields["Cause"], fields["Cause"]
    assert list(service.storage_root.rglob("*.pdf")) == []


ONE_ATTEMPT = {"WORKFLOW_MAX_ATTEMPTS": "1", "TSA_TIMEOUT_SECONDS": "2"}


async def test_tsa_down_is_transient(archiver, simulator) -> None:
    service = await archiver(TSA_URL=f"http://127.0.0.1:{free_port()}/tsa", **ONE_ATTEMPT)
    fields = await archive_once(service, simulator)
    assert_failed(simulator, service, fields, transient=True, cause="cannot connect to the TSA")


async def test_tsa_answering_garbage_is_permanent(archiver, simulator, fake_tsa) -> None:
    service = await archiver(TSA_URL=fake_tsa["url"], **ONE_ATTEMPT)
    fields = await archive_once(service, simulator)
    assert_failed(simulator, service, fields, transient=False, cause="not an RFC 3161 TimeStampResp")


async def test_tsa_answering_401_is_permanent_and_hides_the_password(archiver, simulator, fake_tsa) -> None:
    fake_tsa["mode"] = "401"
    service = await archiver(
        TSA_URL=fake_tsa["url"], TSA_USER="archiver", TSA_PASS="Tsa-Pw-Never-Shown", **ONE_ATTEMPT
    )
    fields = await archive_once(service, simulator)
    assert_failed(simulator, service, fields, transient=False, cause="HTTP 401")
    assert "Tsa-Pw-Never-Shown" not in json.dumps(simulator.notes(4711))


async def test_wrong_pfx_password_is_transient_and_keeps_the_trigger_tag(archiver, simulator) -> None:
    """A signer that could not be loaded fails each job Transient (``signer_unavailable``): once
    the job is dead the ticket keeps ``pdf:sign``, so the sweep archives it after the fix and a
    restart, with nothing re-tagged by hand."""
    service = await archiver(SIGNING_PFX_PASSWORD="not-the-password", **ONE_ATTEMPT)
    fields = await archive_once(service, simulator)
    assert_failed(simulator, service, fields, transient=True, cause="wrong password")
    assert fields["Code"] == "signer_unavailable", fields
    assert "not-the-password" not in json.dumps(simulator.notes(4711)) and PFX_PASSWORD not in fields["Cause"]


async def test_missing_pfx_is_transient(archiver, simulator, tmp_path: Path) -> None:
    service = await archiver(SIGNING_PFX_PATH=str(tmp_path / "absent.pfx"), **ONE_ATTEMPT)
    fields = await archive_once(service, simulator)
    assert_failed(simulator, service, fields, transient=True, cause="cannot read SIGNING_PFX_PATH")


async def test_expired_certificate_is_transient(archiver, simulator, dev_pki, tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    ca.mkdir()
    (ca / "index.txt").touch()
    (ca / "ca.cnf").write_text(
        f"[ca]\ndefault_ca = dev\n[dev]\ndatabase = {ca}/index.txt\nnew_certs_dir = {ca}\n"
        f"serial = {ca}/serial\n"
        "default_md = sha256\npolicy = any\nunique_subject = no\n[any]\ncommonName = supplied\n"
    )
    (ca / "serial").write_text("2000\n")
    (ca / "leaf.ext").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,nonRepudiation\n"
    )
    for args in (
        [
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=Expired Signer",
        ],
        [
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-cert",
            str(dev_pki.root_pem),
            "-keyfile",
            str(dev_pki.folder / "root.key"),
            "-in",
            "leaf.csr",
            "-out",
            "leaf.pem",
            "-extfile",
            "leaf.ext",
            "-notext",
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20210101000000Z",
        ],
        [
            "pkcs12",
            "-export",
            "-inkey",
            "leaf.key",
            "-in",
            "leaf.pem",
            "-passout",
            f"pass:{PFX_PASSWORD}",
            "-out",
            "leaf.pfx",
        ],
    ):
        proc = subprocess.run(["openssl", *args], cwd=ca, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    service = await archiver(SIGNING_PFX_PATH=str(ca / "leaf.pfx"), **ONE_ATTEMPT)
    fields = await archive_once(service, simulator)
    assert_failed(simulator, service, fields, transient=True, cause="expired on 2021-01-01")


async def test_read_only_storage_root_is_permanent(archiver, simulator, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    root.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(root)], capture_output=True
    )
    assert mounted.returncode == 0, f"this test needs root to mount a tmpfs: {mounted.stderr!r}"
    try:
        subprocess.run(["mount", "-o", "remount,ro", str(root)], check=True)
        service = await archiver(**ONE_ATTEMPT)
        assert service.storage_root == root
        fields = await archive_once(service, simulator)
        assert_failed(simulator, service, fields, transient=False, cause="Read-only file system (EROFS)")
    finally:
        subprocess.run(["umount", "-l", str(root)], capture_output=True)


# -- a long-term archive through the whole service ----------------------------------------


@pytest.fixture(scope="module")
def cm_pki(tmp_path_factory: pytest.TempPathFactory):
    return build_pki(tmp_path_factory.mktemp("certomancer-e2e"))


async def test_b_lta_archive_with_sidecar_verifies_offline(archiver, simulator, cm_pki) -> None:
    animator = Animator(cm_pki)
    await animator.start()
    try:
        service = await archiver(
            SIGNING_PFX_PATH=str(cm_pki.signer_pfx),
            SIGNING_PFX_PASSWORD=CM_PFX_PASSWORD.decode(),
            TSA_URL=cm_pki.tsa_url,
            SIGNING_PADES_LEVEL="B-LTA",
            SIGNING_TRUST_ROOTS_PATH=str(cm_pki.root_pem),
            SIGNING_REASON="Revisionssichere Ablage",
            SIGNING_LOCATION="Berlin",
            SIGNING_CONTACT="archiv@example.org",
        )
        fields = await archive_once(service, simulator)
    finally:
        await animator.stop()

    assert sorted(simulator.tags(4711)) == sorted(["pdf:signed", *TAGS]), fields
    pdf = next(service.storage_root.rglob("*.pdf"))
    sidecar = json.loads(pdf.with_name(pdf.name + ".json").read_text())
    assert sidecar["sha256"] == hashlib.sha256(pdf.read_bytes()).hexdigest() == fields["SHA-256"]
    assert (
        sidecar["pades_level"] == "B-LTA" and sidecar["timestamp"] and sidecar["delivery_id"] == "e2e-sign-1"
    )
    assert sidecar["ticket_id"] == 4711 and sidecar["signer_cert_sha256"]
    proc = subprocess.run(
        ["bash", str(REPO / "scripts/ops/verify-pdf.sh"), str(pdf)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "VERIFY_PDF_TRUST": str(cm_pki.root_pem)},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "sidecar: OK" in proc.stdout
    reader = PdfFileReader(io.BytesIO(pdf.read_bytes()))
    sig = reader.embedded_signatures[0].sig_object
    assert (sig["/Reason"], sig["/Location"], sig["/ContactInfo"]) == (
        "Revisionssichere Ablage",
        "Berlin",
        "archiv@example.org",
    )
    assert [float(x) for x in reader.embedded_signatures[0].sig_field["/Rect"]] == [0, 0, 0, 0]  # invisible
