"""The signature timestamp read back from a signed PDF: from bytes, from a file's tail, never an error."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from fpdf import FPDF
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from app.signing.signer import ArchiveSigner
from app.signing.timestamps import TAIL_BYTES, TimestampFacts, signature_timestamp, signature_timestamp_in
from app.signing.tsa import build_timestamper
from tests.signing.signing_helpers import PFX_PASSWORD, TSA_PASSWORD, TSA_USER


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def make_signer(pfx_bytes: bytes, url: str, session: aiohttp.ClientSession) -> ArchiveSigner:
    timestamper = build_timestamper(url, session, user=TSA_USER, password=TSA_PASSWORD)
    return ArchiveSigner.from_pfx(pfx_bytes, PFX_PASSWORD.encode(), timestamper=timestamper)


async def test_b_t_sign_file_reads_the_timestamp_back_from_the_file(
    pfx_bytes: bytes, sample_pdf: bytes, root_cert, local_tsa, session, tmp_path: Path
) -> None:
    source, target = tmp_path / "rendered.pdf", tmp_path / "signed.pdf"
    source.write_bytes(sample_pdf)
    before = datetime.now(UTC)

    result = await make_signer(pfx_bytes, local_tsa.url, session).sign_file(source, target)

    assert result.signed and result.pades_level == "B-T" and result.path == target and result.data == b""
    assert result.timestamp is not None and result.timestamp_authority
    assert before - timedelta(seconds=2) <= result.timestamp <= datetime.now(UTC) + timedelta(seconds=2)
    sig = PdfFileReader(io.BytesIO(target.read_bytes())).embedded_signatures[0]
    status = await async_validate_pdf_signature(
        sig, ValidationContext(trust_roots=[root_cert], allow_fetching=False)
    )
    assert status.bottom_line and status.timestamp_validity is not None
    assert status.timestamp_validity.timestamp == result.timestamp


async def test_b_t_sign_file_finds_the_timestamp_in_the_tail_of_a_big_pdf(
    pfx_bytes: bytes, local_tsa, session, tmp_path: Path
) -> None:
    """Beyond 4 MiB only the file's tail is read back: the /ByteRange offsets are absolute."""

    pdf = FPDF()
    pdf.add_page()
    pdf.embed_file(bytes=os.urandom(6 * 1024 * 1024), basename="noise.bin")  # incompressible
    source, target = tmp_path / "big.pdf", tmp_path / "signed.pdf"
    source.write_bytes(bytes(pdf.output()))
    assert source.stat().st_size > 6 * 1024 * 1024

    result = await make_signer(pfx_bytes, local_tsa.url, session).sign_file(source, target)

    assert result.timestamp is not None and result.timestamp_authority
    from_bytes = await make_signer(pfx_bytes, local_tsa.url, session).sign(source.read_bytes())
    assert result.timestamp_authority == from_bytes.timestamp_authority


def facts_in_file(path: Path) -> TimestampFacts:
    with open(path, "rb") as file:
        return signature_timestamp_in(file)


async def test_the_facts_of_a_b_t_signature_from_bytes_and_from_the_tail(
    pfx_bytes: bytes, sample_pdf: bytes, local_tsa, session, tmp_path: Path
) -> None:
    signed = (await make_signer(pfx_bytes, local_tsa.url, session).sign(sample_pdf)).data
    path = tmp_path / "signed.pdf"
    path.write_bytes(signed)

    facts = signature_timestamp(signed)
    from_file = facts_in_file(path)
    tail_only = signature_timestamp(signed[100:], base=100)
    garbled = signature_timestamp(signed.replace(b"/ByteRange [0 ", b"/ByteRange [7 ", 1))

    assert isinstance(facts, TimestampFacts) and facts.time is not None
    assert facts.authority == "CN=Dev TSA,O=zammad-pdf-archiver dev"
    assert from_file == facts == tail_only
    assert garbled == (None, None)


async def test_no_timestamp_and_unreadable_input_give_none(pfx_bytes: bytes, sample_pdf: bytes) -> None:
    b_b = (await ArchiveSigner.from_pfx(pfx_bytes, PFX_PASSWORD.encode()).sign(sample_pdf)).data

    assert signature_timestamp(b_b) == (None, None)
    assert signature_timestamp(sample_pdf) == (None, None)
    assert signature_timestamp(b"/ByteRange [0 1 3 1] <zz>") == (None, None)
    assert TAIL_BYTES >= 1024 * 1024
