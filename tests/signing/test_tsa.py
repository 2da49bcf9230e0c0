"""B-T signatures against a real RFC 3161 TSA (``openssl ts -reply``) on loopback, and TSA failures."""

from __future__ import annotations

import io
import re
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from app.errors import ConfigError, SigningError
from app.signing.options import DEFAULT_BYTES_RESERVED, SigningOptions
from app.signing.signer import ArchiveSigner
from app.signing.tsa import build_timestamper
from tests.signing.signing_helpers import PFX_PASSWORD, TSA_PASSWORD, TSA_USER, pdfsig


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def make_signer(pfx_bytes: bytes, url: str, session: aiohttp.ClientSession, **kwargs) -> ArchiveSigner:
    kwargs = {"user": TSA_USER, "password": TSA_PASSWORD, **kwargs}
    timestamper = build_timestamper(url, session, **kwargs)
    return ArchiveSigner.from_pfx(
        pfx_bytes, PFX_PASSWORD.encode(), options=SigningOptions(), timestamper=timestamper
    )


async def test_b_t_signature_has_a_trusted_timestamp(
    pfx_bytes: bytes, sample_pdf: bytes, root_cert, local_tsa, session, tmp_path: Path
) -> None:
    signer = make_signer(pfx_bytes, local_tsa.url, session)
    before = datetime.now(UTC)

    result = await signer.sign(sample_pdf)

    assert result.signed and result.pades_level == "B-T"
    assert result.timestamp is not None
    assert before - timedelta(seconds=2) <= result.timestamp <= datetime.now(UTC) + timedelta(seconds=2)
    assert local_tsa.requests == 1  # bytes_reserved: no dummy signature, no second TSA call
    sig = PdfFileReader(io.BytesIO(result.data)).embedded_signatures[0]
    status = await async_validate_pdf_signature(
        sig, ValidationContext(trust_roots=[root_cert], allow_fetching=False)
    )
    assert status.bottom_line and status.intact and status.valid and status.trusted
    assert status.timestamp_validity is not None and status.timestamp_validity.trusted
    assert status.timestamp_validity.timestamp == result.timestamp
    path = tmp_path / "bt.pdf"
    path.write_bytes(result.data)
    text = pdfsig(path)
    assert "Signature is Valid." in text and "Total document signed" in text


async def test_b_t_cms_fits_the_default_reservation_with_margin(
    pfx_bytes: bytes, sample_pdf: bytes, local_tsa, session
) -> None:
    result = await make_signer(pfx_bytes, local_tsa.url, session).sign(sample_pdf)

    contents = re.search(rb"/Contents\s*<([0-9a-fA-F]+)>", result.data)
    assert contents is not None and len(contents.group(1)) == DEFAULT_BYTES_RESERVED
    from asn1crypto import cms

    used_hex = 2 * len(cms.ContentInfo.load(bytes.fromhex(contents.group(1).decode()), strict=False).dump())
    assert used_hex <= DEFAULT_BYTES_RESERVED * 0.6, used_hex  # room for a bigger TSA chain


async def test_tsa_http_500_is_transient(pfx_bytes: bytes, sample_pdf: bytes, local_tsa, session) -> None:
    local_tsa.mode = "http500"

    with pytest.raises(SigningError) as info:
        await make_signer(pfx_bytes, local_tsa.url, session).sign(sample_pdf)

    assert info.value.transient is True and "HTTP 500" in str(info.value)


async def test_tsa_garbage_body_is_permanent(pfx_bytes: bytes, sample_pdf: bytes, local_tsa, session) -> None:
    local_tsa.mode = "garbage"

    with pytest.raises(SigningError) as info:
        await make_signer(pfx_bytes, local_tsa.url, session).sign(sample_pdf)

    assert info.value.transient is False and "not an RFC 3161 TimeStampResp" in str(info.value)


async def test_a_reply_to_another_request_is_transient_and_named(
    pfx_bytes: bytes, sample_pdf: bytes, local_tsa, session
) -> None:
    """A token whose nonce is not the one asked for (a mixed-up proxy, a cache) is refused by
    name and may be asked for again; pyHanko's own check crashed on it (AttributeError:
    'int' object has no attribute 'hex'), a Permanent failure without a cause."""
    signer = make_signer(pfx_bytes, local_tsa.url, session)
    await signer.sign(sample_pdf)
    local_tsa.mode = "replay"

    with pytest.raises(SigningError) as info:
        await signer.sign(sample_pdf)

    assert info.value.transient is True and "nonce" in str(info.value), str(info.value)


async def test_tsa_wrong_content_type_is_permanent(
    pfx_bytes: bytes, sample_pdf: bytes, local_tsa, session
) -> None:
    local_tsa.mode = "wrong_type"

    with pytest.raises(SigningError) as info:
        await make_signer(pfx_bytes, local_tsa.url, session).sign(sample_pdf)

    assert info.value.transient is False and "content type" in str(info.value)


async def test_tsa_refusal_is_permanent(pfx_bytes: bytes, sample_pdf: bytes, local_tsa, session) -> None:
    local_tsa.mode = "refuse"  # this TSA accepts only SHA-1 imprints: PKIStatus rejection, badAlg

    with pytest.raises(SigningError) as info:
        await make_signer(pfx_bytes, local_tsa.url, session).sign(sample_pdf)

    assert info.value.transient is False and "refused" in str(info.value)


async def test_tsa_wrong_credentials_are_permanent_and_not_leaked(
    pfx_bytes: bytes, sample_pdf: bytes, local_tsa, session
) -> None:
    wrong = "Not-The-Tsa-Pw"

    with pytest.raises(SigningError) as info:
        await make_signer(pfx_bytes, local_tsa.url, session, password=wrong).sign(sample_pdf)

    assert info.value.transient is False and "HTTP 401" in str(info.value)
    assert wrong not in str(info.value) and wrong not in repr(info.value)


async def test_tsa_timeout_is_transient(pfx_bytes: bytes, sample_pdf: bytes, local_tsa, session) -> None:
    local_tsa.mode = "slow"

    with pytest.raises(SigningError) as info:
        await make_signer(pfx_bytes, local_tsa.url, session, timeout=0.3).sign(sample_pdf)

    assert info.value.transient is True and "did not answer within 0.3 s" in str(info.value)


async def test_tsa_connection_refused_is_transient(pfx_bytes: bytes, sample_pdf: bytes, session) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    with pytest.raises(SigningError) as info:
        await make_signer(pfx_bytes, f"http://127.0.0.1:{port}/tsa", session).sign(sample_pdf)

    assert info.value.transient is True and "cannot connect to the TSA" in str(info.value)


async def test_timestamper_is_shared_across_concurrent_signatures(
    pfx_bytes: bytes, sample_pdf: bytes, root_cert, local_tsa, session
) -> None:
    import asyncio

    signer = make_signer(pfx_bytes, local_tsa.url, session)

    results = await asyncio.gather(*(signer.sign(sample_pdf) for _ in range(4)))

    assert len({r.data for r in results}) == 4
    assert local_tsa.requests == 4
    vc = ValidationContext(trust_roots=[root_cert], allow_fetching=False)
    for r in results:
        sig = PdfFileReader(io.BytesIO(r.data)).embedded_signatures[0]
        status = await async_validate_pdf_signature(sig, vc)
        assert status.bottom_line and status.timestamp_validity.trusted


def test_timestamper_uses_a_basic_auth_header(session) -> None:
    timestamper = build_timestamper("http://127.0.0.1:1/tsa", session, user="u", password="p:w", timeout=2.5)

    assert timestamper.request_headers()["Authorization"] == "Basic dTpwOnc="
    assert timestamper.auth is None and timestamper.timeout == 2.5
    assert "Authorization" not in build_timestamper("http://x/tsa", session).request_headers()


@pytest.mark.parametrize("kwargs", [{"password": "p"}, {"user": "a:b", "password": "p"}, {"timeout": 0}])
def test_bad_timestamper_settings_are_config_errors(session, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        build_timestamper("http://127.0.0.1:1/tsa", session, **kwargs)
