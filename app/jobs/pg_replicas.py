"""Whether the other replicas on the job store's database run with the settings this one has.

Each replica names its PostgreSQL connections ``zammad-pdf-archiver/<fingerprint>``
(:func:`app.config_fingerprint.application_name`: the fingerprint of the settings every
replica must share). :class:`SettingsCheck` reads the names of the database's connections
from ``pg_stat_activity`` and warns when one differs from this replica's. PostgreSQL shows
every session's ``application_name`` and database to every role (its client address and start
only to the same role or ``pg_read_all_stats``), so an ordinary role sees the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from app.config_fingerprint import APPLICATION_PREFIX, GROUPS, differing_groups
from app.jobs.pg_database import PgDatabase, describe_error

log = logging.getLogger("app.jobs.store")

REPLICA_CONNECTIONS = (
    "SELECT application_name, client_addr, backend_start FROM pg_stat_activity "
    "WHERE datname = current_database() AND application_name LIKE $1"
)
"""The connections of every replica with a fingerprint to this database (``$1``: the prefix
and ``%``)."""
HIDDEN_ADDRESS = "local or hidden"
"""How a connection without ``client_addr`` is named: a Unix socket, or a session of another
role that this role may not see the address of."""


@dataclass(frozen=True)
class Difference:
    """What :meth:`SettingsCheck.check` found differing from this replica's settings.

    Attributes:
        connections: how many connections have another fingerprint.
        agreeing: how many have this replica's (its own among them).
        addresses: their client addresses, distinct and sorted (:data:`HIDDEN_ADDRESS` for
            those without one).
        fingerprints: the other fingerprints, distinct and sorted.
        groups: the names of the groups of :data:`app.config_fingerprint.GROUPS` that differ
            in at least one of them (all groups when one is of another format version).
        other_format: whether a fingerprint is of another format version (another version of
            the service).
        since: the earliest start of those connections, ``None`` when none is visible.
    """

    connections: int
    agreeing: int
    addresses: tuple[str, ...]
    fingerprints: tuple[str, ...]
    groups: tuple[str, ...]
    other_format: bool
    since: datetime | None


class SettingsCheck:
    """Compares this replica's fingerprint with the other replicas' (see the module docstring).

    Args:
        db: the store's database.
        fingerprint: this replica's (:func:`app.config_fingerprint.settings_fingerprint`).
    """

    def __init__(self, db: PgDatabase, fingerprint: str) -> None:
        self._db = db
        self.fingerprint = fingerprint
        self.seen: frozenset[str] = frozenset()
        """The other fingerprints found at the last check (empty: all agree)."""
        self._refused = False

    async def check(self) -> Difference | None:
        """Read the replicas' connections and warn when any has another fingerprint (once per
        set of other fingerprints; an info line when all agree again).

        Returns:
            What differs, or ``None`` when every replica's connections carry this
            replica's fingerprint, or when the server refuses the query (logged once: a
            restricted ``pg_stat_activity``; the store works on without the comparison).

        Raises:
            JobStoreUnavailable: the database cannot be reached.
        """
        try:
            rows = await self._db.call(lambda conn: conn.fetch(REPLICA_CONNECTIONS, APPLICATION_PREFIX + "%"))
        except asyncpg.PostgresError as exc:
            if not self._refused:
                log.warning(
                    "cannot compare this replica's settings with the other replicas': %s",
                    describe_error(exc),
                )
            self._refused = True
            return None
        ours = APPLICATION_PREFIX + self.fingerprint
        others = [row for row in rows if row["application_name"] != ours]
        if not others:
            if self.seen:
                log.info(
                    "every replica on the job store's database runs with this replica's settings again",
                    extra={"settings_fingerprint": self.fingerprint},
                )
            self.seen = frozenset()
            return None
        fingerprints = sorted({row["application_name"].removeprefix(APPLICATION_PREFIX) for row in others})
        groups: set[str] = set()
        other_format = False
        for theirs in fingerprints:
            found = differing_groups(self.fingerprint, theirs)
            other_format |= found is None
            groups.update(GROUPS if found is None else found)
        starts = [row["backend_start"] for row in others if row["backend_start"] is not None]
        difference = Difference(
            connections=len(others),
            agreeing=len(rows) - len(others),
            addresses=tuple(
                sorted({str(row["client_addr"]) if row["client_addr"] else HIDDEN_ADDRESS for row in others})
            ),
            fingerprints=tuple(fingerprints),
            groups=tuple(name for name in GROUPS if name in groups),
            other_format=other_format,
            since=min(starts) if starts else None,
        )
        if frozenset(fingerprints) != self.seen:
            _warn(difference, self.fingerprint)
        self.seen = frozenset(fingerprints)
        return difference


def _warn(d: Difference, fingerprint: str) -> None:
    settings = "; ".join(f"{name}: {', '.join(GROUPS[name][0])}" for name in d.groups)
    log.warning(
        "%d connection(s) from %s to the job store's database run with settings that differ from "
        "this replica's (%d connection(s) agree)%s; every replica must have the same values of "
        "these settings, %s: compare the replicas' configuration and restart those that differ "
        "(until then a job runs differently depending on the replica that takes it)",
        d.connections,
        ", ".join(d.addresses),
        d.agreeing,
        " or with another version of the service" if d.other_format else "",
        settings,
        extra={
            "connections": d.connections,
            "agreeing": d.agreeing,
            "addresses": list(d.addresses),
            "groups": list(d.groups),
            "settings_fingerprint": fingerprint,
            "other_fingerprints": list(d.fingerprints),
            "since": d.since.isoformat() if d.since else None,
        },
    )
