"""Benchmark: the fixity audit's throughput on 2,000 real archives, as a ratio to ``sha256sum`` on the same.

Run: ``.venv/bin/python -m benchmarks.audit [--archives 2000] [--rounds 2]``; ``run(quick)``
gives the rows of ``make bench``. Builds a throw-away dev PKI (``scripts/dev/gen-dev-certs.sh``),
lays out eight tickets of 3 to 60 articles with our renderer, signs them (PAdES B-T, an RFC 3161
token from the dev TSA's key) and writes 2,000 archives with the real archive store (sidecars
and manifest), cycling through the eight. Then, in one run, alternating and keeping each
side's best of ``--rounds``:

* ``sha256sum`` over every archive (one process per 500 paths: what an operator would run);
* ``run_audit`` in this process, one process checking (``--jobs 1``);
* ``run_audit`` with the command line's default ``--jobs`` (the CPUs, at most 4).

Each audit re-reads every archive and its sidecar, compares SHA-256 and size, and verifies
the signature and its timestamp against the dev root (certificate paths from the cache after
the first archive). The page cache is warm for both sides. The target compares files/s of
the default audit with ``sha256sum``'s (>= 0.5); the CPU seconds per file of both are given
too, since wall times on a shared machine move with its load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.audit.cli import MAX_DEFAULT_JOBS
from app.audit.run import AuditOptions, run_audit
from app.render.options import RenderOptions
from app.render.pdf import render_ticket_pdf
from app.signing.signer import ArchiveSigner
from app.signing.trust import load_certificates
from app.storage.manifest import ArchiveManifest
from app.storage.store import ArchiveStore
from app.workflow.ports import TicketSnapshot
from benchmarks.common import REPO, Result
from benchmarks.tickets import make_articles

ARCHIVES = 2000
TARGET_RATIO = 0.5
ARTICLE_COUNTS = (3, 5, 8, 12, 20, 30, 45, 60)
PFX_PASSWORD = "bench-audit"
ARCHIVED_AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
SHA256SUM_BATCH = 500


def make_pki(folder: Path) -> None:
    subprocess.run(
        ["bash", str(REPO / "scripts" / "dev" / "gen-dev-certs.sh"), str(folder)],
        check=True,
        capture_output=True,
        env={**os.environ, "DEV_PFX_PASSWORD": PFX_PASSWORD},
    )


def timestamper(pki: Path):
    """An in-process RFC 3161 TSA with the dev TSA certificate and key."""
    from asn1crypto import keys, pem
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives import serialization
    from pyhanko.sign.timestamps import DummyTimeStamper

    def cert(name: str) -> asn1_x509.Certificate:
        _, _, der = pem.unarmor((pki / name).read_bytes())
        return asn1_x509.Certificate.load(der)

    key = serialization.load_pem_private_key((pki / "tsa.key").read_bytes(), None)
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    return DummyTimeStamper(
        cert("tsa.pem"),
        keys.PrivateKeyInfo.load(der),
        certs_to_embed=SimpleCertificateStore.from_certs([cert("root.pem")]),
    )


async def build_archives(root: Path, pki: Path, count: int) -> int:
    """Write ``count`` signed archives under ``root``; returns their total size in bytes."""
    signer = ArchiveSigner.from_pfx(
        (pki / "signer.pfx").read_bytes(), PFX_PASSWORD.encode(), timestamper=timestamper(pki)
    )
    signed = []
    for index, articles in enumerate(ARTICLE_COUNTS):
        ticket: dict[str, Any] = {
            "number": f"2500{index:04d}",
            "title": f"Benchmark ticket {index}",
            "created_at": "2025-03-03T08:00:00Z",
        }
        rendered = render_ticket_pdf(
            ticket,
            make_articles(articles, seed=index),
            ["bench"],
            archived_at=ARCHIVED_AT,
            options=RenderOptions(),
        )
        signed.append(await signer.sign(rendered.data))
    store = ArchiveStore(root, fsync=False, manifest=ArchiveManifest(root, fsync=False))
    total = 0
    for n in range(count):
        pdf = signed[n % len(signed)]
        number = 310000 + n
        when = ARCHIVED_AT + timedelta(seconds=n)
        ticket = {
            "id": number,
            "number": str(number),
            "group": f"Group {n % 7}",
            "created_at": "2025-03-03T08:00:00Z",
        }
        sidecar = {
            "job_id": f"bench-{n}",
            "ticket_id": number,
            "ticket_number": str(number),
            "archived_at": when.isoformat(),
            "signed": True,
            "pades_level": pdf.pades_level,
            "signer_cert_sha256": pdf.signer_cert_sha256,
        }
        stored = await store.store(TicketSnapshot(ticket, [], [], when), pdf.data, sidecar=sidecar)
        total += stored.size
    return total


def archive_paths(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*.pdf") if not p.name.startswith("."))


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_sha256sum(paths: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of ``sha256sum`` over ``paths``."""
    cpu = children_cpu()
    started = time.perf_counter()
    for at in range(0, len(paths), SHA256SUM_BATCH):
        subprocess.run(
            ["sha256sum", *paths[at : at + SHA256SUM_BATCH]], check=True, stdout=subprocess.DEVNULL
        )
    return time.perf_counter() - started, children_cpu() - cpu


def time_audit(options: AuditOptions, expected: int) -> tuple[float, float]:
    """Wall and CPU seconds (this process and its workers) of one audit; checks its verdict."""
    cpu = time.process_time() + children_cpu()
    started = time.perf_counter()
    summary = run_audit(options)
    wall = time.perf_counter() - started
    if summary.files != expected or not summary.ok:
        raise RuntimeError(f"audit found {summary.files} files, results {summary.results}")
    return wall, time.process_time() + children_cpu() - cpu


def measure(count: int, rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as work:
        pki, root = Path(work) / "pki", Path(work) / "archive"
        root.mkdir()
        make_pki(pki)
        started = time.perf_counter()
        total_bytes = asyncio.run(build_archives(root, pki, count))
        built = time.perf_counter() - started
        paths = archive_paths(root)
        roots = load_certificates(pki / "root.pem")
        jobs = min(os.cpu_count() or 1, MAX_DEFAULT_JOBS)
        one = AuditOptions(root=root, trust_roots=roots, jobs=1)
        default = AuditOptions(root=root, trust_roots=roots, jobs=jobs)
        time_sha256sum(paths)  # warm the page cache
        time_audit(one, len(paths))  # and the imports, the certificate caches' code paths
        best: dict[str, tuple[float, float]] = {}
        for _ in range(rounds):
            for name, run in (
                ("sha256sum", lambda: time_sha256sum(paths)),
                ("audit_1", lambda: time_audit(one, len(paths))),
                ("audit_default", lambda: time_audit(default, len(paths))),
            ):
                wall, cpu = run()
                if name not in best or wall < best[name][0]:
                    best[name] = (wall, cpu)
    figures = {
        "files": float(len(paths)),
        "megabytes": total_bytes / 1e6,
        "jobs": float(jobs),
        "build_s": built,
    }
    for name, (wall, cpu) in best.items():
        figures[f"{name}_wall"] = wall
        figures[f"{name}_cpu"] = cpu
    return figures


def run(quick: bool = False) -> list[Result]:
    """Files/s and MB/s of the audit (default jobs and one process) and of ``sha256sum``, and the ratio."""
    f = measure(200 if quick else ARCHIVES, 1 if quick else 2)
    files, mb = f["files"], f["megabytes"]
    rate = {name: files / f[f"{name}_wall"] for name in ("sha256sum", "audit_1", "audit_default")}
    ratio = rate["audit_default"] / rate["sha256sum"]
    jobs = int(f["jobs"])
    rows = [
        Result(
            "audit",
            f"{int(files)} archives ({mb:.1f} MB): audit --jobs {jobs}, files/s",
            round(rate["audit_default"]),
            "files/s",
        ),
        Result("audit", f"audit --jobs {jobs}, MB/s", round(mb / f["audit_default_wall"], 1), "MB/s"),
        Result("audit", "audit --jobs 1, files/s", round(rate["audit_1"]), "files/s"),
        Result("audit", "sha256sum over the same files, files/s", round(rate["sha256sum"]), "files/s"),
        Result("audit", "sha256sum, MB/s", round(mb / f["sha256sum_wall"], 1), "MB/s"),
        Result(
            "audit",
            f"audit --jobs {jobs} / sha256sum, files/s",
            round(ratio, 2),
            "ratio",
            f">= {TARGET_RATIO:g}",
            ratio >= TARGET_RATIO,
        ),
        Result(
            "audit",
            "audit --jobs 1 / sha256sum, files/s",
            round(rate["audit_1"] / rate["sha256sum"], 2),
            "ratio",
        ),
        Result("audit", "CPU per archive: audit --jobs 1", round(f["audit_1_cpu"] / files * 1e6), "µs"),
        Result("audit", "CPU per archive: sha256sum", round(f["sha256sum_cpu"] / files * 1e6), "µs"),
    ]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--archives", type=int, default=ARCHIVES, help=f"archives to audit (default {ARCHIVES})"
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds per side; each side's best is kept")
    args = parser.parse_args(argv)
    f = measure(args.archives, args.rounds)
    files, mb = f["files"], f["megabytes"]
    print(f"{int(files)} archives, {mb:.1f} MB (built in {f['build_s']:.0f} s), best of {args.rounds}")
    for name in ("sha256sum", "audit_1", "audit_default"):
        wall, cpu = f[f"{name}_wall"], f[f"{name}_cpu"]
        print(
            f"{name:14} {wall:7.2f} s  {files / wall:8.0f} files/s  {mb / wall:7.1f} MB/s  "
            f"CPU {cpu / files * 1e6:6.0f} µs/file"
        )
    print(f"audit (--jobs {int(f['jobs'])}) / sha256sum: {f['sha256sum_wall'] / f['audit_default_wall']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
