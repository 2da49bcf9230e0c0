"""Which originals go into the PDF as PDF/A-3 associated files, fetched from Zammad, and which not.

The pages are a rendering; the originals are the evidence: the API answers byte for byte,
each article's stored body, each e-mail article's raw message and the attachments, within
the caps of :class:`EmbedPolicy`. What is left out is listed with the reason (on the pages,
in the sidecar and in the note). A download that fails for good (Zammad answers 4xx: the
file is gone) is an omission at once; one that may heal (5xx, timeout, connection cut, or
fewer or more bytes than Zammad declares for the attachment) fails the attempt as Transient
(:class:`DownloadFailed`) so the job is retried (``dead`` when it persists, then queued again
by the reconciliation sweep). It is an omission only once the ticket has been failing to archive
for ``WORKFLOW_DOWNLOAD_GIVE_UP_HOURS`` (across retries and sweeps:
:class:`~app.jobs.records.FailingStreak`), on the job's last attempt (:attr:`Attempt.gives_up`):
"download failed for 26 h over 9 attempts, given up after 24 h (WORKFLOW_DOWNLOAD_GIVE_UP_HOURS):
…". With 0 hours that is the first job's last attempt, "download failed after N attempts: …".
The layout's images follow the same rule (:mod:`app.workflow.images`).

Over ``PDF_MAX_ARTICLES`` (``cap_and_continue``) the articles are those the PDF holds, the
oldest (:func:`app.render.content.kept_articles`): the others' bodies, raw e-mails and
attachments are neither downloaded nor listed as omitted, which keeps a huge ticket's
downloads bounded; ``articles.json`` stays Zammad's answer byte for byte, every article in it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from app.errors import ArchiverError
from app.workflow.classify import classify
from app.workflow.ports import FETCH_CONCURRENCY, EmbeddedFile, OmittedFile, ZammadPort
from app.zammad.attachments import declared_size, is_html_part_copy

T = TypeVar("T")


class DownloadFailed(ArchiverError):
    """An original's download failed in a way that may heal (Zammad 5xx, timeout, connection
    error, a length other than the declared size) on an attempt that does not give up on it:
    the attempt fails as Transient and the job's retry policy runs it again."""

    code = "download_failed"
    transient = True


@dataclass(frozen=True, slots=True)
class Attempt:
    """Which run of the job this is, and whether a download that may heal is given up on now.

    Attributes:
        number: this run of the job, 1-based.
        maximum: the job's runs at most (``WORKFLOW_MAX_ATTEMPTS``).
        give_up_seconds: ``WORKFLOW_DOWNLOAD_GIVE_UP_HOURS`` in seconds: how long the ticket
            may fail to archive before a Transient download failure is left out of the archive
            instead of failing the run.
        failing_seconds: how long the ticket has been failing to archive when this run
            started (:class:`~app.jobs.records.FailingStreak`: its dead jobs, queued again by
            the sweep or a webhook, count), in seconds; 0 when not known.
        runs: the runs of that streak, this one included (0: not known, ``number`` is shown).

    The default, 1 of 1 with no waiting time, is a last attempt that gives up.
    """

    number: int = 1
    maximum: int = 1
    give_up_seconds: float = 0.0
    failing_seconds: float = 0.0
    runs: int = 0

    @property
    def last(self) -> bool:
        """No run of this job follows this one if it fails."""
        return self.number >= self.maximum

    @property
    def gives_up(self) -> bool:
        """A download that failed Transient is left out (a listed placeholder or omission)
        instead of failing the run: on the job's :attr:`last` attempt, once the ticket has been
        failing for :attr:`give_up_seconds` (at once when that is 0)."""
        return self.last and self.failing_seconds >= self.give_up_seconds

    def omission(self, cause: str) -> str:
        """The reason a download that failed Transient is listed with when it is given up on
        (:attr:`gives_up`): how long and over how many runs it failed, and the waiting time
        (``cause`` is redacted by the caller: no secrets)."""
        if self.give_up_seconds > 0:
            return (
                f"download failed for {_duration(self.failing_seconds)} over {max(self.runs, self.number)} "
                f"attempts, given up after {_duration(self.give_up_seconds)} "
                f"(WORKFLOW_DOWNLOAD_GIVE_UP_HOURS): {cause}"
            )
        return self.failure(cause)

    def failure(self, cause: str) -> str:
        """The reason a failed download is listed with when it is not waited for: refused for
        good (4xx), or given up on with no waiting time (``WORKFLOW_DOWNLOAD_GIVE_UP_HOURS=0``)."""
        if self.number > 1:
            return f"download failed after {self.number} attempts: {cause}"
        return f"download failed: {cause}"


def _duration(seconds: float) -> str:
    """``seconds`` for a note: whole hours (``"26 h"``) from one hour on, else minutes."""
    if seconds >= 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 60:.0f} min"


ONLY_ATTEMPT = Attempt()
"""A run of a job that runs once (tools, tests): its Transient download failures are omissions."""


def _failed(exc: Exception, name: str, attempt: Attempt, redact: Callable[[str], str]) -> str:
    """The omission reason for ``exc``, the failed download of ``name``.

    Raises:
        DownloadFailed: ``exc`` may heal (Transient) and ``attempt`` does not give up
            (:attr:`Attempt.gives_up`).
    """
    cause = redact(str(exc))
    if not classify(exc).transient:
        return attempt.failure(cause)
    if not attempt.gives_up:
        raise DownloadFailed(f"download of {name} failed: {cause}") from exc
    return attempt.omission(cause)


def _check_size(data: bytes, att: dict[str, Any]) -> None:
    """Raise :class:`DownloadFailed` when ``data`` is not as long as
    the size Zammad declares for ``att``; nothing when it declares none."""
    declared = declared_size(att)
    if declared is not None and len(data) != declared:
        raise DownloadFailed(f"got {len(data)} bytes, Zammad declares {declared}")


@dataclass(frozen=True, slots=True)
class EmbedPolicy:
    """Which originals go into the PDF (``PDF_EMBED_*``).

    Attributes:
        max_bytes: largest attachment embedded (``PDF_EMBED_MAX_BYTES``).
        total_max_bytes: most attachment bytes per ticket (``PDF_EMBED_TOTAL_MAX_BYTES``).
    """

    max_bytes: int = 10 * 1024 * 1024
    total_max_bytes: int = 50 * 1024 * 1024


def safe_name(filename: str) -> str:
    """A file name usable inside the PDF and when extracted: no path parts or control
    characters, at most 120 characters, ``"file"`` when nothing is left."""
    cleaned = "".join("_" if ch in '/\\:*?"<>|' or ord(ch) < 32 else ch for ch in filename).strip(" .")
    return cleaned[:120] or "file"


async def fetch_all(
    calls: list[Callable[[], Awaitable[T]]], concurrency: int, *, limit: asyncio.Semaphore | None = None
) -> list[T | Exception]:
    """Run ``calls`` at most ``concurrency`` at a time, started in order; their results in
    order, an exception in place of a failed call's result.

    A few worker tasks take the calls one after the other, so a ticket with thousands of
    e-mail articles does not hold thousands of pending tasks (and their frames) at once.
    With ``limit``, each call also holds one of its permits while it runs (a bound shared
    with the run's other downloads).
    """
    results: list[T | Exception] = [ValueError("not run")] * len(calls)
    position = 0

    async def worker() -> None:
        nonlocal position
        while position < len(calls):
            index = position
            position += 1
            try:
                if limit is None:
                    results[index] = await calls[index]()
                else:
                    async with limit:
                        results[index] = await calls[index]()
            except Exception as exc:  # noqa: BLE001 - becomes an omission with its cause
                results[index] = exc

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(calls)))))
    return results


async def collect_originals(
    zammad: ZammadPort,
    ticket_id: int,
    *,
    ticket_raw: bytes,
    articles_raw: bytes,
    articles: Sequence[dict[str, Any]],
    images: Mapping[int, bytes] | Awaitable[Mapping[int, bytes]],
    policy: EmbedPolicy,
    redact: Callable[[str], str] = lambda s: s,
    spool: Path | None = None,
    limit: asyncio.Semaphore | None = None,
    attempt: Attempt = ONLY_ATTEMPT,
) -> tuple[tuple[EmbeddedFile, ...], tuple[OmittedFile, ...]]:
    """The originals for the PDF/A-3 associated files, and those left out.

    ``ticket.json`` and ``articles.json`` (the API responses byte for byte) and each
    article's body are ``Source``; each e-mail article's raw message
    (``GET /api/v1/ticket_article_plain/{id}``) is ``Source``; attachments are ``Data``,
    within the :class:`EmbedPolicy` caps (in article order; a file that does not fit is
    listed as omitted with the reason). A download that fails with a 4xx answer is omitted;
    one that may heal (see the module) raises unless ``attempt`` gives up on it
    (:attr:`Attempt.gives_up`).

    Zammad's ``message.html`` copy of a mail's HTML part (:func:`app.zammad.attachments.is_html_part_copy`)
    is embedded only when that article's raw e-mail is not: the raw e-mail holds the part
    as received, so the copy would be the same evidence twice (one more download, and its
    bytes in every PDF). It is not listed as omitted either: nothing is missing.

    Args:
        ticket_raw, articles_raw: the API answers exactly as Zammad sent them (all articles,
            whatever ``articles`` holds).
        articles: the parsed articles whose originals are wanted, oldest first: all of them,
            or over ``PDF_MAX_ARTICLES`` those the PDF holds.
        images: attachment bytes downloaded for the layout (by attachment id): reused
            instead of a second download when as long as the attachment's declared size.
            It may be an awaitable (the layout's download still under way): it is awaited
            once the raw e-mails are in, before the attachments are downloaded; an
            exception it raises is raised here.
        redact: applied to a failed download's error text before it names the omission.
        spool: an existing, empty folder: every body, raw e-mail and attachment is written
            there as a file when it is fetched (:attr:`EmbeddedFile.path`, ``data`` empty),
            so this process never holds them all; the caller removes the folder. ``None``
            keeps the bytes in the values.
        limit: a bound on downloads in flight shared with the caller's other downloads
            (each download holds a permit); with or without it, at most
            :data:`~app.workflow.ports.FETCH_CONCURRENCY` run at once here.
        attempt: the job's run; a Transient download failure omits only when it gives up.

    Raises:
        DownloadFailed: a download failed in a way that may heal, and ``attempt`` does not
            give up (Transient).
        OSError: a file cannot be written into ``spool``.
    """
    keep = _Keeper(spool)
    files: list[EmbeddedFile] = [
        EmbeddedFile(
            "ticket.json",
            ticket_raw,
            "application/json",
            "Source",
            f"GET /api/v1/tickets/{ticket_id}?expand=true as answered by Zammad",
        ),
        EmbeddedFile(
            "articles.json",
            articles_raw,
            "application/json",
            "Source",
            f"GET /api/v1/ticket_articles/by_ticket/{ticket_id} as answered by Zammad",
        ),
    ]
    files.extend(_bodies(articles, keep))
    omitted: list[OmittedFile] = []

    # Ids and attachment entries only: ``articles`` may parse each article when read.
    emails = [a["id"] for a in articles if a.get("type") == "email" and isinstance(a.get("id"), int)]
    mailed: set[int] = set()  # articles whose raw e-mail is embedded
    plain = await fetch_all(
        [partial(keep.fetch, partial(zammad.get_article_plain, aid)) for aid in emails],
        FETCH_CONCURRENCY,
        limit=limit,
    )
    for article_id, result in zip(emails, plain, strict=True):
        name = f"article-{article_id}.eml"
        if isinstance(result, Exception):
            omitted.append(
                OmittedFile(name, None, _failed(result, name, attempt, redact), article_id=article_id)
            )
        elif not result:
            omitted.append(
                OmittedFile(name, 0, "Zammad holds no raw e-mail for this article", article_id=article_id)
            )
        else:
            mailed.add(article_id)
            files.append(
                keep.original(
                    result,
                    name,
                    "message/rfc822",
                    "Source",
                    f"Raw e-mail of article {article_id}",
                    article_id=article_id,
                )
            )

    wanted, too_big = _attachments_within(articles, policy, mailed)
    omitted.extend(too_big)
    if not isinstance(images, Mapping):
        images = await images
    reused: Mapping[int, bytes] = images

    async def download(article_id: Any, att: dict[str, Any]) -> bytes:
        declared = declared_size(att)
        if att["id"] in reused and declared in (None, len(reused[att["id"]])):
            return reused[att["id"]]
        data = await zammad.get_attachment(ticket_id, article_id, att["id"])
        _check_size(data, att)
        return data

    data = await fetch_all(
        [partial(keep.fetch, partial(download, a, t)) for a, t, _ in wanted], FETCH_CONCURRENCY, limit=limit
    )
    for (article_id, att, name), result in zip(wanted, data, strict=True):
        if isinstance(result, Exception):
            reason = _failed(result, name, attempt, redact)
            declared = declared_size(att)
            omitted.append(
                OmittedFile(name, declared, reason, article_id, att["id"], size_declared=declared is not None)
            )
            continue
        if len(result) > policy.max_bytes:  # the declared size was wrong
            omitted.append(
                OmittedFile(
                    name,
                    len(result),
                    f"larger than PDF_EMBED_MAX_BYTES ({policy.max_bytes})",
                    article_id,
                    att["id"],
                )
            )
            continue
        prefs = att.get("preferences") or {}
        mime = str(prefs.get("Mime-Type") or prefs.get("Content-Type") or "application/octet-stream")
        files.append(
            keep.original(
                result,
                name,
                mime.split(";")[0].strip() or "application/octet-stream",
                "Data",
                f"Attachment {att.get('filename')!s} of article {article_id}",
                article_id=article_id,
                attachment_id=att["id"],
            )
        )
    return tuple(files), tuple(omitted)


@dataclass(frozen=True, slots=True)
class _Stashed:
    """Fetched bytes written to a spool file: where, and how many (``len()``)."""

    path: str
    size: int

    def __len__(self) -> int:
        return self.size


class _Keeper:
    """Keeps fetched originals as they are, or, with a spool folder, writes each to a new file
    there (numbered in the order fetched) as soon as it arrives."""

    def __init__(self, spool: Path | None) -> None:
        self._spool = spool
        self._count = 0

    def stash(self, data: bytes) -> bytes | _Stashed:
        """``data`` itself without a spool; else written to a new file there."""
        if self._spool is None:
            return data
        self._count += 1
        path = os.path.join(self._spool, f"{self._count:06d}")
        with open(path, "xb") as out:
            out.write(data)
        return _Stashed(path, len(data))

    async def fetch(self, call: Callable[[], Awaitable[bytes]]) -> bytes | _Stashed:
        """Await ``call`` and :meth:`stash` what it returns."""
        return self.stash(await call())

    def original(
        self,
        kept: bytes | _Stashed,
        name: str,
        mime_type: str,
        relationship: str,
        description: str,
        *,
        article_id: int | None = None,
        attachment_id: int | None = None,
    ) -> EmbeddedFile:
        """The :class:`EmbeddedFile` of ``kept`` (bytes, or a file: ``path`` set, ``data`` empty)."""
        if isinstance(kept, _Stashed):
            return EmbeddedFile(
                name, b"", mime_type, relationship, description, article_id, attachment_id, path=kept.path
            )
        return EmbeddedFile(name, kept, mime_type, relationship, description, article_id, attachment_id)


def _bodies(articles: Iterable[dict[str, Any]], keep: _Keeper) -> list[EmbeddedFile]:
    """Each article's stored body (``text/html`` or ``text/plain``) as a ``Source`` file."""
    files: list[EmbeddedFile] = []
    for article in articles:
        aid = article.get("id")
        body = article.get("body")
        if isinstance(aid, int) and isinstance(body, str) and body:
            html = article.get("content_type") == "text/html"
            files.append(
                keep.original(
                    keep.stash(body.encode("utf-8")),
                    f"article-{aid}-body.{'html' if html else 'txt'}",
                    "text/html" if html else "text/plain",
                    "Source",
                    f"Body of article {aid} as stored by Zammad",
                    article_id=aid,
                )
            )
    return files


def _attachments_within(
    articles: Iterable[dict[str, Any]], policy: EmbedPolicy, mailed: set[int]
) -> tuple[list[tuple[Any, dict[str, Any], str]], list[OmittedFile]]:
    """The attachments to download, ``(article id, attachment, name)`` in article order (each
    attachment id once), and those whose declared size breaks a cap of ``policy``; Zammad's
    copies of an HTML part are left out for the articles in ``mailed`` (raw e-mail embedded)."""
    wanted: list[tuple[Any, dict[str, Any], str]] = []
    omitted: list[OmittedFile] = []
    seen: set[int] = set()
    total = 0
    for article in articles:
        copies_in_mail = article.get("id") in mailed
        for att in article.get("attachments") or []:
            att_id = att.get("id")
            if not isinstance(att_id, int) or att_id in seen or copies_in_mail and is_html_part_copy(att):
                continue
            seen.add(att_id)
            filename = str(att.get("filename") or f"attachment-{att_id}")
            name = f"article-{article.get('id')}-{att_id}-{safe_name(filename)}"
            size = declared_size(att)
            if size is not None and size > policy.max_bytes:
                reason = f"larger than PDF_EMBED_MAX_BYTES ({policy.max_bytes})"
                omitted.append(OmittedFile(name, size, reason, article.get("id"), att_id, size_declared=True))
            elif size is not None and total + size > policy.total_max_bytes:
                reason = f"over PDF_EMBED_TOTAL_MAX_BYTES ({policy.total_max_bytes}) for the ticket"
                omitted.append(OmittedFile(name, size, reason, article.get("id"), att_id, size_declared=True))
            else:
                total += size or 0
                wanted.append((article.get("id"), att, name))
    return wanted, omitted
