"""The ``render`` command: input shapes it accepts, exit codes, reproducible output."""

from __future__ import annotations

import pytest

from app.render.cli import main
from app.render.options import RenderOptions
from app.render.pdf import render_ticket_pdf

from .helpers import ARCHIVED_AT, FIXTURES, load, pdftotext

FIXED = ["--archived-at", "2025-03-07T12:00:00Z", "--timezone", "Europe/Berlin"]


@pytest.mark.parametrize(
    ("ticket_file", "articles_file"),
    [
        ("ticket-expand.json", "articles-by-ticket.json"),
        ("webhook-default.json", "articles-by-ticket.json"),
        ("ticket-all.json", "ticket-all.json"),
    ],
)
def test_accepts_every_ticket_shape(tmp_path, capsys, ticket_file, articles_file):
    out = tmp_path / "t.pdf"
    code = main(
        [
            str(FIXTURES / ticket_file),
            str(FIXTURES / articles_file),
            "-o",
            str(out),
            "--tags",
            str(FIXTURES / "tags.json"),
            *FIXED,
        ]
    )
    assert code == 0
    text, _ = pdftotext(out)
    assert "25004711" in text and "Mit freundlichen Grüßen" in text and "rechnung, reklamation" in text
    assert "4/4 articles" in capsys.readouterr().out


def test_ticket_all_resolves_user_and_group_ids(tmp_path):
    out = tmp_path / "t.pdf"
    assert (
        main([str(FIXTURES / "ticket-all.json"), str(FIXTURES / "ticket-all.json"), "-o", str(out), *FIXED])
        == 0
    )
    text, _ = pdftotext(out, "-layout")
    assert "Tobias Reinhardt <tobias.reinhardt@nordlicht-software.example>" in text
    assert (
        "Kundenservice" in text and "rechnung, reklamation, pdf:sign" in text
    )  # tags from ticket-all itself


def test_output_matches_the_library_call(tmp_path):
    out = tmp_path / "t.pdf"
    args = [str(FIXTURES / "ticket-expand.json"), str(FIXTURES / "articles-by-ticket.json"), "-o", str(out)]
    assert main([*args, "--tags", str(FIXTURES / "tags.json"), *FIXED]) == 0
    direct = render_ticket_pdf(
        load("ticket-expand.json"),
        load("articles-by-ticket.json"),
        load("tags.json")["tags"],
        archived_at=ARCHIVED_AT,
        options=RenderOptions(timezone="Europe/Berlin"),
    )
    assert out.read_bytes() == direct.data


def test_bad_input_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main([str(bad), str(FIXTURES / "articles-by-ticket.json")]) == 2
    assert main([str(tmp_path / "missing.json"), str(FIXTURES / "articles-by-ticket.json")]) == 2
    assert (
        main(
            [
                str(FIXTURES / "ticket-expand.json"),
                str(FIXTURES / "articles-by-ticket.json"),
                "--timezone",
                "Nowhere/Else",
            ]
        )
        == 2
    )
    assert main([str(FIXTURES / "tags.json"), str(FIXTURES / "articles-by-ticket.json")]) == 2
    assert "render:" in capsys.readouterr().err


def test_no_pdfa_writes_plain_pdf(tmp_path):
    from .helpers import pdfinfo

    plain, archival = tmp_path / "plain.pdf", tmp_path / "pdfa.pdf"
    files = [str(FIXTURES / "ticket-expand.json"), str(FIXTURES / "articles-by-ticket.json")]
    assert main([*files, "-o", str(plain), "--no-pdfa", *FIXED]) == 0
    assert main([*files, "-o", str(archival), *FIXED]) == 0
    assert pdfinfo(plain)["Metadata Stream"] == "no" and "Title" in pdfinfo(plain)
    assert (
        pdfinfo(archival)["Metadata Stream"] == "yes"
        and b"<pdfaid:part>3</pdfaid:part>" in archival.read_bytes()
    )
