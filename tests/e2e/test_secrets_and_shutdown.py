"""Secrets never leave the process; SIGTERM never leaves a ticket in pdf:processing.

On both job-store backends (``[sqlite]``, ``[postgres]``); on PostgreSQL the database
password (in ``JOB_STORE_URL``) is one more secret that must not show.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import aiohttp

from devtools.webhook import zammad_webhook
from tests.conftest import API_TOKEN, HMAC_SECRET, PFX_PASSWORD, REPO, free_port

ADMIN_TOKEN = "e2e-admin-token-6604"
METRICS_TOKEN = "e2e-metrics-token-2291"
TSA_PASSWORD = "e2e-tsa-pass-3318"
SECRETS = (API_TOKEN, HMAC_SECRET, PFX_PASSWORD, ADMIN_TOKEN, METRICS_TOKEN, TSA_PASSWORD)


async def request(method: str, url: str, **kw) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.request(method, url, **kw) as resp:
        return resp.status, await resp.text()


async def test_no_secret_in_logs_notes_or_responses(archiver, simulator, job_store, capsys):
    service = await archiver(
        ADMIN_BEARER_TOKEN=ADMIN_TOKEN,
        METRICS_BEARER_TOKEN=METRICS_TOKEN,
        OBSERVABILITY_METRICS_ENABLED="true",
        TSA_URL=f"http://127.0.0.1:{free_port()}/tsa",
        TSA_USER="archiver",
        TSA_PASS=TSA_PASSWORD,
        LOG_LEVEL="DEBUG",
        WORKFLOW_MAX_ATTEMPTS="1",
    )
    answers: list[str] = []
    # 1. The TSA is down: signing fails (Transient) after the ticket was fetched and rendered.
    body, headers = zammad_webhook({"ticket_id": 4711}, HMAC_SECRET)
    answers.append((await request("POST", f"{service.url}/ingest", data=body, headers=headers))[1])
    await service.wait_idle()
    # 2. Zammad answers with an error that echoes every secret (a worst case), logged as the cause.
    echo = " ".join(SECRETS)
    simulator.fail("GET", r"^/api/v1/tickets/4711$", 500, body={"error": echo, "error_human": echo})
    answers.append(
        (
            await request(
                "POST", f"{service.url}/retry/4711", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            )
        )[1]
    )
    await service.wait_idle()
    # 3. Refused requests of every kind.
    answers.append(
        (
            await request(
                "POST",
                f"{service.url}/ingest",
                data=body,
                headers={**headers, "X-Hub-Signature": "sha1=" + "0" * 40},
            )
        )[1]
    )
    answers.append(
        (
            await request(
                "GET", f"{service.url}/jobs/4711", headers={"Authorization": f"Bearer {ADMIN_TOKEN}x"}
            )
        )[1]
    )
    answers.append(
        (await request("GET", f"{service.url}/metrics", headers={"Authorization": "Bearer no"}))[1]
    )
    answers.append(
        (
            await request(
                "GET", f"{service.url}/jobs/4711", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            )
        )[1]
    )
    answers.append((await request("GET", f"{service.url}/healthz?deep=true"))[1])

    logs = capsys.readouterr().err
    notes = [n["body"] for n in simulator.notes(4711)]
    assert len(notes) == 2
    assert "Transient" in notes[0] and "sign" in notes[0]
    assert "Transient" in notes[1] and "***" in notes[1]  # the echoed secrets were redacted, not dropped
    # the failure was logged, one line with its cause (Zammad's echo of every secret) redacted ...
    echoed = [
        line for line in logs.splitlines() if '"msg":"job step failed"' in line and "answered 500" in line
    ]
    assert echoed and all("***" in line for line in echoed), echoed
    for secret in (*SECRETS, *job_store.secrets):  # ... and nothing anywhere holds a secret
        assert secret not in logs, secret
        assert all(secret not in note for note in notes), secret
        assert all(secret not in answer for answer in answers), secret


async def _serve_subprocess(
    simulator,
    tmp_path,
    dev_pki,
    job_store,
    grace: float,
) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    storage = tmp_path / f"archive-{port}"
    storage.mkdir()
    env = {
        **os.environ,
        "ZAMMAD_BASE_URL": simulator.base_url,
        "ZAMMAD_API_TOKEN": API_TOKEN,
        "ALLOW_INSECURE_HTTP": "true",
        "WEBHOOK_HMAC_SECRET": HMAC_SECRET,
        "STORAGE_ROOT": str(storage),
        "STATE_DIR": str(job_store.state_dir),
        "SIGNING_PFX_PATH": str(dev_pki.signer_pfx),
        "SIGNING_PFX_PASSWORD": PFX_PASSWORD,
        "SERVER_PORT": str(port),
        "SHUTDOWN_GRACE_SECONDS": str(grace),
        "RENDER_PROCESSES": "1",
        **job_store.env(),
    }
    env.pop("CONFIG_PATH", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        "serve",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if (await request("GET", f"{url}/healthz"))[0] == 200:
                return proc, url
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.05)
    proc.kill()
    raise AssertionError("service did not start")


async def _sigterm_during_job(
    simulator, tmp_path, dev_pki, job_store, *, grace: float, delay: float
) -> list[str]:
    simulator.delay("GET", r"^/api/v1/ticket_articles/by_ticket/", delay)
    proc, url = await _serve_subprocess(simulator, tmp_path, dev_pki, job_store, grace)
    try:
        body, headers = zammad_webhook({"ticket_id": 4711}, HMAC_SECRET)
        assert (await request("POST", f"{url}/ingest", data=body, headers=headers))[0] == 202
        for _ in range(200):
            if "pdf:processing" in simulator.tags(4711):
                break
            await asyncio.sleep(0.02)
        assert "pdf:processing" in simulator.tags(4711)
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), grace + delay + 30)
        assert rc == 0, (await proc.stderr.read())[-3000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        simulator.clear_faults()
    return simulator.tags(4711)


async def test_sigterm_lets_a_running_job_finish_within_the_grace_time(
    simulator, tmp_path, dev_pki, job_store
):
    tags = await _sigterm_during_job(simulator, tmp_path, dev_pki, job_store, grace=20, delay=1.0)
    assert sorted(tags) == ["pdf:signed", "rechnung", "reklamation"]
    assert len(simulator.notes(4711)) == 1


async def test_sigterm_past_the_grace_time_puts_the_trigger_tag_back(simulator, tmp_path, dev_pki, job_store):
    tags = await _sigterm_during_job(simulator, tmp_path, dev_pki, job_store, grace=0.3, delay=30)
    assert sorted(tags) == ["pdf:sign", "rechnung", "reklamation"]
    assert simulator.notes(4711) == []
    # The run was given back to the store: pending again for the next start (or replica),
    # the interrupted attempt not counted.
    assert await job_store.rows("SELECT state, attempts FROM jobs") == [("pending", 0)]
