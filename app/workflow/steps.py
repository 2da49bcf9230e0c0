"""The names of an archive run's steps: one name each, in logs, notes, the job store and metrics."""

from __future__ import annotations

import enum


class Step(enum.StrEnum):
    """A step of one archive run, in the order the run takes them.

    The value is the step's one name: the ``step`` field of the workflow's log lines, the
    ``Step`` row of a failure note, a job's ``last_step`` (``GET /jobs/{ticket_id}``) and the
    keys of :attr:`app.workflow.archive.ArchiveOutcome.step_seconds`. The ``step`` label of
    ``zammad_pdf_archiver_step_duration_seconds`` is one of :data:`METRIC_STEPS`: the fetch
    steps are summed as :attr:`FETCH`.
    """

    FETCH_TAGS = "fetch tags"
    START = "tag processing"
    """The start transition (``+pdf:processing``); not timed."""
    FETCH_TICKET = "fetch ticket"
    FETCH_ARTICLES = "fetch articles"
    FETCH_LINKS = "fetch links"
    """A merged ticket's links, for the ticket it was merged into (:mod:`app.workflow.merged`);
    no other ticket's run takes this step."""
    FETCH_IMAGES = "fetch images"
    FETCH_ORIGINALS = "fetch originals"
    RENDER = "render"
    SIGN = "sign"
    STORE = "store"
    FETCH = "fetch"
    """Never a run's step itself: the fetch steps together, the metric label of their summed time."""


FETCH_STEPS = frozenset(
    {
        Step.FETCH_TAGS,
        Step.FETCH_TICKET,
        Step.FETCH_ARTICLES,
        Step.FETCH_LINKS,
        Step.FETCH_IMAGES,
        Step.FETCH_ORIGINALS,
    }
)
"""The steps that read from Zammad; their time is summed as :attr:`Step.FETCH` in the metric."""

METRIC_STEPS = (Step.FETCH, Step.RENDER, Step.SIGN, Step.STORE)
"""Every value of the ``step`` label of ``zammad_pdf_archiver_step_duration_seconds``."""
