"""Years later for a B-LTA archive: a chain of document timestamps whose older TSA certificate expired.

A PAdES B-LT archive (certomancer's signer and TSA) gets two LTA refreshes
(:class:`app.signing.lta.LtaRefresher`, as ``python -m app lta-refresh`` runs it): the first
document timestamp from ``tsa-expiring``, valid for a few seconds, the second (with the DSS
entries for the first one's TSA) from certomancer's TSA, valid for decades. Once the short-lived
certificate has expired, every tool of the project must judge the older document timestamp
at the time the newer one proves (ETSI EN 319 102-1 §5.6.3, validation with long-term
availability; PAdES B-LTA, ETSI EN 319 142-1):

* both document timestamps: VALID, the older "valid at <time>, proven by the document
  timestamp of <time>";
* the archive after the first refresh only (its newest document timestamp's TSA expired):
  INDETERMINATE, exit status 3, the audit ``signature_indeterminate``;
* the newer document timestamp tampered with: INVALID.

``scripts/ops/verify-pdf.sh`` (verify-pdf.py: a file with a document timestamp never goes to
pyHanko's CLI), ``python -m app audit`` and ``python -m app extract --trust`` must agree.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from certomancer.registry import CertLabel, KeyLabel
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.timestamps import DummyTimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore

from app.signing.lta import LtaRefresher
from app.signing.trust import LongTermValidation, load_certificates
from app.signing.tsa import build_timestamper
from tests.audit.archives import store_archives
from tests.signing.certomancer_pki import FAST_CRL_PERIOD, Animator, CertomancerPki, build_pki
from tests.signing.lta_archives import sign
from tests.signing.test_past_validation import LATER, app_cli
from tests.signing.test_verify_pdf import VERIFY_PDF, write

LEAD = timedelta(seconds=20)
"""Time for building the PKI, signing and the first refresh on loopback (about 5 s here)."""
CRL_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
"""The root's notBefore: certomancer issues ``root-fast`` every :data:`FAST_CRL_PERIOD` from it."""


def crl_boundary(after: datetime) -> datetime:
    """The first nextUpdate of ``root-fast`` at or after ``after``."""
    periods = -((CRL_EPOCH - after) // FAST_CRL_PERIOD)  # ceiling division
    return CRL_EPOCH + periods * FAST_CRL_PERIOD


async def sleep_until(moment: datetime) -> None:
    await asyncio.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


@dataclass(frozen=True)
class Chain:
    """The archive after each refresh; ``tsa-expiring`` has expired when a test runs."""

    pki: CertomancerPki
    one: bytes
    """B-LTA: one document timestamp, by ``tsa-expiring``."""
    two: bytes
    """``one`` + the DSS entries for its TSA + a document timestamp by certomancer's TSA."""
    not_after: datetime


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    """pyHanko's past validation (ETSI EN 319 102-1 §5.6.2.4) slides the control time back to
    the last moment the DSS's CRL for ``tsa-expiring`` counts as fresh, its nextUpdate, and
    needs the TSA's certificate valid then and the newer timestamp made before. So the second
    refresh (which fetches that CRL) runs in the last CRL period before ``tsa-expiring``
    expires, as an operator's refresh runs well before the expiry, and a CRL's nextUpdate
    falls long before it."""
    crl_next_update = crl_boundary(datetime.now(UTC) + LEAD)
    not_after = crl_next_update + timedelta(seconds=1)
    pki = build_pki(tmp_path_factory.mktemp("lta-chain-pki"), tsa_expiring_to=not_after)
    tsa_cert = pki.arch.get_cert(CertLabel("tsa-expiring"))
    assert tsa_cert.not_valid_after == not_after
    short_tsa = DummyTimeStamper(
        tsa_cert,
        pki.arch.key_set.get_private_key(KeyLabel("tsa")),
        certs_to_embed=SimpleCertificateStore.from_certs([pki.arch.get_cert(CertLabel("root"))]),
    )

    async def build() -> tuple[bytes, bytes]:
        animator = Animator(pki)
        await animator.start()
        try:
            async with aiohttp.ClientSession() as session:
                validation = LongTermValidation(load_certificates(pki.root_pem), session, fetch_timeout=5)
                pdf = io.BytesIO(await sign(pki, session, level="B-LT"))
                await LtaRefresher(short_tsa, validation).refresh(pdf)
                one = pdf.getvalue()
                assert datetime.now(UTC) < crl_next_update - FAST_CRL_PERIOD, "make LEAD longer"
                await sleep_until(crl_next_update - FAST_CRL_PERIOD + timedelta(seconds=0.2))
                long_tsa = build_timestamper(pki.tsa_url, session, timeout=5)
                await LtaRefresher(long_tsa, validation).refresh(pdf)
                return one, pdf.getvalue()
        finally:
            await animator.stop()

    one, two = asyncio.run(build())
    assert datetime.now(UTC) < crl_next_update, "the second refresh took longer than a CRL period"
    time.sleep(max(0.0, (not_after - datetime.now(UTC)).total_seconds()) + 2)  # expired for real, too
    return Chain(pki, one, two, not_after)


def run(chain: Chain, path: Path) -> subprocess.CompletedProcess[str]:
    """scripts/ops/verify-pdf.sh a day later (the PKI's services are not running: revocation is
    soft-fail, the DSS holds what the refreshes gathered)."""
    env = {**os.environ, "VERIFY_PDF_PYHANKO": "", "VERIFY_PDF_TRUST": str(chain.pki.root_pem)}
    return subprocess.run(
        [*LATER, "bash", str(VERIFY_PDF), str(path)], capture_output=True, text=True, timeout=120, env=env
    )


def stamp_lines(stdout: str) -> list[str]:
    """verify-pdf's verdict lines for the document timestamps (``DocTimeStamp-YYYYMMDD…``), oldest first."""
    return [line for line in stdout.splitlines() if line.startswith("DocTimeStamp-")]


def gen_times(data: bytes) -> list[str]:
    """The ``genTime`` of each document timestamp, oldest first, as verify-pdf prints times."""
    reader = PdfFileReader(io.BytesIO(data))
    return [
        sig.signed_data["encap_content_info"]["content"]
        .parsed["gen_time"]
        .native.astimezone(UTC)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        for sig in reader.embedded_timestamp_signatures
    ]


def test_older_document_timestamp_is_valid_at_the_time_the_newer_proves(chain: Chain, tmp_path: Path) -> None:
    proc = run(chain, write(tmp_path, chain.two))

    assert proc.returncode == 0, proc.stdout + proc.stderr
    older, newer = stamp_lines(proc.stdout)
    first, second = gen_times(chain.two)
    assert older.endswith(
        f":VALID (valid at {first}, proven by the document timestamp of {second}; "
        f"TSA certificate expired on {chain.not_after:%Y-%m-%dT%H:%M:%SZ})"
    ), proc.stdout
    assert newer.endswith(":VALID"), proc.stdout
    assert any(line.startswith("Signature1:") and ":VALID" in line for line in proc.stdout.splitlines())


def test_newest_document_timestamp_with_an_expired_tsa_is_indeterminate(chain: Chain, tmp_path: Path) -> None:
    proc = run(chain, write(tmp_path, chain.one))

    assert proc.returncode == 3, proc.stdout + proc.stderr
    (line,) = stamp_lines(proc.stdout)
    assert line.endswith(":INDETERMINATE (cannot be proven: AdES AdESIndeterminate/OUT_OF_BOUNDS_NO_POE)"), (
        line
    )


def tampered(chain: Chain) -> bytes:
    """``chain.two`` with one byte of the newer document timestamp's token changed (its
    signature value, at the end of the DER in ``/Contents``)."""
    data = bytearray(chain.two)
    newest = PdfFileReader(io.BytesIO(chain.two)).embedded_timestamp_signatures[-1]
    _, gap_start, gap_end, _ = newest.byte_range  # [0, b, c, d]: /Contents is bytes b to c
    token = newest.pkcs7_content.rstrip(b"\0").hex().encode()  # without the zero padding
    start = gap_start + bytes(data[gap_start:gap_end]).lower().index(token)
    position = start + len(token) - 8  # a hex digit inside the signature value
    data[position : position + 1] = b"0" if data[position : position + 1] != b"0" else b"1"
    return bytes(data)


def test_a_tampered_newer_document_timestamp_stays_invalid(chain: Chain, tmp_path: Path) -> None:
    proc = run(chain, write(tmp_path, tampered(chain)))

    assert proc.returncode == 1, proc.stdout + proc.stderr
    older, newer = stamp_lines(proc.stdout)
    assert ":INVALID" in newer, proc.stdout
    # Nothing valid proves the older one's time: its TSA's chain has expired.
    assert ":INDETERMINATE (cannot be proven: TSA certificate expired on " in older, proc.stdout


def test_the_audit_agrees(chain: Chain, tmp_path: Path) -> None:
    """Two document timestamps: ``ok``, the evidence now the newer TSA's chain; one (its TSA
    expired): ``signature_indeterminate``; the newer one tampered with: ``signature_invalid``."""
    root = tmp_path / "archive"
    root.mkdir()
    two, one, broken = store_archives(root, [chain.two, chain.one, tampered(chain)])

    proc = app_cli(
        "audit", "--root", str(root), "--trust", str(chain.pki.root_pem), "--json", "--no-progress"
    )

    assert proc.returncode == 1, proc.stdout + proc.stderr
    files = {item["path"]: item for item in json.loads(proc.stdout)["files"]}
    found_two, found_one, found_broken = (files[str(s.path.relative_to(root))] for s in (two, one, broken))
    assert found_two["result"] == "ok", found_two
    assert datetime.fromisoformat(found_two["evidence_expires_at"]) > datetime.now(UTC) + timedelta(days=365)
    assert found_one["result"] == "signature_indeterminate", found_one
    assert found_one["problems"] == [
        {
            "code": "signature_indeterminate",
            "detail": "cannot be proven: the document timestamp's TSA certificate chain expired on "
            f"{chain.not_after.date().isoformat()}",
        }
    ]
    assert found_broken["result"] == "signature_invalid", found_broken


def test_extract_with_trust_agrees(chain: Chain, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    root.mkdir()
    two, one = store_archives(root, [chain.two, chain.one])

    valid = app_cli("extract", str(two.path), "-o", str(tmp_path / "two"), "--trust", str(chain.pki.root_pem))
    unproven = app_cli(
        "extract", str(one.path), "-o", str(tmp_path / "one"), "--trust", str(chain.pki.root_pem)
    )

    assert valid.returncode == 0, valid.stdout + valid.stderr
    assert "and 2 document timestamp(s) intact and trusted" in valid.stdout
    first, second = (t.replace("Z", "+00:00") for t in gen_times(chain.two))
    assert (
        f"document timestamp valid at {first}, proven by the document timestamp of {second}" in valid.stdout
    )
    assert unproven.returncode == 1, unproven.stdout + unproven.stderr
    assert "NOT PROVEN (INDETERMINATE" in unproven.stderr
