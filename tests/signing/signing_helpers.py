"""Helpers shared by the signing tests: dev PKI paths, verifier wrappers, test certificates."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import pem
from asn1crypto import x509 as asn1_x509

REPO_ROOT = Path(__file__).resolve().parents[2]
GEN_DEV_CERTS = REPO_ROOT / "scripts" / "dev" / "gen-dev-certs.sh"
FONT = REPO_ROOT / "app" / "render" / "fonts" / "NotoSans-Regular.ttf"

PFX_PASSWORD = "Pfx-S3cret-Zammad!"  # distinctive, so tests can prove it never leaks
TSA_USER, TSA_PASSWORD = "tsa-user", "Tsa-S3cret-pw"

_BYTE_RANGE = re.compile(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]")


@dataclass(frozen=True)
class DevCerts:
    dir: Path

    def __getattr__(self, name: str) -> Path:  # certs.root_pem → dir/root.pem
        stem, _, ext = name.rpartition("_")
        if not stem:
            raise AttributeError(name)
        return self.dir / f"{stem}.{ext}"


def load_asn1_cert(path: Path) -> asn1_x509.Certificate:
    data = path.read_bytes()
    if pem.detect(data):
        _, _, data = pem.unarmor(data)
    return asn1_x509.Certificate.load(data)


def pdfsig(path: Path) -> str:
    """pdfsig always exits 0: return its text for the caller to parse."""
    proc = subprocess.run(["pdfsig", str(path)], capture_output=True, text=True)
    return proc.stdout + proc.stderr


def signed_content(pdf: bytes) -> bytes:
    """The bytes covered by the last /ByteRange: data[a:a+b] + data[c:c+d]."""
    *_, m = _BYTE_RANGE.finditer(pdf)
    a, b, c, d = (int(x) for x in m.groups())
    return pdf[a : a + b] + pdf[c : c + d]


def openssl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, cwd=cwd)


def issue_test_pfx(
    certs: DevCerts,
    workdir: Path,
    *,
    name: str,
    key_usage: str = "critical,digitalSignature,nonRepudiation",
    start: str | None = None,
    end: str | None = None,
) -> bytes:
    """Issue an RSA-2048 leaf from the dev root with ``openssl ca`` (explicit validity window,
    dates as ``YYYYMMDDHHMMSSZ``) and return it as a PFX protected by :data:`PFX_PASSWORD`."""
    ca = workdir / f"ca-{name}"
    ca.mkdir()
    (ca / "index.txt").touch()
    (ca / "serial").write_text("1000\n")
    (ca / "ca.cnf").write_text(
        "[ca]\ndefault_ca = dev\n[dev]\n"
        f"database = {ca}/index.txt\nnew_certs_dir = {ca}\nserial = {ca}/serial\n"
        "default_md = sha256\ndefault_days = 365\npolicy = any\nunique_subject = no\ncopy_extensions = none\n"
        "[any]\ncommonName = supplied\n"
    )
    (ca / "leaf.ext").write_text(f"basicConstraints=critical,CA:FALSE\nkeyUsage={key_usage}\n")
    run = [
        (
            "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr",
            "-subj", f"/CN={name}",
        ),
        (
            "ca", "-batch", "-config", "ca.cnf", "-cert", str(certs.root_pem),
            "-keyfile", str(certs.root_key),
            "-in", "leaf.csr", "-out", "leaf.pem", "-extfile", "leaf.ext", "-notext",
            *(("-startdate", start) if start else ()), *(("-enddate", end) if end else ()),
        ),
        (
            "pkcs12", "-export", "-inkey", "leaf.key", "-in", "leaf.pem", "-certfile", str(certs.root_pem),
            "-passout", f"pass:{PFX_PASSWORD}", "-out", "leaf.pfx",
        ),
    ]  # fmt: skip
    for args in run:
        proc = openssl(*args, cwd=ca)
        assert proc.returncode == 0, proc.stderr
    return (ca / "leaf.pfx").read_bytes()
