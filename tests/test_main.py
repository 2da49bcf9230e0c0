"""The app factory (app/main.py) and ``serve``'s collector tuning (app/__main__.py).

An application factory that other ASGI servers import must leave the process's garbage
collector alone; ``python -m app serve`` tunes it once everything is built. The start logs
which requests the settings make the service refuse.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.__main__ import GC_GEN0_THRESHOLD, tune_gc
from app.config import Secret, load_settings
from app.main import create_app, log_request_auth
from app.runtime import Runtime


@pytest.fixture
def collector() -> Iterator[None]:
    """Put the collector back as it was (thresholds, frozen objects) after the test."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def settings(tmp_path: Path):
    (tmp_path / "archive").mkdir()
    return load_settings(
        {
            "ZAMMAD_BASE_URL": "http://127.0.0.1:9",  # never called: no job runs
            "ZAMMAD_API_TOKEN": "unit-token",
            "ALLOW_INSECURE_HTTP": "true",
            "STORAGE_ROOT": str(tmp_path / "archive"),
            "STATE_DIR": str(tmp_path / "state"),
            "SIGNING_ENABLED": "false",
            "RENDER_PROCESSES": "1",
            "SHUTDOWN_GRACE_SECONDS": "0",
        }
    )


async def test_the_factory_leaves_the_collector_alone_and_calls_on_started_once_up(
    tmp_path: Path, collector: None, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[bool, bool]] = []
    app = create_app(settings(tmp_path), on_started=lambda: seen.append((runtime.pool is not None, True)))
    runtime = app.state.runtime
    assert isinstance(runtime, Runtime) and runtime.pool is None
    before = gc.get_threshold(), gc.get_freeze_count()
    async with app.router.lifespan_context(app):
        assert seen == [(True, True)]  # once, with the workers started
        # No WEBHOOK_HMAC_SECRET in these settings: the start says every webhook is refused.
        assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING].count(
            "webhooks are refused until WEBHOOK_HMAC_SECRET is set"
        ) == 1
        assert (gc.get_threshold(), gc.get_freeze_count()) == before
    assert (gc.get_threshold(), gc.get_freeze_count()) == before


def test_tune_gc_freezes_what_exists_and_raises_the_young_threshold(collector: None) -> None:
    gc.set_threshold(700, 10, 10)
    tune_gc()
    assert gc.get_threshold() == (GC_GEN0_THRESHOLD, 10, 10)
    assert gc.get_freeze_count() > 0


def test_tune_gc_keeps_a_higher_threshold_set_before(collector: None) -> None:
    gc.set_threshold(GC_GEN0_THRESHOLD * 2, 20, 30)
    tune_gc()
    assert gc.get_threshold() == (GC_GEN0_THRESHOLD * 2, 20, 30)


@pytest.mark.parametrize(
    ("hmac_secret", "allow_unsigned", "admin_token", "expected"),
    [
        (None, False, "admin-token", [(logging.WARNING, "webhooks are refused until WEBHOOK_HMAC_SECRET")]),
        (None, True, "admin-token", [(logging.WARNING, "unsigned webhooks are accepted")]),
        ("hmac-secret", False, "admin-token", []),
        ("hmac-secret", False, None, [(logging.INFO, "no ADMIN_BEARER_TOKEN: /retry and /jobs take HMAC")]),
        (
            None,
            False,
            None,
            [
                (logging.WARNING, "webhooks are refused until WEBHOOK_HMAC_SECRET"),
                (logging.WARNING, "/retry and /jobs are refused until ADMIN_BEARER_TOKEN or WEBHOOK_HMAC"),
            ],
        ),
    ],
)
def test_the_start_logs_which_requests_are_refused(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    hmac_secret: str | None,
    allow_unsigned: bool,
    admin_token: str | None,
    expected: list[tuple[int, str]],
) -> None:
    s = dataclasses.replace(
        settings(tmp_path),
        webhook_hmac_secret=Secret(hmac_secret) if hmac_secret else None,
        hardening_webhook_allow_unsigned=allow_unsigned,
        admin_bearer_token=Secret(admin_token) if admin_token else None,
    )
    caplog.set_level(logging.INFO, logger="app")
    log_request_auth(s)
    logged = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "app"]
    assert len(logged) == len(expected), logged
    for (level, message), (want_level, start) in zip(logged, expected, strict=True):
        assert level == want_level and message.startswith(start), logged
    assert all("hmac-secret" not in m and "admin-token" not in m for _, m in logged)


async def test_a_failing_start_is_logged_with_its_cause(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hypercorn and Starlette log nothing of an exception the lifespan raises while starting:
    the lifespan logs it (traceback included) and keeps a redacted line for ``serve``."""

    def broken_store(settings: object, **_: object) -> None:
        raise RuntimeError("cannot open the store\nwith unit-token")

    monkeypatch.setattr("app.main.create_job_store", broken_store)
    app = create_app(settings(tmp_path))
    with pytest.raises(RuntimeError):
        async with app.router.lifespan_context(app):
            pass
    failed = [r for r in caplog.records if r.getMessage() == "start failed"]
    assert len(failed) == 1 and failed[0].levelno == logging.ERROR and failed[0].exc_info is not None
    assert app.state.runtime.startup_error == "RuntimeError: cannot open the store with ***"


@pytest.mark.parametrize(
    ("interval", "sweep"), [("300", "the sweep runs every 300 s"), ("0", "the sweep is off")]
)
async def test_a_new_empty_job_store_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, interval: str, sweep: str
) -> None:
    """No ``jobs.sqlite3`` in STATE_DIR at start (a first start, or STATE_DIR deleted while
    stopped: the 202-accepted jobs are gone): the start warns, naming the reconcile sweep;
    the next start, with the file there, does not."""
    config = dataclasses.replace(settings(tmp_path), reconcile_interval_seconds=float(interval))

    def new_store_warnings() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.levelno == logging.WARNING and "new empty job store" in r.getMessage()
        ]

    app = create_app(config)
    async with app.router.lifespan_context(app):
        pass
    [warning] = new_store_warnings()
    assert str(tmp_path / "state") in warning and "jobs.sqlite3" in warning and sweep in warning
    assert "jobs accepted before were lost unless the reconcile sweep finds their tickets" in warning

    caplog.clear()
    app = create_app(config)
    async with app.router.lifespan_context(app):
        pass
    assert new_store_warnings() == []
