"""``python -m app extract``: the originals come back out of a signed archive byte for byte,
checked against the sidecar; names never leave the output folder."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.render.extract import ExtractError, extract, read_embedded_files, safe_name

from .test_pdfa import EVIL_NAME, Archive, build_archive

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def archive(dev_pki, tmp_path_factory) -> Archive:
    """The signed PDF/A-3B archive of test_pdfa, once for this module."""
    return build_archive(dev_pki.signer_pfx, tmp_path_factory.mktemp("extract"))


def publish(archive: Archive, folder: Path, *, sidecar: dict | None = None) -> Path:
    """The signed PDF and, unless ``sidecar`` is ``{}``, a sidecar as the storage writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    pdf = folder / "Ticket-25004711_20250307T120000Z.pdf"
    pdf.write_bytes(archive.signed)
    record = {
        "schema": 1,
        "sha256": hashlib.sha256(archive.signed).hexdigest(),
        "size": len(archive.signed),
        "embedded_files": [{"name": n, "sha256": d, "size": s} for n, d, s in archive.rendered.embedded],
    }
    if sidecar != {}:
        record.update(sidecar or {})
        (folder / (pdf.name + ".json")).write_text(json.dumps(record), encoding="utf-8")
    return pdf


def run_extract(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "extract", *args], capture_output=True, text=True, cwd=REPO
    )


def test_round_trip_is_byte_identical_to_what_the_simulator_served(archive: Archive, tmp_path: Path):
    pdf = publish(archive, tmp_path / "store")
    out = tmp_path / "out"
    done = run_extract(str(pdf), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "the PDF and every file match the sidecar" in done.stdout
    served = archive.served
    assert (out / "ticket.json").read_bytes() == served.ticket_raw
    assert (out / "articles.json").read_bytes() == served.articles_raw
    for article_id, eml in served.emls.items():
        assert (out / f"article-{article_id}.eml").read_bytes() == eml
    for (article_id, attachment_id), (filename, _, data) in served.attachments.items():
        name = safe_name(f"article-{article_id}-{attachment_id}-{filename}", set(), 0)
        assert (out / name).read_bytes() == data, filename
    written = sorted(p.name for p in out.iterdir())
    assert len(written) == len(archive.embedded)
    assert all(p.parent == out and p.is_file() for p in out.iterdir())
    assert not (tmp_path / "outside").exists()  # EVIL_NAME stayed inside
    assert any(name.endswith("Prüfbericht_ Q1_final.txt") for name in written), written


def replace_embedded_file(signed: bytes, name: str, data: bytes) -> bytes:
    """``signed`` with an incremental update after its signature that swaps the stream of the
    embedded file ``name`` for ``data``: what someone with write access to the share could do."""
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    writer = IncrementalPdfFileWriter(io.BytesIO(signed))
    names = writer.root["/Names"]["/EmbeddedFiles"]["/Names"]
    for index in range(0, len(names), 2):
        if str(names[index]) == name:
            ref = names[index + 1].get_object()["/EF"].raw_get("/F")
            old = ref.get_object()
            stream = generic.StreamObject(
                {
                    generic.NameObject("/Type"): generic.NameObject("/EmbeddedFile"),
                    generic.NameObject("/Subtype"): old["/Subtype"],
                    generic.NameObject("/Params"): generic.DictionaryObject(
                        {generic.NameObject("/Size"): generic.NumberObject(len(data))}
                    ),
                },
                stream_data=data,
            )
            writer.mark_update(ref)
            writer.objects[(ref.generation, ref.idnum)] = stream
            out = io.BytesIO()
            writer.write(out)
            return out.getvalue()
    raise AssertionError(f"{name} is not embedded")


def test_the_signature_is_checked_and_trusted_with_trust_roots(archive: Archive, dev_pki, tmp_path: Path):
    pdf = publish(archive, tmp_path / "store")
    done = run_extract(str(pdf), "-o", str(tmp_path / "out"), "--trust", str(dev_pki.root_pem))
    assert done.returncode == 0, done.stderr
    assert "intact and trusted" in done.stdout
    done = run_extract(str(pdf), "-o", str(tmp_path / "out"))
    assert done.returncode == 0 and "its certificates not checked (no trust roots" in done.stdout
    done = run_extract(str(pdf), "-o", str(tmp_path / "out"), "--trust", str(tmp_path / "nope.pem"))
    assert done.returncode == 2 and "cannot read certificate file" in done.stderr


def test_an_original_replaced_after_signing_fails_although_the_sidecar_was_edited_to_match(
    archive: Archive, tmp_path: Path
):
    forged = b'{"id": 4711, "title": "Gutschrift statt Rechnung"}'
    tampered = replace_embedded_file(archive.signed, "ticket.json", forged)
    entries = [
        {
            "name": n,
            "sha256": hashlib.sha256(forged).hexdigest() if n == "ticket.json" else d,
            "size": len(forged) if n == "ticket.json" else s,
        }
        for n, d, s in archive.rendered.embedded
    ]
    folder = tmp_path / "store"
    pdf = publish(
        archive,
        folder,
        sidecar={
            "sha256": hashlib.sha256(tampered).hexdigest(),
            "size": len(tampered),
            "embedded_files": entries,
        },
    )
    pdf.write_bytes(tampered)
    done = run_extract(str(pdf), "-o", str(tmp_path / "out"))
    assert (tmp_path / "out" / "ticket.json").read_bytes() == forged  # what the newest revision holds
    assert done.returncode == 1, done.stdout
    assert "MISMATCH: signature: the file was changed after signature 'Signature1' was made" in done.stderr
    assert "do not trust these files" in done.stderr
    assert "match the sidecar" not in done.stdout


def test_an_unsigned_pdf_whose_sidecar_says_signed_fails(archive: Archive, tmp_path: Path):
    unsigned = archive.rendered.data
    pdf = publish(archive, tmp_path, sidecar={"sha256": hashlib.sha256(unsigned).hexdigest()})
    pdf.write_bytes(unsigned)
    done = run_extract(str(pdf), "-o", str(tmp_path / "out"))
    assert done.returncode == 1
    assert "no signature in the PDF, the sidecar says signed" in done.stderr
    publish(archive, tmp_path, sidecar={"sha256": hashlib.sha256(unsigned).hexdigest(), "signed": False})
    pdf.write_bytes(unsigned)
    done = run_extract(str(pdf), "-o", str(tmp_path / "again"))
    assert done.returncode == 0, done.stderr
    assert "not signed" in done.stdout


def test_a_changed_file_hash_in_the_sidecar_fails(archive: Archive, tmp_path: Path):
    entries = [{"name": n, "sha256": d, "size": s} for n, d, s in archive.rendered.embedded]
    entries[0] = {**entries[0], "sha256": "0" * 64}
    pdf = publish(archive, tmp_path, sidecar={"embedded_files": entries})
    done = run_extract(str(pdf), "-o", str(tmp_path / "out"))
    assert done.returncode == 1
    assert (
        f"MISMATCH: {entries[0]['name']}: SHA-256" in done.stderr
        and "differs from the sidecar's 0000" in done.stderr
    )
    assert "do not trust these files" in done.stderr


def test_a_pdf_that_is_not_the_recorded_one_fails(archive: Archive, tmp_path: Path):
    pdf = publish(archive, tmp_path, sidecar={"sha256": hashlib.sha256(archive.rendered.data).hexdigest()})
    done = run_extract(str(pdf), "-o", str(tmp_path / "out"))
    assert done.returncode == 1
    assert "the PDF is not the file the archive recorded" in done.stderr


def test_missing_and_unlisted_files_fail(archive: Archive, tmp_path: Path):
    entries = [{"name": n, "sha256": d, "size": s} for n, d, s in archive.rendered.embedded]
    dropped = entries.pop(1)
    entries.append({"name": "ghost.eml", "sha256": "1" * 64, "size": 1})
    pdf = publish(archive, tmp_path, sidecar={"embedded_files": entries})
    done = run_extract(str(pdf), "-o", str(tmp_path / "out"))
    assert done.returncode == 1
    assert "ghost.eml: listed in the sidecar but not embedded in the PDF" in done.stderr
    assert f"{dropped['name']}: embedded in the PDF but not listed in the sidecar" in done.stderr


def test_without_a_sidecar_files_are_written_and_hashes_not_checked(archive: Archive, tmp_path: Path):
    pdf = publish(archive, tmp_path, sidecar={})
    report = extract(pdf, tmp_path / "out")
    assert not report.sidecar_checked and report.problems == ()
    assert len(report.written) == len(archive.embedded)
    done = run_extract(str(pdf), "-o", str(tmp_path / "again"))
    assert done.returncode == 0 and "no sidecar found, hashes not checked" in done.stdout


def test_an_explicit_sidecar_that_is_missing_or_broken_is_an_error(archive: Archive, tmp_path: Path):
    pdf = publish(archive, tmp_path, sidecar={})
    done = run_extract(str(pdf), "-o", str(tmp_path / "out"), "--sidecar", str(tmp_path / "nope.json"))
    assert done.returncode == 2 and "cannot read the sidecar" in done.stderr
    (tmp_path / "bad.json").write_text('{"embedded_files": "x"}')
    with pytest.raises(ExtractError, match="embedded_files must be a list"):
        extract(pdf, tmp_path / "out", sidecar_path=tmp_path / "bad.json")


def test_a_symlink_in_the_output_folder_is_not_followed(archive: Archive, tmp_path: Path):
    pdf = publish(archive, tmp_path / "store", sidecar={})
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(victim, out / "ticket.json")
    with pytest.raises(ExtractError, match="cannot write"):
        extract(pdf, out)
    assert victim.read_text() == "keep me"


def test_not_a_pdf_and_bad_arguments(tmp_path: Path):
    junk = tmp_path / "junk.pdf"
    junk.write_bytes(b"this is not a PDF")
    done = run_extract(str(junk), "-o", str(tmp_path / "out"))
    assert done.returncode == 2 and "cannot read the PDF" in done.stderr
    assert run_extract(str(junk)).returncode == 2  # -o is required
    assert run_extract(str(tmp_path / "missing.pdf"), "-o", str(tmp_path)).returncode == 2


def test_a_pdf_without_embedded_files_gives_none(archive: Archive, tmp_path: Path):
    from app.render.options import RenderOptions
    from app.render.pdf import render_ticket_pdf

    from .helpers import ARCHIVED_AT

    plain = render_ticket_pdf(
        {"number": "1", "title": "x"}, [], [], archived_at=ARCHIVED_AT, options=RenderOptions()
    )
    assert read_embedded_files(plain.data) == []
    assert [o.name for o in read_embedded_files(archive.signed)] == sorted(
        (f.name for f in archive.embedded), key=lambda n: (not n.isascii(), n)
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ticket.json", "ticket.json"),
        ("../../etc/passwd", "_.._etc_passwd"),
        ("/abs/path.txt", "_abs_path.txt"),
        ("a\\b:c.txt", "a_b_c.txt"),
        ("..", "embedded-7"),
        ("", "embedded-7"),
        (".hidden", "hidden"),
        ("line\nbreak\x00.txt", "line_break_.txt"),
        (EVIL_NAME, "_.._outside_Prüfbericht_ Q1_final.txt"),
    ],
)
def test_safe_names(name: str, expected: str):
    assert safe_name(name, set(), 7) == expected


def test_safe_names_are_unique_and_short():
    taken: set[str] = set()
    assert [safe_name(n, taken, i) for i, n in enumerate(["a.txt", "A.txt", "a.txt", "x/a.txt"])] == [
        "a.txt",
        "A-2.txt",
        "a-3.txt",
        "x_a.txt",
    ]
    long = safe_name("ü" * 300 + ".txt", set(), 1)
    assert len(long.encode()) <= 200


def test_a_declared_size_that_differs_from_the_stream_is_reported(tmp_path: Path):
    from fpdf import FPDF
    from fpdf.syntax import create_dictionary_string as pdf_dict

    pdf = FPDF()
    pdf.add_page()
    embedded = pdf.embed_file(bytes=b"abc", basename="x.bin", mime_type="application/octet-stream")
    embedded.params = pdf_dict({"/Size": 4})
    path = tmp_path / "sizes.pdf"
    path.write_bytes(bytes(pdf.output()))
    report = extract(path, tmp_path / "out")
    assert report.problems == ("x.bin: the PDF declares 4 bytes, the stream holds 3",)
    assert (tmp_path / "out" / "x.bin").read_bytes() == b"abc"
