"""Python warnings are buffered from the start and written through the JSON log, once each."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.observability.logging import JsonFormatter
from app.observability.warning_capture import CapturedWarning, WarningRouter

REPO = Path(__file__).resolve().parents[2]


class LibraryWarning(UserWarning):
    """Stands in for a library's own category (as cryptography's CryptographyDeprecationWarning)."""


@pytest.fixture
def router(request: pytest.FixtureRequest) -> Iterator[tuple[WarningRouter, io.StringIO]]:
    """A router on a logger of its own that writes JSON lines into a StringIO; Python's warning
    state (filters, showwarning) is restored afterwards."""
    name = f"test.py.warnings.{request.node.name}"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.WARNING)
    router = WarningRouter(name, limit=4)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        try:
            yield router, stream
        finally:
            router.uninstall()
            logger.removeHandler(handler)


def _warn(text: str, lineno: int = 10, category: type[Warning] = LibraryWarning) -> None:
    warnings.warn_explicit(text, category, "/venv/lib/site-packages/somelib/module.py", lineno)


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_buffered_until_routed_then_written_once_each(router):
    router, stream = router
    router.capture()
    _warn("DSA is deprecated")
    _warn("DSA is deprecated")  # the same warning again: kept once
    _warn("other", lineno=11)
    assert stream.getvalue() == ""
    assert [w.message for w in router.pending()] == ["DSA is deprecated", "other"]

    assert router.route_to_logging() is True
    lines = _lines(stream)
    assert [line["msg"] for line in lines] == ["LibraryWarning: DSA is deprecated", "LibraryWarning: other"]
    assert lines[0]["level"] == "warning" and lines[0]["logger"] == router._logger.name
    assert lines[0]["category"] == f"{__name__}.LibraryWarning"
    assert lines[0]["source"].endswith("somelib/module.py:10")
    assert router.pending() == ()

    _warn("DSA is deprecated")  # seen before routing: still once
    _warn("late")  # after routing: written at once
    assert [line["msg"] for line in _lines(stream)][2:] == ["LibraryWarning: late"]


def test_the_same_text_from_another_line_or_category_is_another_warning(router):
    router, stream = router
    router.capture()
    router.route_to_logging()
    _warn("same")
    _warn("same", lineno=99)
    _warn("same", category=DeprecationWarning)
    assert len(_lines(stream)) == 3


def test_discard_drops_the_buffer(router):
    router, stream = router
    router.capture()
    _warn("noise")
    assert router.discard() == 1
    router.route_to_logging()
    assert stream.getvalue() == ""


def test_distinct_warnings_are_bounded(router):
    router, stream = router
    router.capture()
    for n in range(6):
        _warn(f"varying text {n}")
    assert len(router.pending()) == 4
    router.route_to_logging()
    _warn("one more")
    msgs = [line["msg"] for line in _lines(stream)]
    assert len(msgs) == 5 and msgs[-1].startswith("more than 4 distinct Python warnings")


def test_uninstall_puts_the_previous_display_back(router):
    router, _ = router
    before = warnings.showwarning
    router.capture()
    assert router.installed and warnings.showwarning is not before
    router.uninstall()
    assert not router.installed and warnings.showwarning is before


def test_an_explicit_stream_goes_to_the_previous_display(router):
    router, stream = router
    shown = []
    warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: shown.append(
        (str(message), file)
    )
    router.capture()
    router.route_to_logging()
    out = io.StringIO()
    warnings.showwarning("to a file", LibraryWarning, "x.py", 1, file=out)
    assert shown == [("to a file", out)] and stream.getvalue() == ""


def test_a_recording_harness_keeps_its_warnings(router):
    """catch_warnings(record=True), as pytest uses it: routing leaves it alone."""
    router, stream = router
    with warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always")
        assert router.route_to_logging() is False
        _warn("recorded")
    assert [str(w.message) for w in recorded] == ["recorded"] and stream.getvalue() == ""


def test_a_program_s_own_showwarning_is_left_in_place(router):
    router, stream = router
    shown = []
    warnings.showwarning = lambda message, *args, **kwargs: shown.append(str(message))
    assert router.route_to_logging() is False
    _warn("mine")
    assert shown == ["mine"] and stream.getvalue() == ""


def test_source_is_relative_to_its_sys_path_entry(monkeypatch):
    monkeypatch.setattr(sys, "path", ["/opt/venv/lib/python3.11/site-packages", "/opt"])
    captured = CapturedWarning(LibraryWarning, "m", "/opt/venv/lib/python3.11/site-packages/lib/x.py", 3)
    assert captured.source() == "lib/x.py:3"
    assert CapturedWarning(DeprecationWarning, "m", "/elsewhere/y.py", 4).source() == "/elsewhere/y.py:4"
    assert CapturedWarning(DeprecationWarning, "m", "y.py", 4).category_name() == "DeprecationWarning"


def _run(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_configure_logging_routes_warnings_redacted_outside_a_harness():
    """In a plain process (no pytest): a warning after configure_logging is one JSON line, its
    secret redacted; Python's own two-line display never appears."""
    done = _run("""
        import warnings
        from app.observability.logging import configure_logging
        configure_logging("INFO", ["hunter2-secret"])
        warnings.warn("token hunter2-secret leaked into a warning", UserWarning)
    """)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    entry = json.loads(lines[0])
    assert entry["logger"] == "py.warnings" and entry["msg"] == "UserWarning: token *** leaked into a warning"


# Starts `python -m app` with a load_settings that warns (as a library does at import): the
# warning is shown after main() started capturing, before logging is configured.
NOISY_MAIN = """
    import sys, warnings
    import app.config
    original = app.config.load_settings
    def noisy_load_settings():
        for _ in range(3):
            warnings.warn("library noise at import", DeprecationWarning)
        return original()
    app.config.load_settings = noisy_load_settings
    warnings.simplefilter("always")
    from app.__main__ import main
    sys.exit(main(sys.argv[1:]))
"""


def _serve_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CONFIG_PATH"}
    env.update(
        {
            "ZAMMAD_BASE_URL": "https://zammad.example",
            "ZAMMAD_API_TOKEN": "t0ken-value",
            "STORAGE_ROOT": str(tmp_path),
            "STATE_DIR": str(tmp_path / "state"),
            "SIGNING_ENABLED": "false",
            "SERVER_HOST": "127.0.0.1",
            "SERVER_PORT": "1",
            "WORKERS": "1",
            "RENDER_PROCESSES": "1",
        }
    )
    env.update(overrides)
    return env


def test_a_bad_setting_stays_one_line_whatever_libraries_warn(tmp_path):
    done = _run(NOISY_MAIN, "serve", env=_serve_env(tmp_path, WORKERS="abc"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("configuration error: WORKERS"), (
        done.stderr
    )


def test_serve_writes_warnings_buffered_at_start_as_one_json_line(tmp_path):
    """A good start: the warning shown before logging was configured comes out once, as JSON."""
    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(NOISY_MAIN), "serve"],
        cwd=REPO,
        env=_serve_env(tmp_path, SERVER_PORT=str(port)),
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "Running on" in line:
                break
        proc.terminate()
        lines.extend(proc.stderr)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    entries = [json.loads(line) for line in lines]  # every line is JSON: nothing raw
    noise = [e for e in entries if e["logger"] == "py.warnings" and "library noise" in e["msg"]]
    assert len(noise) == 1 and noise[0]["msg"] == "DeprecationWarning: library noise at import", entries
    assert noise[0]["level"] == "warning"


def test_extract_writes_library_warnings_as_json(tmp_path):
    """``render`` and ``extract`` configure the JSON log at WARNING: a library's warning is a JSON
    line before the command's own plain message."""
    bad = tmp_path / "not.pdf"
    bad.write_text("{}")
    done = _run(
        """
        import sys, warnings
        import app.render.extract as extract
        real_main = extract.main
        def noisy_main(argv):
            warnings.warn("library noise", DeprecationWarning)
            return real_main(argv)
        extract.main = noisy_main
        warnings.simplefilter("always")
        from app.__main__ import main
        sys.exit(main(sys.argv[1:]))
    """,
        "extract",
        str(bad),
        "-o",
        str(tmp_path / "out"),
    )
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and lines[1].startswith("extract: cannot read the PDF"), done.stderr
    entry = json.loads(lines[0])
    assert entry["logger"] == "py.warnings" and entry["msg"] == "DeprecationWarning: library noise"


def test_create_app_routes_later_warnings_to_the_json_log(tmp_path):
    """Under another ASGI server (``hypercorn --factory app.main:create_app``): warnings raised
    once the factory has configured logging are JSON lines too."""
    done = _run(
        """
        import warnings
        warnings.simplefilter("ignore")  # what importing the libraries says is the server's to show
        from app.main import create_app
        warnings.resetwarnings()
        create_app()
        warnings.warn("raised while serving", UserWarning)
    """,
        env=_serve_env(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stderr.splitlines()]
    assert [e["msg"] for e in entries if e["logger"] == "py.warnings"] == [
        "UserWarning: raised while serving"
    ]


def test_cryptography_s_dsa_deprecation_on_pyhanko_s_import_is_not_shown():
    """``python -m app audit`` imports pyHanko and writes library warnings as JSON lines: the
    DSA deprecation cryptography raises on pyHanko's import is not among them."""
    done = _run("import sys; from app.__main__ import main; sys.exit(main(sys.argv[1:]))", "audit", "--help")
    assert done.returncode == 0, done.stderr
    assert "DSA is deprecated" not in done.stderr, done.stderr


def test_only_that_dsa_warning_is_ignored():
    from cryptography.utils import CryptographyDeprecationWarning

    from app.observability.warning_capture import ignore_known_library_warnings

    def warn(text: str, module: str) -> None:
        warnings.warn_explicit(
            text, CryptographyDeprecationWarning, f"{module.replace('.', '/')}.py", 20, module=module
        )

    with warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always")
        ignore_known_library_warnings()
        warn("DSA is deprecated and support will be removed", "pyhanko.sign.signers.pdf_cms")
        warn("DSA is deprecated and support will be removed", "app.signing.keys")
        warn("TripleDES is deprecated", "pyhanko.sign.signers.pdf_cms")
    assert [(str(w.message), w.filename) for w in recorded] == [
        ("DSA is deprecated and support will be removed", "app/signing/keys.py"),
        ("TripleDES is deprecated", "pyhanko/sign/signers/pdf_cms.py"),
    ]
