"""PAdES level selection, certificate-expiry warnings, and how load_signer builds the signer from settings."""

from __future__ import annotations

import logging
from datetime import timedelta

import aiohttp
import pytest
from signing_helpers import PFX_PASSWORD

from app.config import load_settings
from app.errors import ConfigError
from app.main import UnavailableSigner, load_signer, tsa_ssl_context
from app.observability.metrics import Metrics
from app.signing.signer import ArchiveSigner, PadesLevel, build_timestamper

BASE = {
    "ZAMMAD_BASE_URL": "http://127.0.0.1:1",
    "ZAMMAD_API_TOKEN": "t",
    "STORAGE_ROOT": "/tmp",
    "ALLOW_INSECURE_HTTP": "true",
    "SIGNING_PFX_PASSWORD": PFX_PASSWORD,
}


@pytest.mark.parametrize(
    ("value", "tsa", "expected"),
    [
        (None, False, PadesLevel.B_B),
        (None, True, PadesLevel.B_T),
        ("b-lta", True, PadesLevel.B_LTA),
        ("B_LT", True, PadesLevel.B_LT),
        ("B-B", True, PadesLevel.B_B),
    ],
)
def test_level_parse(value, tsa: bool, expected: PadesLevel) -> None:
    assert PadesLevel.parse(value, has_timestamper=tsa) is expected


def test_unknown_level_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="B-B, B-T, B-LT or B-LTA"):
        PadesLevel.parse("B-XL", has_timestamper=True)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SIGNING_PADES_LEVEL": "B-Q"}, "must be one of"),
        ({"SIGNING_PADES_LEVEL": "B-T"}, "needs a timestamp authority"),
        ({"SIGNING_PADES_LEVEL": "B-LTA", "TSA_URL": "http://127.0.0.1:9/tsa"}, "SIGNING_TRUST_ROOTS_PATH"),
        ({"SIGNING_EXPIRY_WARN_DAYS": "-1"}, "SIGNING_EXPIRY_WARN_DAYS"),
    ],
)
def test_settings_validation(env: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({**BASE, "SIGNING_PFX_PATH": "/x.pfx", **env})


async def test_level_without_its_inputs_is_refused(pfx_bytes: bytes) -> None:
    with pytest.raises(ConfigError, match="TSA_URL"):
        ArchiveSigner.from_pfx(pfx_bytes, PFX_PASSWORD.encode(), level="B-T")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ConfigError, match="SIGNING_TRUST_ROOTS_PATH"):
            ArchiveSigner.from_pfx(
                pfx_bytes,
                PFX_PASSWORD.encode(),
                level="B-LT",
                timestamper=build_timestamper("http://127.0.0.1:9/", session),
            )


def test_expiry_warning_log_and_metric(pfx_bytes: bytes, caplog: pytest.LogCaptureFixture) -> None:
    probe = ArchiveSigner.from_pfx(pfx_bytes, PFX_PASSWORD.encode())
    near = probe.not_after - timedelta(days=10)
    caplog.set_level(logging.WARNING, logger="app.signing")

    quiet = ArchiveSigner.from_pfx(
        pfx_bytes, PFX_PASSWORD.encode(), expiry_warning=timedelta(days=5), clock=lambda: near
    )
    assert not quiet.expires_soon() and not caplog.records
    loud = ArchiveSigner.from_pfx(
        pfx_bytes, PFX_PASSWORD.encode(), expiry_warning=timedelta(days=30), clock=lambda: near
    )

    assert loud.expires_soon()
    (record,) = caplog.records
    assert "expires soon" in record.getMessage() and record.days_left == 10.0
    metrics = Metrics()
    metrics.watch_signing_certificate(lambda: (loud.not_after - near).total_seconds(), loud.expires_soon)
    text = metrics.exposition()[0].decode()
    assert "zammad_pdf_archiver_signing_certificate_expiry_seconds 864000.0" in text
    assert "zammad_pdf_archiver_signing_certificate_expiring 1.0" in text


async def test_load_signer_levels_and_failures(dev_certs, tmp_path) -> None:
    env = {**BASE, "SIGNING_PFX_PATH": str(dev_certs.signer_pfx)}
    bad_bundle = tmp_path / "bundle.pem"
    bad_bundle.write_text("not a certificate")
    async with aiohttp.ClientSession() as session:
        plain = load_signer(load_settings(env), session)
        stamped = load_signer(load_settings({**env, "TSA_URL": "http://127.0.0.1:9/tsa"}), session)
        no_bundle = load_signer(
            load_settings(
                {**env, "TSA_URL": "https://127.0.0.1:9/tsa", "TSA_CA_BUNDLE_PATH": str(bad_bundle)}
            ),
            session,
        )
        no_revinfo = load_signer(
            load_settings(
                {
                    **env,
                    "TSA_URL": "http://127.0.0.1:9/tsa",
                    "SIGNING_PADES_LEVEL": "B-LT",
                    "SIGNING_TRUST_ROOTS_PATH": str(dev_certs.root_pem),
                }
            ),
            session,
        )

    assert isinstance(plain, ArchiveSigner) and plain.pades_level == "B-B"
    assert isinstance(stamped, ArchiveSigner) and stamped.pades_level == "B-T"
    assert isinstance(no_bundle, UnavailableSigner) and "TSA_CA_BUNDLE_PATH" in str(no_bundle.error)
    assert no_bundle.error.transient is False
    assert isinstance(no_revinfo, UnavailableSigner) and "CRL distribution point" in str(no_revinfo.error)


def test_tsa_ssl_context_adds_the_private_ca_to_the_system_store(dev_certs) -> None:
    settings = load_settings(
        {**BASE, "SIGNING_PFX_PATH": "/x.pfx", "TSA_CA_BUNDLE_PATH": str(dev_certs.root_pem)}
    )
    default = len(tsa_ssl_context(load_settings({**BASE, "SIGNING_PFX_PATH": "/x.pfx"})).get_ca_certs())

    context = tsa_ssl_context(settings)

    subjects = [dict(x[0] for x in c["subject"]).get("commonName") for c in context.get_ca_certs()]
    assert "Dev Root CA" in subjects and len(subjects) >= default
