"""``extract``: write the originals embedded in an archived PDF back out and check them against its sidecar.

Usage::

    python -m app extract ARCHIVE.pdf -o DIR [--sidecar ARCHIVE.pdf.json]

Every embedded file (the ``/Names /EmbeddedFiles`` tree and the catalog's ``/AF`` array of
the newest revision, so signed files work) is written to ``DIR`` under its name in the PDF,
made safe: no directories, no ``..``, no control characters, never a symlink followed,
never a path outside ``DIR``. When the sidecar exists (``ARCHIVE.pdf.json`` by default,
written by :mod:`app.storage.store`), the PDF's SHA-256 must equal the sidecar's
``sha256``, and the files must be exactly those in its ``embedded_files`` list
(``[{"name", "sha256", "size"}]``) with the same SHA-256 and size. Reading uses pyHanko's
PDF reader, which the signer already needs: no further dependency.

The sidecar is not signed: whoever can change the PDF can change it too. So the PDF's
signatures are checked as the fixity audit checks them (:class:`app.audit.signatures.SignatureVerifier`:
the CMS over the byte range, timestamps, and pyHanko's difference analysis, which lets only
validation data and document timestamps follow a signature, ISO 32000-2 §12.8.4.3): the files
of the newest revision are then the ones the signer signed. A file changed after signing (an
embedded original replaced in an incremental update, say) is a problem even when the sidecar
was edited to match; with ``--trust`` the signer's and TSA's chains are validated too.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asn1crypto import x509
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader

if TYPE_CHECKING:
    from app.audit.signatures import PdfVerdict, SignatureFinding

#: Longest file name written, in UTF-8 bytes (most file systems allow 255).
MAX_NAME_BYTES = 200
#: Deepest name tree followed (ISO 32000 sets no limit; real trees are two or three levels).
MAX_TREE_DEPTH = 32

_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:]")


class ExtractError(Exception):
    """The PDF or its sidecar cannot be read, or a file cannot be written; the message says which."""


@dataclass(frozen=True, slots=True)
class EmbeddedOriginal:
    """One embedded file as stored in the PDF.

    Attributes:
        name: its name in the PDF (``/UF``, else ``/F``, else the name-tree key).
        data: the decoded bytes.
        mime_type: ``/Subtype`` of the embedded file stream, e.g. ``message/rfc822`` (``""`` if absent).
        relationship: ``/AFRelationship`` of the file specification (``""`` if absent).
        declared_size: ``/Params /Size``, or ``None``.
    """

    name: str
    data: bytes
    mime_type: str
    relationship: str
    declared_size: int | None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def _get(container: Any, key: str) -> Any:
    """``container[key]`` dereferenced, or ``None`` when ``container`` is no dictionary or lacks ``key``."""
    if isinstance(container, generic.IndirectObject):
        container = container.get_object()
    if not isinstance(container, generic.DictionaryObject) or key not in container:
        return None
    value = container.raw_get(key)
    return value.get_object() if isinstance(value, generic.IndirectObject) else value


def _name_tree_values(node: Any, depth: int = 0) -> Iterator[tuple[str, Any]]:
    """``(key, value)`` pairs of a PDF name tree, ``/Kids`` followed depth-first."""
    if depth > MAX_TREE_DEPTH or not isinstance(node, generic.DictionaryObject):
        return
    names = _get(node, "/Names")
    if isinstance(names, generic.ArrayObject):
        for index in range(0, len(names) - 1, 2):
            yield str(names[index]), names.raw_get(index + 1)
    kids = _get(node, "/Kids")
    if isinstance(kids, generic.ArrayObject):
        for index in range(len(kids)):
            yield from _name_tree_values(kids[index], depth + 1)


def _text(value: Any) -> str:
    if isinstance(value, generic.ByteStringObject):  # /F written as bytes: UTF-8 if it decodes, else Latin-1
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")
    if isinstance(value, str):
        return str(value)
    return ""


def _original(key: str, spec: Any) -> EmbeddedOriginal | None:
    """The file a file specification dictionary embeds, or ``None`` when it embeds none."""
    if not isinstance(spec, generic.DictionaryObject):
        return None
    streams = _get(spec, "/EF")
    if not isinstance(streams, generic.DictionaryObject):
        return None
    stream = _get(streams, "/UF")
    if stream is None:
        stream = _get(streams, "/F")
    if not isinstance(stream, generic.StreamObject):
        return None
    params = _get(stream, "/Params")
    size = _get(params, "/Size") if isinstance(params, generic.DictionaryObject) else None
    subtype = _get(stream, "/Subtype")
    relationship = _get(spec, "/AFRelationship")
    return EmbeddedOriginal(
        name=_text(_get(spec, "/UF")) or _text(_get(spec, "/F")) or key,
        data=stream.data,
        mime_type=str(subtype)[1:] if isinstance(subtype, generic.NameObject) else "",
        relationship=str(relationship)[1:] if isinstance(relationship, generic.NameObject) else "",
        declared_size=int(size) if isinstance(size, generic.NumberObject) else None,
    )


def read_embedded_files(pdf: bytes) -> list[EmbeddedOriginal]:
    """Every file embedded in ``pdf`` (newest revision), name-tree order first, then any
    ``/AF`` entry the tree does not hold.

    Raises:
        ExtractError: not a PDF pyHanko can read.
    """
    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        root = reader.root
        found: list[EmbeddedOriginal] = []
        seen: set[tuple[int, int]] = set()

        def add(key: str, value: Any) -> None:
            if isinstance(value, generic.IndirectObject):
                ref = (value.idnum, value.generation)
                if ref in seen:
                    return
                seen.add(ref)
                value = value.get_object()
            original = _original(key, value)
            if original is not None:
                found.append(original)

        names = _get(root, "/Names")
        tree = _get(names, "/EmbeddedFiles") if isinstance(names, generic.DictionaryObject) else None
        for key, value in _name_tree_values(tree):
            add(key, value)
        associated = _get(root, "/AF")
        if isinstance(associated, generic.ArrayObject):
            for index in range(len(associated)):
                add("", associated.raw_get(index))
        return found
    except (PdfError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ExtractError(f"cannot read the PDF: {exc}") from exc


def safe_name(name: str, taken: set[str], number: int) -> str:
    """A file name for ``name`` that stays inside the output folder and is not yet ``taken``.

    Path separators, ``:`` and control characters become ``_``; leading dots are dropped
    (no ``..``, no hidden files); the name is cut to :data:`MAX_NAME_BYTES`; an empty
    result becomes ``embedded-<number>``; a taken one gets ``-2``, ``-3``… before the extension.
    """
    cleaned = _UNSAFE.sub("_", name).strip().lstrip(".").strip()
    while len(cleaned.encode("utf-8")) > MAX_NAME_BYTES:
        cleaned = cleaned[:-1]
    cleaned = cleaned or f"embedded-{number}"
    candidate, counter = cleaned, 2
    stem, dot, ext = cleaned.rpartition(".")
    if not stem:
        stem, dot, ext = cleaned, "", ""
    while candidate.lower() in taken:
        candidate = f"{stem}-{counter}{dot}{ext}"
        counter += 1
    taken.add(candidate.lower())
    return candidate


def _write(folder: Path, name: str, data: bytes) -> Path:
    """Write ``data`` to ``folder/name``, never following a symlink there."""
    path = folder / name
    if path.parent != folder or name in {".", ".."}:
        raise ExtractError(f"{name!r}: refusing a name outside {folder}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o644)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
    except OSError as exc:
        raise ExtractError(f"{path}: cannot write: {exc.strerror or exc}") from exc
    return path


@dataclass(frozen=True, slots=True)
class ExtractReport:
    """What :func:`extract` did: the files written and every problem found (empty = all checked and equal).

    Attributes:
        written: each file and the path it was written to.
        problems: every mismatch, the signature's included.
        sidecar_checked: whether a sidecar was compared.
        signature: one line on the PDF's signatures, e.g. ``"signature by CN=… intact; its
            certificates not checked (no trust roots)"`` or ``"not signed"``.
    """

    written: tuple[tuple[EmbeddedOriginal, Path], ...]
    problems: tuple[str, ...]
    sidecar_checked: bool
    signature: str


def _judge_signature(
    verdict: PdfVerdict, sidecar: dict[str, Any] | None, trusted: bool
) -> tuple[str, list[str]]:
    """The one-line summary of ``verdict`` and its problems; a sidecar that says signed
    (``"signed"`` absent or true) requires a signature, and its ``signer_cert_sha256`` the signer."""
    problems = [f"signature: {problem}" for problem in verdict.problems]
    if not verdict.signed:
        if sidecar is not None and sidecar.get("signed", True) is not False and not verdict.problem:
            problems.append("signature: no signature in the PDF, the sidecar says signed")
        return "not signed", problems
    recorded = sidecar.get("signer_cert_sha256") if sidecar else None
    actual = verdict.signer_cert_sha256
    if recorded and actual and str(recorded).lower() != actual:
        problems.append(f"signature: signed by certificate {actual}, the sidecar names {recorded}")
    signers = ", ".join(sorted({f.signer or "?" for f in verdict.findings if f.kind == "signature"}))
    stamps = sum(1 for f in verdict.findings if f.kind == "document_timestamp")
    what = f"signature by {signers or '?'}" + (f" and {stamps} document timestamp(s)" if stamps else "")
    if problems:
        unproven = [f"signature: {f.problem}" for f in verdict.findings if f.indeterminate]
        if unproven and problems == unproven:
            return f"{what}: NOT PROVEN (INDETERMINATE: a certificate expired since)", problems
        return f"{what}: NOT VALID", problems
    if trusted:
        return f"{what} intact and trusted" + _proven_by_timestamp(verdict.findings), problems
    return f"{what} intact; its certificates not checked (no trust roots: give --trust)", problems


def _proven_by_timestamp(findings: Sequence[SignatureFinding]) -> str:
    """``"; valid at <time>, proven by the signature timestamp (signer certificate expired on
    <date>)"`` for each signature whose signer certificate has expired since the time its
    signature timestamp proves (ETSI EN 319 102-1 §5.5), and ``"; document timestamp valid at
    <time>, proven by the document timestamp of <time> (TSA certificate expired on <date>)"``
    for each document timestamp whose TSA's chain has expired since the time a newer one
    proves (§5.6.3); else ``""``."""
    now = datetime.now(UTC)
    notes = []
    for f in findings:
        if f.kind == "signature" and f.timestamp and f.signer_not_after and f.signer_not_after <= now:
            notes.append(
                f"; valid at {f.timestamp.isoformat(timespec='seconds')}, proven by the signature timestamp "
                f"(signer certificate expired on {f.signer_not_after.date().isoformat()})"
            )
        elif f.kind == "document_timestamp" and f.timestamp and f.proven_by and f.signer_not_after:
            notes.append(
                f"; document timestamp valid at {f.timestamp.isoformat(timespec='seconds')}, proven by "
                f"the document timestamp of {f.proven_by.isoformat(timespec='seconds')} "
                f"(TSA certificate expired on {f.signer_not_after.date().isoformat()})"
            )
    return "".join(notes)


def _load_sidecar(path: Path) -> dict[str, Any]:
    try:
        sidecar = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ExtractError(f"{path}: cannot read the sidecar: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExtractError(f"{path}: the sidecar is not valid JSON: {exc}") from exc
    if not isinstance(sidecar, dict):
        raise ExtractError(f"{path}: the sidecar is not a JSON object")
    listed = sidecar.get("embedded_files", [])
    if not isinstance(listed, list) or not all(
        isinstance(entry, dict) and isinstance(entry.get("name"), str) for entry in listed
    ):
        raise ExtractError(f'{path}: embedded_files must be a list of {{"name", "sha256", "size"}} objects')
    return sidecar


def extract(
    pdf_path: Path,
    out_dir: Path,
    *,
    sidecar_path: Path | None = None,
    trust_roots: Sequence[x509.Certificate] = (),
) -> ExtractReport:
    """Write every file embedded in ``pdf_path`` into ``out_dir``, check them against the
    sidecar and the PDF's signatures (see the module docstring).

    Args:
        pdf_path: the archived PDF (signed or not).
        out_dir: created if missing; files in it with the same names are overwritten.
        sidecar_path: the sidecar to check against; ``None`` means ``<pdf_path>.json`` if it exists.
        trust_roots: roots the signer's and TSA's chains must end in; empty: integrity only.

    Raises:
        ExtractError: the PDF or sidecar cannot be read, or a file cannot be written.
    """
    try:
        pdf = pdf_path.read_bytes()
    except OSError as exc:
        raise ExtractError(f"{pdf_path}: cannot read: {exc.strerror or exc}") from exc
    explicit = sidecar_path is not None
    sidecar_path = sidecar_path or pdf_path.with_name(pdf_path.name + ".json")
    sidecar = _load_sidecar(sidecar_path) if explicit or sidecar_path.exists() else None
    originals = read_embedded_files(pdf)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        folder = out_dir.resolve(strict=True)
    except OSError as exc:
        raise ExtractError(f"{out_dir}: cannot create the folder: {exc.strerror or exc}") from exc

    problems: list[str] = []
    written: list[tuple[EmbeddedOriginal, Path]] = []
    taken: set[str] = set()
    for number, original in enumerate(originals, start=1):
        path = _write(folder, safe_name(original.name, taken, number), original.data)
        written.append((original, path))
        if original.declared_size is not None and original.declared_size != len(original.data):
            problems.append(
                f"{original.name}: the PDF declares {original.declared_size} bytes, "
                f"the stream holds {len(original.data)}"
            )

    if sidecar is not None:
        digest = hashlib.sha256(pdf).hexdigest()
        if sidecar.get("sha256") != digest:
            problems.append(
                f"{pdf_path.name}: SHA-256 {digest} differs from the sidecar's {sidecar.get('sha256')} "
                "(the PDF is not the file the archive recorded)"
            )
        listed = {entry["name"]: entry for entry in sidecar.get("embedded_files", [])}
        in_pdf: dict[str, EmbeddedOriginal] = {}
        for original in originals:
            if original.name in in_pdf:
                problems.append(f"{original.name}: embedded twice")
            in_pdf[original.name] = original
        for name, entry in listed.items():
            found = in_pdf.get(name)
            if found is None:
                problems.append(f"{name}: listed in the sidecar but not embedded in the PDF")
            elif found.sha256 != entry.get("sha256"):
                problems.append(
                    f"{name}: SHA-256 {found.sha256} differs from the sidecar's {entry.get('sha256')}"
                )
            elif entry.get("size") is not None and entry.get("size") != len(found.data):
                problems.append(f"{name}: {len(found.data)} bytes, the sidecar says {entry.get('size')}")
        for name in in_pdf:
            if name not in listed:
                problems.append(f"{name}: embedded in the PDF but not listed in the sidecar")
    # Imported here: it loads pyHanko's signing modules, whose import-time warnings must reach
    # the JSON log that ``python -m app`` configures after importing this module.
    from app.audit.signatures import SignatureVerifier

    verifier = SignatureVerifier(trust_roots)
    try:
        verdict = verifier.verify_bytes(pdf)
    finally:
        verifier.close()
    signature, signature_problems = _judge_signature(verdict, sidecar, verifier.checks_trust)
    problems.extend(signature_problems)
    return ExtractReport(
        written=tuple(written),
        problems=tuple(problems),
        sidecar_checked=sidecar is not None,
        signature=signature,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app extract",
        description="Write the originals embedded in an archived PDF to a folder, check their SHA-256 "
        "against the archive's sidecar (ARCHIVE.pdf.json) and the PDF's signatures (that nothing but "
        "validation data and document timestamps was added after signing).",
    )
    parser.add_argument("pdf", help="the archived PDF")
    parser.add_argument(
        "-o", "--output", required=True, help="folder to write the files to (created if missing)"
    )
    parser.add_argument(
        "--sidecar", help="sidecar JSON to check against (default: PDF path + .json, if present)"
    )
    parser.add_argument(
        "--trust",
        type=Path,
        action="append",
        metavar="PEM",
        help="trust roots for the signer's and TSA's chains (repeatable); without it the signatures' "
        "integrity is checked, not whom they chain to",
    )
    return parser


def main(argv: list[str]) -> int:
    """Run the ``extract`` command; ``argv`` excludes the program and command names.

    Returns:
        0 when every file was written, (with a sidecar) every hash matches and every
        signature holds; 1 when a check failed; 2 on bad arguments or an unreadable PDF,
        sidecar, trust-root file or folder.
    """
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and errors; return its code instead
        return int(exc.code or 0)
    from app.errors import ConfigError
    from app.signing.trust import load_certificates

    try:
        roots = tuple(cert for path in args.trust or () for cert in load_certificates(path))
        report = extract(
            Path(args.pdf),
            Path(args.output),
            sidecar_path=Path(args.sidecar) if args.sidecar else None,
            trust_roots=roots,
        )
    except (ExtractError, ConfigError) as exc:
        print(f"extract: {exc}", file=sys.stderr)
        return 2
    for original, path in report.written:
        print(
            f"{path}  {len(original.data)} bytes  sha256 {original.sha256}  "
            f"{original.mime_type or '?'}  {original.relationship or '?'}"
        )
    for problem in report.problems:
        print(f"extract: MISMATCH: {problem}", file=sys.stderr)
    print(report.signature, file=sys.stderr if report.problems else sys.stdout)
    count = len(report.written)
    if report.problems:
        print(
            f"extract: {count} files written, {len(report.problems)} problems: do not trust these files",
            file=sys.stderr,
        )
        return 1
    if report.sidecar_checked:
        print(f"{count} files written; the PDF and every file match the sidecar")
    else:
        print(f"{count} files written; no sidecar found, hashes not checked")
    return 0
