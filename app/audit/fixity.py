"""The check of one archive: read it once, compare SHA-256 and size with its sidecar, verify its signatures.

One pass over the file computes its SHA-256 and, when the file's one signature covers
all of it but the ``/Contents`` gap (:func:`app.audit.signatures.locate_signature`), the
digest of that signature's byte range — from a copy of the SHA-256 state taken where the
gap starts, when both use SHA-256, so the bytes before the gap are hashed once. The file is
read in :data:`CHUNK_BYTES` chunks into one reused buffer: memory does not grow with the
file. Files that need pyHanko's reader are read again by it.

Result codes, most severe first (:data:`RESULT_ORDER`); a file gets every code that applies
and is reported under the first.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from app.audit.root_position import described_here
from app.audit.signatures import (
    BYTE_RANGE_TOKEN,
    TAIL_BYTES,
    LocatedSignature,
    PdfVerdict,
    SignatureVerifier,
    locate_signature,
)
from app.storage.store import SIDECAR_MAX_BYTES

OK = "ok"
HASH_MISMATCH = "hash_mismatch"
SIGNATURE_INVALID = "signature_invalid"
SIGNATURE_INDETERMINATE = "signature_indeterminate"
MISSING_SIDECAR = "missing_sidecar"
ORPHAN_SIDECAR = "orphan_sidecar"
CERTIFICATE_EXPIRING = "certificate_expiring"
UNREADABLE = "unreadable"
MANIFEST_MISMATCH = "manifest_mismatch"
NOT_IN_MANIFEST = "not_in_manifest"
MISSING_ARCHIVE = "missing_archive"
TEMP_FILE_LEFT = "temp_file_left"
TEMP_FILE_REMOVED = "temp_file_removed"

RESULT_ORDER = (
    MISSING_ARCHIVE,
    UNREADABLE,
    HASH_MISMATCH,
    MANIFEST_MISMATCH,
    SIGNATURE_INVALID,
    SIGNATURE_INDETERMINATE,
    MISSING_SIDECAR,
    ORPHAN_SIDECAR,
    NOT_IN_MANIFEST,
    CERTIFICATE_EXPIRING,
    TEMP_FILE_LEFT,
    TEMP_FILE_REMOVED,
    OK,
)
"""Every per-file result code, most severe first.

``missing_archive``: the manifest records an archive whose PDF is not there (``--manifest``:
deleted, renamed or moved, or a folder on its path replaced by a symlink). ``unreadable``: the
file (or its sidecar) cannot be read or is not a regular file.
``hash_mismatch``: SHA-256 or size differ from the sidecar's, the sidecar is unusable, or it
describes an archive at another path (a copy, or a renamed or moved archive). ``manifest_mismatch``: the
SHA-256 differs from the manifest's line for the path (``--manifest``). ``signature_invalid``:
a signature, timestamp or certificate path does not verify, the file changed after signing,
a signed archive has no signature, or the signer is not the sidecar's.
``signature_indeterminate``: a signature without a timestamp (PAdES B-B) whose signer
certificate chained to the trust roots but has expired since, or a signature timestamp whose
TSA chain has expired since with no document timestamp after it: it can be proven neither
valid nor invalid (ETSI EN 319 102-1 INDETERMINATE); nothing changed. ``missing_sidecar``:
a PDF without ``<name>.pdf.json`` (an interrupted publish, or a sidecar deleted).
``orphan_sidecar``: a sidecar without its PDF. ``not_in_manifest`` (``--manifest``): no line for
the archive at its path although its sidecar says it was entered (``"manifest": true``), or,
for a sidecar without that key, although it was written after the manifest began, or the
manifest records its SHA-256 for another path (a copy). ``certificate_expiring``: the chain of
the archive's newest evidence expires within the warning window (or has expired).
``temp_file_left``: not an archive but a storage temporary file ``.<name>.<16 hex>.tmp`` older
than the audit's threshold, left by a write that was killed (:mod:`app.audit.temp_files`).
``temp_file_removed``: such a file, removed on request; like ``ok``, not a problem
(:data:`PASSING_RESULTS`)."""

PASSING_RESULTS = frozenset({OK, TEMP_FILE_REMOVED})
"""Result codes that are not problems: they fail no audit and count in no ``problems``."""

CHUNK_BYTES = 1 << 20
"""Read size when streaming an archive."""


_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding about a file: a result code and what exactly is wrong."""

    code: str
    detail: str


@dataclass(slots=True)
class FileReport:
    """The audit's verdict on one archive (or orphan sidecar).

    Attributes:
        path: relative to the storage root, ``/``-separated.
        problems: every problem found; empty means ``ok``.
        size, sha256: what was read (``None`` when the file could not be read); for a
            temporary file (``temp_file_left``, ``temp_file_removed``) its size, not read.
        pades_level: the sidecar's ``pades_level``.
        signature_check: ``"byte_range"``, ``"pyhanko"``, ``"none"`` or ``None`` (not checked).
        evidence_expires_at: see :attr:`app.audit.signatures.PdfVerdict.evidence_expires_at`.
        archived_at: the sidecar's ``archived_at`` (ISO 8601), if any.
        sidecar_read: whether a sidecar was read and parsed.
        ticket_id: the sidecar's ``ticket_id``, if it is a number.
        ticket_number, job_id: the sidecar's ``ticket_number`` and ``job_id`` as it has them.
        manifested: the sidecar says the archive was entered in the manifest (``"manifest":
            true``, written by the archive store since the manifest's entries became checkable;
            older sidecars lack it).
    """

    path: str
    problems: list[Problem] = field(default_factory=list)
    size: int | None = None
    sha256: str | None = None
    pades_level: str | None = None
    signature_check: str | None = None
    evidence_expires_at: datetime | None = None
    archived_at: str | None = None
    sidecar_read: bool = False
    ticket_id: int | None = None
    ticket_number: object = None
    job_id: object = None
    manifested: bool = False

    @property
    def result(self) -> str:
        """The most severe problem's code, or ``ok``."""
        if not self.problems:
            return OK
        return min((p.code for p in self.problems), key=RESULT_ORDER.index)

    def add(self, code: str, detail: str) -> None:
        self.problems.append(Problem(code, detail))

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (the shape of ``python -m app audit --json``'s ``files`` items)."""
        return {
            "path": self.path,
            "result": self.result,
            "problems": [{"code": p.code, "detail": p.detail} for p in self.problems],
            "size": self.size,
            "sha256": self.sha256,
            "pades_level": self.pades_level,
            "signature_check": self.signature_check,
            "evidence_expires_at": self.evidence_expires_at.isoformat() if self.evidence_expires_at else None,
        }


@dataclass(frozen=True, slots=True)
class ReadResult:
    """What one pass over an archive gave: its size, SHA-256 and signature verdict."""

    size: int
    sha256: str
    verdict: PdfVerdict


def read_archive(dir_fd: int, name: str, verifier: SignatureVerifier, buffer: bytearray) -> ReadResult:
    """Read the archive ``name`` in the folder ``dir_fd`` once (without following a symlink)
    and check its signatures (see the module docstring).

    Args:
        buffer: a reusable buffer of :data:`CHUNK_BYTES`.

    Raises:
        OSError: the file cannot be opened or read, or is not a regular file (``EINVAL``).
    """
    fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        size = st.st_size
        base = max(0, size - TAIL_BYTES)
        tail = os.pread(fd, size - base, base) if size else b""
        located = locate_signature(tail, base, size)
        sha256, range_digest, tokens = _stream(fd, size, located, buffer)
        if located is not None and tokens == 1 and range_digest is not None:
            verdict = verifier.verify_located(located, range_digest)
        else:
            with os.fdopen(os.dup(fd), "rb", buffering=CHUNK_BYTES) as stream:
                stream.seek(0)
                verdict = verifier.verify_stream(stream)
        return ReadResult(size, sha256, verdict)
    finally:
        os.close(fd)


def _stream(
    fd: int, size: int, located: LocatedSignature | None, buffer: bytearray
) -> tuple[str, bytes | None, int]:
    """One pass: (SHA-256 hex of the file, digest of ``located``'s byte range or ``None``,
    number of ``/ByteRange`` tokens in the file)."""
    whole = hashlib.sha256()
    ranged: Any = None
    gap_start = gap_end = -1
    algorithm = located.digest_algorithm if located is not None else None
    if located is not None and algorithm is not None:
        _, gap_start, gap_end, _ = located.byte_range
        try:
            ranged = None if algorithm == "sha256" else hashlib.new(algorithm)
        except ValueError:
            algorithm = None
    share = algorithm == "sha256"  # the range digest forks from the file's at the gap
    view = memoryview(buffer)
    token = BYTE_RANGE_TOKEN
    overlap = b""
    tokens = 0
    offset = 0
    while offset < size:
        count = os.preadv(fd, [buffer], offset)
        if count <= 0:
            raise OSError(errno.EIO, "file shrank while it was read")
        chunk = view[:count]
        end = offset + count
        if algorithm is not None:
            # [offset, end) split at the gap [gap_start, gap_end).
            before = chunk[: max(0, min(end, gap_start) - offset)]
            after = chunk[max(0, gap_end - offset) :] if end > gap_end else chunk[:0]
            if share:
                if before:
                    whole.update(before)
                if ranged is None and end > gap_start:
                    ranged = whole.copy()
                if end > gap_start:
                    whole.update(chunk[len(before) :])
                    if after:
                        ranged.update(after)
            else:
                whole.update(chunk)
                if before:
                    ranged.update(before)
                if after:
                    ranged.update(after)
        else:
            whole.update(chunk)
        scan = overlap + bytes(chunk[: len(token) - 1]) if overlap else b""
        tokens += scan.count(token) + buffer.count(token, 0, count)
        overlap = bytes(chunk[max(0, count - len(token) + 1) :])
        offset = end
    if algorithm is not None and share and ranged is None:
        ranged = whole.copy()  # empty gap at the very end (cannot happen for a located signature)
    digest = ranged.digest() if algorithm is not None and ranged is not None else None
    return whole.hexdigest(), digest, tokens


def read_sidecar(dir_fd: int, name: str) -> dict[str, Any]:
    """The sidecar ``name`` in ``dir_fd``, parsed.

    Raises:
        OSError: it cannot be opened or read.
        ValueError: it is larger than :data:`SIDECAR_MAX_BYTES`, not JSON or not an object.
    """
    fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    try:
        raw = os.read(fd, SIDECAR_MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > SIDECAR_MAX_BYTES:
        raise ValueError(f"larger than {SIDECAR_MAX_BYTES} bytes")
    parsed = orjson.loads(raw)
    if not isinstance(parsed, dict):
        raise ValueError("not a JSON object")
    return parsed


def check_archive(
    dir_fd: int,
    relative: str,
    pdf_name: str,
    sidecar_name: str | None,
    verifier: SignatureVerifier,
    buffer: bytearray,
    *,
    now: datetime,
    expiry_window: timedelta,
    root_prefix: str | None = "",
) -> FileReport:
    """The full check of one archive (see :data:`RESULT_ORDER` for the codes).

    Args:
        dir_fd: the archive's folder, opened.
        relative: the archive's path relative to the root (for the report and the manifest).
        pdf_name, sidecar_name: names in that folder (``sidecar_name=None``: it has none).
        verifier: the run's signature verifier.
        buffer: a reusable buffer of :data:`CHUNK_BYTES`.
        now: the audit's time (aware).
        expiry_window: evidence expiring within this time of ``now`` is ``certificate_expiring``.
        root_prefix: the root's position under the storage root (``""``: it is the storage
            root; ``None``: unknown), :func:`app.audit.root_position.root_prefix`; a sidecar's
            ``path`` must be it joined with ``relative`` (unknown: end in ``relative``).
    """
    report = FileReport(relative)
    sidecar: dict[str, Any] | None = None
    if sidecar_name is None:
        report.add(MISSING_SIDECAR, "no sidecar: an interrupted publish, or the sidecar was deleted")
    else:
        try:
            sidecar = read_sidecar(dir_fd, sidecar_name)
        except OSError as exc:
            report.add(UNREADABLE, f"sidecar cannot be read: {os.strerror(exc.errno or 0)}")
        except ValueError as exc:
            report.add(HASH_MISMATCH, f"sidecar is not usable: {exc}")
    if sidecar is not None:
        report.sidecar_read = True
        level = sidecar.get("pades_level")
        report.pades_level = str(level) if level is not None else None
        archived_at = sidecar.get("archived_at")
        report.archived_at = str(archived_at) if archived_at else None
        ticket_id = sidecar.get("ticket_id")
        report.ticket_id = (
            ticket_id if isinstance(ticket_id, int) and not isinstance(ticket_id, bool) else None
        )
        report.ticket_number = sidecar.get("ticket_number")
        report.job_id = sidecar.get("job_id")
        report.manifested = sidecar.get("manifest") is True
    try:
        result = read_archive(dir_fd, pdf_name, verifier, buffer)
    except OSError as exc:
        reason = (
            "not a regular file" if exc.errno in (errno.ELOOP, errno.EINVAL) else os.strerror(exc.errno or 0)
        )
        report.add(UNREADABLE, f"cannot be read: {reason}")
        return report
    report.size, report.sha256 = result.size, result.sha256
    if sidecar is not None:
        expected_sha, expected_size = sidecar.get("sha256"), sidecar.get("size")
        if expected_sha != result.sha256:
            report.add(HASH_MISMATCH, f"SHA-256 is {result.sha256}, the sidecar says {expected_sha}")
        elif expected_size != result.size:
            report.add(HASH_MISMATCH, f"size is {result.size} bytes, the sidecar says {expected_size}")
        described = sidecar.get("path")
        # A root that is a folder of the storage root (an audit of one group) sees the tail of
        # it, behind that folder's own position (root_prefix), never behind another one.
        if described is not None and not described_here(described, relative, root_prefix):
            report.add(
                HASH_MISMATCH,
                f"the sidecar describes the archive at {described!r}, not this place "
                "(a copied, renamed or moved archive)",
            )
    _judge_signatures(report, result.verdict, sidecar, now, expiry_window)
    return report


def _judge_signatures(
    report: FileReport,
    verdict: PdfVerdict,
    sidecar: dict[str, Any] | None,
    now: datetime,
    expiry_window: timedelta,
) -> None:
    report.signature_check = verdict.method
    expect_signed = sidecar is None or sidecar.get("signed", True) is not False
    if not verdict.signed:
        if verdict.problem:
            report.add(SIGNATURE_INVALID, verdict.problem)
        elif expect_signed:
            report.add(
                SIGNATURE_INVALID,
                "no signature in the PDF" + (" (the sidecar says signed)" if sidecar else ""),
            )
        return
    if verdict.problem:
        report.add(SIGNATURE_INVALID, verdict.problem)
    for finding in verdict.findings:
        if finding.problem:
            report.add(
                SIGNATURE_INDETERMINATE if finding.indeterminate else SIGNATURE_INVALID, finding.problem
            )
    recorded = sidecar.get("signer_cert_sha256") if sidecar else None
    actual = verdict.signer_cert_sha256
    if recorded and actual and str(recorded).lower() != actual:
        report.add(SIGNATURE_INVALID, f"signed by certificate {actual}, the sidecar names {recorded}")
    expires = verdict.evidence_expires_at
    report.evidence_expires_at = expires
    if expires is not None and expires <= now + expiry_window and not verdict.problems:
        state = "expired" if expires <= now else "expires"
        report.add(
            CERTIFICATE_EXPIRING, f"{_evidence_chains(verdict)} {state} on {expires.date().isoformat()}"
        )


def _evidence_chains(verdict: PdfVerdict) -> str:
    """Which chains :attr:`~app.audit.signatures.PdfVerdict.evidence_expires_at` is the expiry
    of, as the ``certificate_expiring`` detail names them: the newest document timestamp's TSA
    chain, else the signer's chain and, with a signature timestamp, its TSA's (the earlier)."""
    if any(f.kind == "document_timestamp" and f.expires_at for f in verdict.findings):
        return "the certificate chain of its newest document timestamp"
    if any(f.kind == "signature" and f.timestamp for f in verdict.findings):
        return "a certificate chain of its signature (the signer's, or its signature timestamp's TSA's)"
    return "the signer's certificate chain"
