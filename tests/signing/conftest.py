"""Fixtures for the signing tests: a dev PKI from gen-dev-certs.sh, a small PDF, verifier helpers
and a local RFC 3161 TSA (``openssl ts -reply`` behind aiohttp on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from asn1crypto import x509 as asn1_x509
from fpdf import FPDF

from tests.signing.signing_helpers import (
    FONT,
    GEN_DEV_CERTS,
    PFX_PASSWORD,
    TSA_PASSWORD,
    TSA_USER,
    DevCerts,
    load_asn1_cert,
)


@pytest.fixture(scope="session")
def dev_certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    out = tmp_path_factory.mktemp("dev-certs")
    env = {**os.environ, "DEV_PFX_PASSWORD": PFX_PASSWORD}
    subprocess.run(["bash", str(GEN_DEV_CERTS), str(out)], check=True, env=env, capture_output=True)
    return DevCerts(out)


@pytest.fixture(scope="session")
def pfx_bytes(dev_certs: DevCerts) -> bytes:
    return dev_certs.signer_pfx.read_bytes()


@pytest.fixture(scope="session")
def root_cert(dev_certs: DevCerts) -> asn1_x509.Certificate:
    return load_asn1_cert(dev_certs.root_pem)


@pytest.fixture(scope="session")
def sample_pdf() -> bytes:
    pdf = FPDF()
    pdf.add_font("NotoSans", "", str(FONT))
    pdf.set_title("Ticket #31001")
    pdf.add_page()
    pdf.set_font("NotoSans", size=12)
    pdf.multi_cell(w=0, text="Ticket #31001 – Drucker im 2. OG druckt nicht.\nÄnderungen: Grüße, Straße, €.")
    return bytes(pdf.output())


# --- local RFC 3161 TSA -------------------------------------------------------------------

_TS_CNF = """\
[tsa]
default_tsa = tsa_config1

[tsa_config1]
serial = {dir}/tsaserial
crypto_device = builtin
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = {digests}
accuracy = secs:1
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


@dataclass
class LocalTsa:
    """A TSA on 127.0.0.1. ``mode`` picks the answer: ``ok``, ``http500``, ``garbage``,
    ``wrong_type``, ``refuse`` (PKIStatus rejection, badAlg), ``slow`` (sleeps 3 s), ``replay``
    (the last reply served again: another request's nonce, as a mixed-up proxy would send)."""

    url: str
    mode: str = "ok"
    requests: int = 0
    served_sizes: list[int] = field(default_factory=list)
    last_reply: bytes = b""


@pytest.fixture
async def local_tsa(dev_certs: DevCerts, tmp_path: Path):
    workdir = tmp_path / "tsa"
    workdir.mkdir()
    (workdir / "tsaserial").write_text("01\n")
    (workdir / "ts.cnf").write_text(_TS_CNF.format(dir=workdir, digests="sha256, sha384, sha512"))
    (workdir / "ts-refuse.cnf").write_text(_TS_CNF.format(dir=workdir, digests="sha1"))
    expected_auth = "Basic " + base64.b64encode(f"{TSA_USER}:{TSA_PASSWORD}".encode()).decode()
    state = LocalTsa(url="")
    counter = iter(range(1_000_000))
    serial_lock = asyncio.Lock()  # openssl ts updates the serial file: one reply at a time

    async def handle(request: web.Request) -> web.Response:
        state.requests += 1
        if request.headers.get("Authorization") != expected_auth:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="tsa"'})
        body = await request.read()
        if state.mode == "http500":
            return web.Response(status=500, text="TSA backend down")
        if state.mode == "garbage":
            return web.Response(
                body=b"\x30\x82\xff\xffnot a timestamp", content_type="application/timestamp-reply"
            )
        if state.mode == "slow":
            await asyncio.sleep(3)
        if state.mode == "replay" and state.last_reply:
            return web.Response(body=state.last_reply, content_type="application/timestamp-reply")
        n = next(counter)
        query, reply = workdir / f"q{n}.tsq", workdir / f"r{n}.tsr"
        query.write_bytes(body)
        cnf = workdir / ("ts-refuse.cnf" if state.mode == "refuse" else "ts.cnf")
        async with serial_lock:
            proc = await asyncio.create_subprocess_exec(
                "openssl", "ts", "-reply", "-config", str(cnf), "-queryfile", str(query),
                "-signer", str(dev_certs.tsa_pem), "-inkey", str(dev_certs.tsa_key),
                "-chain", str(dev_certs.root_pem),
                "-out", str(reply),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, err = await proc.communicate()
        if proc.returncode != 0:
            return web.Response(status=500, text=err.decode(errors="replace"))
        data = reply.read_bytes()
        state.served_sizes.append(len(data))
        state.last_reply = data
        content_type = "text/plain" if state.mode == "wrong_type" else "application/timestamp-reply"
        return web.Response(body=data, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_post("/tsa", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}/tsa"
    try:
        yield state
    finally:
        await runner.cleanup()


# --- certomancer PKI with TSA, OCSP and CRLs (PAdES B-LT/B-LTA) ---------------------------


@pytest.fixture(scope="session")
def cm_pki(tmp_path_factory: pytest.TempPathFactory):
    from tests.signing.certomancer_pki import build_pki

    return build_pki(tmp_path_factory.mktemp("certomancer"))


@pytest.fixture
async def animator(cm_pki):
    """The certomancer PKI's TSA, OCSP responder and CRLs on 127.0.0.1 (stop it to go offline)."""
    from tests.signing.certomancer_pki import Animator

    running = Animator(cm_pki)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
