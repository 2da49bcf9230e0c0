"""Where a merged ticket's content went: the ticket Zammad merged it into.

Zammad's ``Ticket#merge_to`` moves every article of the merged ticket A to the target B, adds
one article ``merged`` to A, sets A's state to ``merged`` and links the two: a link of type
``parent`` from B to A, which ``GET /api/v1/links`` shows for A as ``{"link_type": "parent",
"link_object": "Ticket", "link_object_value": B}`` (``docs/reference/zammad.md`` §3.8). An
archive of A without B's number would point nowhere; this module finds B.

The links are asked for only when the ticket is merged (:func:`is_merged`): every other
ticket's run makes no extra request. A failure of that request is classified as every other
(:func:`app.workflow.classify.classify`): a Transient one (5xx, timeout, the token refused)
fails the run, to be retried; a Permanent one (403, 404, an answer of another shape) does not
stop the archive, whose target is then recorded as unknown with the cause.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from app.errors import ZammadApiError
from app.workflow.classify import classify
from app.workflow.ports import MergedInto, ZammadPort

MERGED_STATE = "merged"
"""The name of Zammad's seeded state of state type ``merged`` (``db/seeds/ticket_states.rb``,
id 5), as ``GET /tickets/{id}?expand=true`` gives it in ``state``."""

PARENT_LINK = "parent"
"""The ``link_type`` of the merge link as the merged ticket's links list it."""


def is_merged(ticket: Mapping[str, Any]) -> bool:
    """Whether ``ticket`` (``GET /tickets/{id}?expand=true``) is in the state ``merged``."""
    return ticket.get("state") == MERGED_STATE


def merge_target(answer: Mapping[str, Any]) -> MergedInto:
    """The ticket a merged ticket went into, read from its links (:meth:`ZammadPort.get_links`).

    Args:
        answer: ``{"links": [...], "assets": {...}}`` as Zammad answers it.

    Returns:
        The one ``Ticket`` link of type ``parent``, with its number from ``assets.Ticket``
        (``None`` when ``assets`` lacks it); unknown (``ticket_id=None``) with the reason when
        there is no such link (none left, or the target is in a group the token's user may not
        read: Zammad leaves it out) or more than one (a person linked another parent ticket
        later; the candidates' ids are named in the reason).
    """
    links = answer.get("links")
    parents: list[int] = []
    for link in links if isinstance(links, list) else []:
        if not isinstance(link, dict):
            continue
        value = link.get("link_object_value")
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if (
            link.get("link_type") == PARENT_LINK
            and link.get("link_object") == "Ticket"
            and isinstance(value, int)
            and not isinstance(value, bool)
            and value not in parents
        ):
            parents.append(value)
    if not parents:
        return MergedInto(
            None, reason="no parent ticket link (removed, or a ticket the API user may not read)"
        )
    if len(parents) > 1:
        listed = ", ".join(str(p) for p in parents)
        return MergedInto(None, reason=f"{len(parents)} parent ticket links (ticket ids {listed})")
    target = parents[0]
    assets = answer.get("assets")
    tickets = assets.get("Ticket") if isinstance(assets, dict) else None
    record = tickets.get(str(target)) if isinstance(tickets, dict) else None
    number = record.get("number") if isinstance(record, dict) else None
    return MergedInto(target, str(number) if isinstance(number, (str, int)) and str(number) else None)


async def find_merge_target(
    zammad: ZammadPort, ticket_id: int, *, redact: Callable[[str], str] = lambda s: s
) -> MergedInto:
    """Ask Zammad for the links of the merged ticket ``ticket_id`` and find its target
    (:func:`merge_target`).

    Args:
        redact: applied to a failure's cause before it becomes the reason.

    Returns:
        The target, or an unknown one whose reason is the Permanent failure's cause (e.g.
        ``"GET /api/v1/links answered 404: …"``).

    Raises:
        ZammadApiError: a Transient failure (:func:`app.workflow.classify.classify`): 5xx,
            429, no answer, the token refused, maintenance mode.
    """
    try:
        answer = await zammad.get_links(ticket_id)
    except ZammadApiError as exc:
        failure = classify(exc)
        if failure.transient:
            raise
        return MergedInto(None, reason=redact(failure.cause))
    return merge_target(answer)
