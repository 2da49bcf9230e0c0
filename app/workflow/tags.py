"""What tags come next: the archiver's tag vocabulary and its transitions.

The runbook's tag protocol (Zammad tags, see ``docs/reference/zammad.md`` §5):

- start of processing: remove ``pdf:signed``, ``pdf:error`` and the trigger tag, add ``pdf:processing``;
- success: ``pdf:signed`` is the only archiver tag left;
- failure: ``pdf:error``; the trigger tag is put back when the failure is Transient (so the next
  trigger run or an operator retry picks the ticket up) and stays removed when Permanent.

Tags are applied in the listed order: additions before removals, so a ticket is never
without a state tag between two calls.
"""

from __future__ import annotations

from dataclasses import dataclass

TAG_PROCESSING = "pdf:processing"
TAG_SIGNED = "pdf:signed"
TAG_ERROR = "pdf:error"
STATE_TAGS = (TAG_PROCESSING, TAG_SIGNED, TAG_ERROR)


@dataclass(frozen=True, slots=True)
class TagTransition:
    """Tags to add, then tags to remove, on one ticket.

    Attributes:
        add: tags added first, in order.
        remove: tags removed afterwards, in order.
    """

    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()

    def apply(self, tags: list[str] | tuple[str, ...]) -> list[str]:
        """Return ``tags`` as they are after this transition (Zammad's idempotent add/remove)."""
        out = [t for t in tags if t not in self.remove]
        for tag in self.add:
            if tag not in out and tag not in self.remove:
                out.append(tag)
        return out

    def needed(self, tags: list[str] | tuple[str, ...]) -> TagTransition:
        """This transition without the calls that change nothing on a ticket whose tags are
        ``tags`` (just read): no add of a tag it has, no removal of one it lacks.

        Zammad's add and remove are idempotent, so the result is the same; a run start
        saves the round trips (typically two of four)."""
        return TagTransition(
            add=tuple(t for t in self.add if t not in tags), remove=tuple(t for t in self.remove if t in tags)
        )


def start_transition(trigger_tag: str) -> TagTransition:
    """Tags when a run starts: ``+pdf:processing``, ``-pdf:signed -pdf:error -<trigger>``."""
    return TagTransition(add=(TAG_PROCESSING,), remove=(TAG_SIGNED, TAG_ERROR, trigger_tag))


def success_transition(trigger_tag: str) -> TagTransition:
    """Tags after a successful archive: ``+pdf:signed``, ``-pdf:processing -pdf:error -<trigger>``."""
    return TagTransition(add=(TAG_SIGNED,), remove=(TAG_PROCESSING, TAG_ERROR, trigger_tag))


def failure_transition(trigger_tag: str, *, transient: bool) -> TagTransition:
    """Tags after a failed run.

    Transient: ``+pdf:error +<trigger>``, ``-pdf:processing -pdf:signed``.
    Permanent: ``+pdf:error``, ``-pdf:processing -pdf:signed -<trigger>``.
    """
    if transient:
        return TagTransition(add=(TAG_ERROR, trigger_tag), remove=(TAG_PROCESSING, TAG_SIGNED))
    return TagTransition(add=(TAG_ERROR,), remove=(TAG_PROCESSING, TAG_SIGNED, trigger_tag))


def revert_transition(trigger_tag: str) -> TagTransition:
    """Tags when a run is interrupted (shutdown) before it ended: the trigger tag comes back
    and ``pdf:processing`` goes, so the ticket is picked up again and never left processing."""
    return TagTransition(add=(trigger_tag,), remove=(TAG_PROCESSING,))
