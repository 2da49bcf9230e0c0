"""A stateful Zammad REST API simulator (aiohttp.web) for tests, the demo and the benchmarks.

It answers the endpoints the archiver uses the way Zammad 6.x does (``docs/reference/zammad.md`` §3,
Zammad's ``config/routes/{ticket,tag}.rb`` and ``app/controllers/{tickets,ticket_articles,
tags}_controller.rb``): same paths, status codes, JSON shapes and error bodies
``{"error": …, "error_human": …}``; ``X-Failure`` on 401/403; masked 5xx bodies.

Python API (tests)::

    sim = ZammadSimulator(api_token="test-token")
    ticket_id = sim.seed_fixture_ticket(Path("tests/fixtures/zammad"))   # 4711
    base_url = await sim.start()                                         # http://127.0.0.1:<port>
    ...
    sim.tags(4711); sim.notes(4711); sim.requests
    sim.fail("POST", r"^/api/v1/ticket_articles$", 500, times=1)
    sim.fail("*", r"^/api/v1/", 503, every=2)              # every 2nd API call fails
    sim.fail("POST", r"^/api/v1/tags/add$", 503, match_body=r"pdf:error", times=4)
    sim.delay("GET", r"^/api/v1/tickets/", 5.0)
    sim.delay("POST", r"^/api/v1/ticket_articles$", 5.0, after=True)  # handled, answer held
    sim.clone_ticket(4711, 5001)                           # a copy with new ids and number
    sim.api_token = "rotated"                              # the client's token: 401 from now on
    sim.api_token_access = False                           # 403 API token access disabled!
    await sim.stop()

CLI (demo, scripts)::

    python -m devtools.zammad_simulator --host 127.0.0.1 --port 0 --token T \\
        --seed tests/fixtures/zammad

prints exactly one line ``LISTENING http://127.0.0.1:<port>`` on stdout once it accepts
connections and serves until SIGTERM/SIGINT. ``GET /_sim/state/{ticket_id}`` (no auth, not
recorded) returns ``{"tags": [...], "notes": [...]}``.

The modules, by concern: :mod:`.server` (the application, its request pipeline and the
route registry), :mod:`.state` (tickets, articles, tags, seeding), :mod:`.tickets`,
:mod:`.attachments`, :mod:`.tags`, :mod:`.search` and :mod:`.links` (the routes), :mod:`.mail` (raw e-mails),
:mod:`.files` (stand-in attachment contents), :mod:`.faults` (fault injection),
:mod:`.responses` (Zammad's answer shapes), :mod:`.cli`.

Merged tickets: ``sim.merge_ticket(4711, 4712)`` does what Zammad's ``Ticket#merge_to`` does
(articles moved, a ``merged`` article, state ``merged``, a ``parent`` link from the target),
and ``GET /api/v1/links`` lists the links (:mod:`.links`); ``sim.add_link("normal", a, b)``.

Not simulated: users, groups and permissions (one token, full access), ``PUT /tickets`` and
``PUT /ticket_merge``, ticket history, pagination (except the ticket search's), gzip, ``ETag``.
"""

from devtools.zammad_simulator.files import tiny_pdf, tiny_png
from devtools.zammad_simulator.responses import MASKED_ERROR
from devtools.zammad_simulator.server import ROUTE_MODULES, RecordedRequest, ZammadSimulator

__all__ = ["MASKED_ERROR", "ROUTE_MODULES", "RecordedRequest", "ZammadSimulator", "tiny_pdf", "tiny_png"]
