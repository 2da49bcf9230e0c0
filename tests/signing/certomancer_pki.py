"""A test PKI with revocation services (certomancer) and its in-process animator on 127.0.0.1.

Unlike the ``openssl`` dev PKI, every certificate here carries a CRL distribution point or an
OCSP URL, which PAdES B-LT/B-LTA need: pyHanko fetches that validation data while signing and
embeds it in the document security store. The animator serves, under ``{base}/helpdesk``:
``tsa/tsa`` (RFC 3161), ``ocsp/interm`` (RFC 6960) and ``crls/{root,interm}/latest.crl``.

Self-contained (no pytest fixtures) so both ``tests/signing`` and ``tests/e2e`` can use it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web
from certomancer.integrations.aiohttp_animator import build_animator_app
from certomancer.registry import ArchLabel, CertLabel, CertomancerConfig, PKIArchitecture
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ARCH = "helpdesk"
PFX_PASSWORD = b"certomancer-pfx-pw"
EXPIRING_IN = timedelta(days=40)
"""``signer-expiring`` (the signer's key) is valid from a day before :func:`build_pki` to this after it."""
FAST_CRL_PERIOD = timedelta(seconds=10)
"""The update schedule of ``root-fast``, the CRL of ``tsa-expiring``: its nextUpdate, until which
pyHanko's past validation counts it fresh, is at most this after it was fetched."""
KEYS = ("root", "interm", "ocsp", "tsa", "signer")

_CONFIG = """\
external-url-prefix: "{prefix}"
keysets:
  helpdesk:
    path-prefix: keys
    keys:
{keys}
pki-architectures:
  helpdesk:
    keyset: helpdesk
    entity-defaults: {{country-name: DE, organization-name: Helpdesk Test PKI}}
    entities:
      root: {{common-name: Test Root CA}}
      interm: {{common-name: Test Issuing CA}}
      ocsp: {{common-name: Test OCSP}}
      tsa: {{common-name: Test TSA}}
      signer: {{common-name: Helpdesk Signer}}
    certs:
      root:
        subject: root
        issuer: root
        validity: &long {{valid-from: "2020-01-01T00:00:00+0000", valid-to: "2050-01-01T00:00:00+0000"}}
        profiles: [{{id: simple-ca, params: {{crl-repo: root}}}}]
      interm:
        issuer: root
        validity: *long
        profiles: [{{id: simple-ca, params: {{max-path-len: 0, crl-repo: interm, ocsp-service: interm}}}}]
      ocsp: {{issuer: interm, validity: *long, profiles: [ocsp-responder]}}
      tsa:
        issuer: root
        validity: *long
        extensions:
          - {{id: key_usage, critical: true, smart-value: {{schema: key-usage, params: [digital_signature]}}}}
          - {{id: extended_key_usage, critical: true, value: [time_stamping]}}
          - id: crl_distribution_points
            smart-value: {{schema: crl-dist-url, params: {{crl-repo-names: [root]}}}}
      signer: {{issuer: interm, validity: *long, profiles: [digsig-commitment]}}
      signer-revoked:
        template: signer
        subject: signer
        revocation: {{revoked-since: "2024-01-01T00:00:00+0000", reason: key_compromise}}
      signer-expiring:
        template: signer
        subject: signer
        validity: {{valid-from: "{expiring_from}", valid-to: "{expiring_to}"}}
      tsa-expiring:
        subject: tsa
        issuer: root
        validity: {{valid-from: "{expiring_from}", valid-to: "{tsa_expiring_to}"}}
        extensions:
          - {{id: key_usage, critical: true, smart-value: {{schema: key-usage, params: [digital_signature]}}}}
          - {{id: extended_key_usage, critical: true, value: [time_stamping]}}
          - id: crl_distribution_points
            smart-value: {{schema: crl-dist-url, params: {{crl-repo-names: [root-fast]}}}}
    services:
      ocsp:
        interm: {{for-issuer: interm, responder-cert: ocsp, signing-key: ocsp}}
      crl-repo:
        root: {{for-issuer: root, signing-key: root, simulated-update-schedule: "P90D"}}
        root-fast: {{for-issuer: root, signing-key: root, simulated-update-schedule: "PT{fast_crl_seconds}S"}}
        interm: {{for-issuer: interm, signing-key: interm, simulated-update-schedule: "P30D"}}
      cert-repo:
        root: {{for-issuer: root, publish-issued-certs: yes}}
        interm: {{for-issuer: interm, publish-issued-certs: no}}
      time-stamping:
        tsa: {{signing-key: tsa, signing-cert: tsa}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class CertomancerPki:
    """The files of a generated architecture and where its services will listen."""

    arch: PKIArchitecture
    folder: Path
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ARCH}"

    @property
    def tsa_url(self) -> str:
        return f"{self.base_url}/tsa/tsa"

    @property
    def root_pem(self) -> Path:
        return self.folder / "root.pem"

    @property
    def signer_pfx(self) -> Path:
        return self.folder / "signer.pfx"


def build_pki(
    folder: Path, port: int | None = None, *, tsa_expiring_to: datetime | None = None
) -> CertomancerPki:
    """Generate keys (RSA-2048, unencrypted, test only), the configuration, a signer PFX
    (password :data:`PFX_PASSWORD`) and ``root.pem``; services will answer on ``port``.
    ``tsa-expiring`` (the TSA's key; not served as a TSA) is valid from a day before this call
    to ``tsa_expiring_to`` (default: :data:`EXPIRING_IN` after it); its CRL, ``root-fast``,
    is issued anew every :data:`FAST_CRL_PERIOD` (from the root's notBefore, 2020-01-01)."""
    port = port or free_port()
    keys = folder / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    for name in KEYS:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        (keys / f"{name}.key.pem").write_bytes(pem)
    entries = "\n".join(f"      {name}: {{path: {name}.key.pem}}" for name in KEYS)
    config = folder / "certomancer.yml"
    now = datetime.now(UTC).replace(microsecond=0)
    config.write_text(
        _CONFIG.format(
            prefix=f"http://127.0.0.1:{port}",
            keys=entries,
            expiring_from=f"{now - timedelta(days=1):%Y-%m-%dT%H:%M:%S}+0000",
            expiring_to=f"{now + EXPIRING_IN:%Y-%m-%dT%H:%M:%S}+0000",
            tsa_expiring_to=f"{tsa_expiring_to or now + EXPIRING_IN:%Y-%m-%dT%H:%M:%S}+0000",
            fast_crl_seconds=int(FAST_CRL_PERIOD.total_seconds()),
        )
    )
    cfg = CertomancerConfig.from_file(
        str(config), key_search_dir=str(folder), external_url_prefix=f"http://127.0.0.1:{port}"
    )
    arch = cfg.get_pki_arch(ArchLabel(ARCH))
    (folder / "signer.pfx").write_bytes(arch.package_pkcs12(CertLabel("signer"), password=PFX_PASSWORD))
    root = arch.get_cert(CertLabel("root")).dump()
    (folder / "root.pem").write_bytes(_pem(root))
    return CertomancerPki(arch=arch, folder=folder, port=port)


def _pem(der: bytes) -> bytes:
    from asn1crypto import pem

    return pem.armor("CERTIFICATE", der)


class Animator:
    """The architecture's TSA, OCSP responder and CRL repositories as an aiohttp app.

    ``await start()`` / ``await stop()``; can be started again after a stop.
    """

    def __init__(self, pki: CertomancerPki) -> None:
        self.pki = pki
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = build_animator_app({self.pki.arch.arch_label: self.pki.arch}, with_web_ui=False)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.pki.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
