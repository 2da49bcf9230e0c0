"""``render``: lay a ticket saved as JSON out as a PDF, for trying templates without Zammad.

Usage::

    python -m app render TICKET.json ARTICLES.json [-o out.pdf] [--tags TAGS.json]
        [--template default] [--timezone UTC] [--archived-at 2025-03-07T12:00:00Z] [--no-pdfa]

Lenient about where the data sits: TICKET.json may be the ``?expand=true`` ticket, a webhook
payload (ticket under ``"ticket"``) or ``GET /api/v1/tickets/{id}/ticket-all`` output (ticket and
articles under ``"assets"``, ids resolved to names where the assets hold them). ARTICLES.json
may be a list, ``{"articles": [...]}`` or ticket-all output. Tags come from ``--tags``
(``{"tags": [...]}`` or a list), else from the ticket file.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.errors import RenderError
from app.i18n import DEFAULT_LANGUAGE, LANGUAGES
from app.render import patches
from app.render.content import parse_time
from app.render.options import TEMPLATES, RenderOptions
from app.render.pdf import render_ticket_pdf


class InputError(Exception):
    """A file is missing, not JSON, or holds nothing that looks like the expected data."""


def _load(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON: {exc}") from exc


def _resolve_ticket_all(data: dict[str, Any]) -> dict[str, Any]:
    """The ticket of ticket-all output, with ``*_id`` references looked up in ``assets``."""
    assets = data.get("assets") or {}
    tickets = assets.get("Ticket") or {}
    ticket = dict(tickets.get(str(data.get("ticket_id"))) or next(iter(tickets.values()), {}))
    references = {
        "group": "Group",
        "organization": "Organization",
        "owner": "User",
        "customer": "User",
        "state": "TicketState",
        "priority": "TicketPriority",
    }
    for field, asset in references.items():
        if ticket.get(field) is None and ticket.get(f"{field}_id") is not None:
            found = (assets.get(asset) or {}).get(str(ticket[f"{field}_id"]))
            if found is not None:
                ticket[field] = found
    return ticket


def extract_ticket(data: Any) -> dict[str, Any]:
    """The ticket object from any of the accepted shapes.

    Raises:
        InputError: nothing in ``data`` looks like a ticket.
    """
    if isinstance(data, dict):
        if isinstance(data.get("assets"), dict) and "Ticket" in data["assets"]:
            return _resolve_ticket_all(data)
        if isinstance(data.get("ticket"), dict):
            return data["ticket"]
        if "number" in data or "title" in data:
            return data
    raise InputError("no ticket found: expected a ticket object, a webhook payload or ticket-all output")


def extract_articles(data: Any) -> list[dict[str, Any]]:
    """The article list from any of the accepted shapes.

    Raises:
        InputError: nothing in ``data`` looks like a list of articles.
    """
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        if isinstance(data.get("articles"), list):
            return data["articles"]
        assets = data.get("assets")
        if isinstance(assets, dict) and isinstance(assets.get("TicketArticle"), dict):
            return list(assets["TicketArticle"].values())
        if isinstance(data.get("article"), dict):
            return [data["article"]]
    raise InputError('no articles found: expected a list, {"articles": [...]} or ticket-all output')


def extract_tags(data: Any) -> list[str]:
    """Tags from ``{"tags": [...]}``, a list, or a ticket that carries ``tags``; else ``[]``."""
    if isinstance(data, list):
        return [str(tag) for tag in data]
    if isinstance(data, dict):
        for candidate in (
            data.get("tags"),
            (data.get("ticket") or {}).get("tags") if isinstance(data.get("ticket"), dict) else None,
        ):
            if isinstance(candidate, list):
                return [str(tag) for tag in candidate]
            if isinstance(candidate, str):
                return [tag.strip() for tag in candidate.split(",") if tag.strip()]
    return []


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app render", description="Render a Zammad ticket (JSON) as a PDF."
    )
    parser.add_argument(
        "ticket", help="ticket JSON: ?expand=true ticket, webhook payload or ticket-all output"
    )
    parser.add_argument("articles", help='articles JSON: list, {"articles": [...]} or ticket-all output')
    parser.add_argument("-o", "--output", help="PDF to write (default: ticket-<number>.pdf)")
    parser.add_argument(
        "--tags", help='tags JSON: {"tags": [...]} or a list (default: tags in the ticket file)'
    )
    parser.add_argument("--template", default="default", choices=TEMPLATES)
    parser.add_argument("--timezone", default="UTC", help="IANA time zone for the times shown (default: UTC)")
    parser.add_argument(
        "--archived-at", help="archive time, ISO 8601 (default: now); fix it for reproducible output"
    )
    parser.add_argument("--no-pdfa", action="store_true", help="write plain PDF 1.7 instead of PDF/A-3B")
    parser.add_argument(
        "--language", default=DEFAULT_LANGUAGE, choices=LANGUAGES, help="labels and dates (default: en)"
    )
    return parser


def main(argv: list[str]) -> int:
    """Run the ``render`` command; ``argv`` excludes the program and command names.

    Returns:
        0 on success, 1 when rendering failed (:class:`~app.errors.RenderError`), 2 on bad
        arguments or input files. Messages go to stderr; the PDF path and facts to stdout.
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and errors; return its code instead
        return int(exc.code or 0)
    try:
        options = RenderOptions(
            template=args.template, timezone=args.timezone, pdfa=not args.no_pdfa, language=args.language
        )
    except ValueError as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 2
    if args.archived_at:
        archived_at = parse_time(args.archived_at)
        if archived_at is None:
            print(f"render: --archived-at: not an ISO 8601 time: {args.archived_at!r}", file=sys.stderr)
            return 2
    else:
        archived_at = datetime.now(UTC).replace(microsecond=0)
    try:
        ticket_data = _load(args.ticket)
        ticket = extract_ticket(ticket_data)
        articles = extract_articles(ticket_data if args.articles == args.ticket else _load(args.articles))
        tags = extract_tags(_load(args.tags)) if args.tags else extract_tags(ticket_data)
    except InputError as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 2
    patches.install()  # as in the render processes (app.render.pool)
    try:
        rendered = render_ticket_pdf(ticket, articles, tags, archived_at=archived_at, options=options)
    except RenderError as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 1
    output = Path(args.output or f"ticket-{ticket.get('number') or ticket.get('id') or 'unknown'}.pdf")
    try:
        output.write_bytes(rendered.data)
    except OSError as exc:
        print(f"render: {output}: cannot write: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(
        f"{output}: {rendered.page_count} pages, "
        f"{rendered.articles_included}/{rendered.articles_total} articles, "
        f"{rendered.missing_glyphs} missing glyphs, {len(rendered.data)} bytes"
    )
    return 0
