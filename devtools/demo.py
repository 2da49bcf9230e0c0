"""``make demo``: one real archive run on embedded defaults, start to finish.

1. Dev certificates (``scripts/dev/gen-dev-certs.sh`` into ``var/dev-certs``).
2. The Zammad simulator (``python -m devtools.zammad_simulator``) seeded with ticket 4711.
3. The service (``python -m app serve``) on a free loopback port, local storage in
   ``var/demo-archive``.
4. The fixture's default webhook, sent byte for byte as Zammad sends it (headers, ``sha1=``
   signature).
5. Wait for ``pdf:signed``/``pdf:error``, print the PDF's path and a verification summary
   (pyHanko against the dev root, ``pdfsig``, the note's SHA-256), stop everything.

Exit status 0 only when the ticket ends ``pdf:signed`` and the signature verifies.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from devtools.webhook import zammad_webhook

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "zammad"
VAR = REPO / "var"
CERTS = VAR / "dev-certs"
ARCHIVE = VAR / "demo-archive"
TICKET_ID = 4711
DEMO_TOKEN = "demo-api-token"
DEMO_SECRET = "demo-webhook-secret"
DEMO_PFX_PASSWORD = "changeit"
TIMEOUT_SECONDS = 120


def say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def start_simulator() -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devtools.zammad_simulator",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--token",
        DEMO_TOKEN,
        "--seed",
        str(FIXTURES),
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    match = re.match(rb"LISTENING (\S+)", line)
    if not match:
        raise RuntimeError(f"simulator did not start: {line!r}")
    return proc, match.group(1).decode()


async def start_service(zammad_url: str, port: int, state_dir: Path) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "ZAMMAD_BASE_URL": zammad_url,
        "ZAMMAD_API_TOKEN": DEMO_TOKEN,
        "ALLOW_INSECURE_HTTP": "true",
        "WEBHOOK_HMAC_SECRET": DEMO_SECRET,
        "STORAGE_ROOT": str(ARCHIVE),
        "STATE_DIR": str(state_dir),
        "SIGNING_ENABLED": "true",
        "SIGNING_PFX_PATH": str(CERTS / "signer.pfx"),
        "SIGNING_PFX_PASSWORD": DEMO_PFX_PASSWORD,
        "SERVER_HOST": "127.0.0.1",
        "SERVER_PORT": str(port),
        "LOG_LEVEL": "INFO",
    }
    env.pop("CONFIG_PATH", None)
    log = os.open(VAR / "demo-service.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app", "serve", env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )
    finally:
        os.close(log)  # the service writes to its own copy


async def wait_healthy(session: aiohttp.ClientSession, url: str, proc: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError(f"the service exited with {proc.returncode}; see var/demo-service.log")
        try:
            async with session.get(f"{url}/healthz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the service did not answer /healthz within 30 s")


async def wait_final_tags(session: aiohttp.ClientSession, sim_url: str) -> dict:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        async with session.get(f"{sim_url}/_sim/state/{TICKET_ID}") as resp:
            state = await resp.json()
        tags = state["tags"]
        if ("pdf:signed" in tags or "pdf:error" in tags) and "pdf:processing" not in tags and state["notes"]:
            return state
        await asyncio.sleep(0.2)
    raise RuntimeError(f"ticket {TICKET_ID} did not finish within {TIMEOUT_SECONDS} s")


async def verify(pdf: Path) -> list[tuple[str, bool, str]]:
    """Check the signature with pyHanko against the dev root, and with pdfsig when present."""
    from asn1crypto import pem, x509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import async_validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    results: list[tuple[str, bool, str]] = []
    der = (CERTS / "root.pem").read_bytes()
    if pem.detect(der):
        _, _, der = pem.unarmor(der)
    reader = PdfFileReader(io.BytesIO(await asyncio.to_thread(pdf.read_bytes)))
    sig = reader.embedded_signatures[0]
    vc = ValidationContext(
        trust_roots=[x509.Certificate.load(der)], allow_fetching=False, revocation_mode="soft-fail"
    )
    status = await async_validate_pdf_signature(sig, vc)
    results.append(
        (
            "pyHanko: intact, valid, trusted by the dev root",
            bool(status.intact and status.valid and status.trusted),
            f"signer {status.signing_cert.subject.human_friendly}",
        )
    )
    if shutil.which("pdfsig"):
        pdfsig = await asyncio.create_subprocess_exec(
            "pdfsig", str(pdf), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        out = (await pdfsig.communicate())[0].decode(errors="replace")
        ok = "Signature is Valid." in out and "Total document signed" in out
        results.append(("pdfsig: Signature is Valid, total document signed", ok, "poppler"))
    return results


async def run() -> int:
    VAR.mkdir(exist_ok=True)
    ARCHIVE.mkdir(parents=True, exist_ok=True)
    say("dev certificates → var/dev-certs")
    certs = await asyncio.create_subprocess_exec(
        "bash",
        str(REPO / "scripts/dev/gen-dev-certs.sh"),
        str(CERTS),
        env={**os.environ, "DEV_PFX_PASSWORD": DEMO_PFX_PASSWORD},
        stdout=asyncio.subprocess.DEVNULL,
    )
    if await certs.wait() != 0:
        raise RuntimeError(f"scripts/dev/gen-dev-certs.sh exited with {certs.returncode}")
    before = set(ARCHIVE.rglob("*.pdf"))
    sim, sim_url = await start_simulator()
    say(f"Zammad simulator at {sim_url} with ticket {TICKET_ID} (tags rechnung, reklamation, pdf:sign)")
    port = free_port()
    job_store = tempfile.TemporaryDirectory(prefix="demo-state-", dir=VAR)  # a fresh job store per demo
    service = await start_service(sim_url, port, Path(job_store.name))
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, url, service)
            say(f"archiver at {url} (log: var/demo-service.log)")
            payload = json.loads((FIXTURES / "webhook-default.json").read_text())
            body, headers = zammad_webhook(payload, DEMO_SECRET)
            async with session.post(f"{url}/ingest", data=body, headers=headers) as resp:
                say(
                    f"webhook POST /ingest ({len(body)} bytes, {headers['X-Hub-Signature'][:13]}…) "
                    f"→ {resp.status} {await resp.text()}"
                )
                if resp.status != 202:
                    return 1
            state = await wait_final_tags(session, sim_url)
        say(f"ticket tags now: {', '.join(state['tags'])}")
        note = state["notes"][-1]
        say("internal note: " + re.sub(r"<[^>]+>", " ", note["body"]).split("Job:")[0].strip())
        if "pdf:signed" not in state["tags"]:
            say("FAILED: the ticket ended in pdf:error")
            return 1
        new = sorted(set(ARCHIVE.rglob("*.pdf")) - before)
        if len(new) != 1:
            say(f"FAILED: expected one new PDF, found {len(new)}")
            return 1
        pdf = new[0]
        digest = hashlib.sha256(pdf.read_bytes()).hexdigest()
        say(f"PDF: {pdf}")
        say(f"SHA-256: {digest} ({'matches' if digest in note['body'] else 'DOES NOT MATCH'} the note)")
        ok = digest in note["body"]
        for label, passed, detail in await verify(pdf):
            say(f"{'OK  ' if passed else 'FAIL'} {label} ({detail})")
            ok = ok and passed
        say_library_warnings()
        say("done: signed PDF archived" if ok else "FAILED: verification")
        return 0 if ok else 1
    finally:
        for proc in (service, sim):
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (service, sim):
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
        job_store.cleanup()


def say_library_warnings() -> None:
    """One ``[demo] library warning`` line for each Python warning held back since :func:`main`
    started (pyHanko's imports for the verification), instead of Python's raw two-line display
    between the demo's lines. The service writes its own to its log (``py.warnings``)."""
    from app.observability.warning_capture import ROUTER

    for warning in ROUTER.pending():
        say(f"library warning: {warning.category.__name__}: {warning.message} ({warning.source()})")
    ROUTER.discard()


def main() -> int:
    """Run the demo; returns the exit status."""
    from app.observability.warning_capture import ROUTER, ignore_known_library_warnings

    ignore_known_library_warnings()
    ROUTER.capture()
    try:
        return asyncio.run(run())
    except RuntimeError as exc:
        say_library_warnings()
        say(f"FAILED: {exc}")
        return 1
    finally:
        ROUTER.uninstall()


if __name__ == "__main__":
    sys.exit(main())
