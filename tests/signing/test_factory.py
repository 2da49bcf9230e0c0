"""How build_signer makes the signer from the settings, and the TLS trust for the TSA and OCSP/CRL."""

from __future__ import annotations

import aiohttp
import pytest

from app.config import load_settings
from app.errors import ConfigError
from app.signing.factory import UnavailableSigner, build_signer, tsa_ssl_context
from app.signing.signer import ArchiveSigner
from tests.signing.signing_helpers import PFX_PASSWORD

BASE = {
    "ZAMMAD_BASE_URL": "http://127.0.0.1:1",
    "ZAMMAD_API_TOKEN": "t",
    "STORAGE_ROOT": "/tmp",
    "ALLOW_INSECURE_HTTP": "true",
    "SIGNING_PFX_PASSWORD": PFX_PASSWORD,
}


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


async def test_build_signer_levels_and_failures(dev_certs, tmp_path) -> None:
    env = {**BASE, "SIGNING_PFX_PATH": str(dev_certs.signer_pfx)}
    bad_bundle = tmp_path / "bundle.pem"
    bad_bundle.write_text("not a certificate")
    async with aiohttp.ClientSession() as session:
        plain = build_signer(load_settings(env), session)
        stamped = build_signer(load_settings({**env, "TSA_URL": "http://127.0.0.1:9/tsa"}), session)
        no_bundle = build_signer(
            load_settings(
                {**env, "TSA_URL": "https://127.0.0.1:9/tsa", "TSA_CA_BUNDLE_PATH": str(bad_bundle)}
            ),
            session,
        )
        no_revinfo = build_signer(
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
