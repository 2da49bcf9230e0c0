"""``python -m app audit``: the fixity audit of the storage root from the command line.

Reads ``STORAGE_ROOT``, ``SIGNING_TRUST_ROOTS_PATH`` and ``AUDIT_EXPIRY_WARN_DAYS`` from the
settings (``CONFIG_PATH`` and the environment; nothing else is required), each overridable
by an option. Exit status: 0 when every archive is ok (and, with ``--manifest``, the manifest
is intact and every archive it records is there) and no temporary file of a killed write older
than ``--temp-file-minutes`` is left (one removed with ``--remove-temp-files`` is not a
problem), 1 when anything is wrong, 2 for a usage or configuration error.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from app.audit.report import JsonReport, ProgressBar, TextReport
from app.audit.root_position import root_prefix
from app.audit.run import DEFAULT_EXPIRY_DAYS, AuditOptions, run_audit
from app.audit.temp_files import DEFAULT_MIN_AGE

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2

MAX_DEFAULT_JOBS = 4
"""``--jobs`` by default: one per CPU, at most this many."""


def parse_since(text: str) -> datetime:
    """``2026-12-01`` (midnight UTC) or an ISO 8601 time (UTC when it names no offset).

    Raises:
        argparse.ArgumentTypeError: neither.
    """
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD) or ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app audit",
        description="Re-read every archive under STORAGE_ROOT: SHA-256 against its sidecar, signatures "
        "and timestamps against the trust roots; exit 1 when anything is wrong.",
    )
    parser.add_argument(
        "--since",
        type=parse_since,
        metavar="DATE",
        help="only archives whose PDF or sidecar changed on or after DATE (YYYY-MM-DD, UTC, or ISO 8601)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout, every file in it")
    parser.add_argument(
        "--manifest",
        action="store_true",
        help="also verify the manifest's hash chain and timestamps, every archive against it, "
        "and that every archive it records is there",
    )
    parser.add_argument(
        "--expiry-days",
        type=int,
        metavar="N",
        help="report certificate_expiring when an archive's newest evidence chain expires within N days "
        f"(default AUDIT_EXPIRY_WARN_DAYS, {DEFAULT_EXPIRY_DAYS})",
    )
    parser.add_argument(
        "--temp-file-minutes",
        type=int,
        metavar="N",
        default=int(DEFAULT_MIN_AGE.total_seconds() // 60),
        help="report temp_file_left for temporary files (.NAME.HEX.tmp) of killed writes last written "
        "N or more minutes ago; younger ones may be a running replica's (default %(default)s)",
    )
    parser.add_argument(
        "--remove-temp-files",
        action="store_true",
        help="remove those temporary files (each reported as temp_file_removed); nothing else is removed",
    )
    parser.add_argument(
        "--trust",
        type=Path,
        action="append",
        metavar="PEM",
        help="trust roots for signer and TSA chains (repeatable; default SIGNING_TRUST_ROOTS_PATH)",
    )
    parser.add_argument("--root", type=Path, metavar="DIR", help="the archive root (default STORAGE_ROOT)")
    parser.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        default=min(os.cpu_count() or 1, MAX_DEFAULT_JOBS),
        help=f"processes that check archives (default: the CPUs, at most {MAX_DEFAULT_JOBS})",
    )
    parser.add_argument("--all", action="store_true", help="text output: list ok files too")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    return parser


def main(argv: list[str], *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the audit command; returns the exit status (see the module docstring)."""
    from app.config import load_settings
    from app.errors import ConfigError
    from app.signing.trust import load_certificates

    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    try:
        settings = load_settings(require_complete=False)
        root = args.root or settings.storage_root
        if root is None:
            raise ConfigError("STORAGE_ROOT / storage.root: is required (or pass --root)")
        if not root.is_dir():
            raise ConfigError(f"the archive root {str(root)!r} is not an existing folder")
        trust_paths = args.trust or (
            [settings.signing_trust_roots_path] if settings.signing_trust_roots_path else []
        )
        roots = tuple(cert for path in trust_paths for cert in load_certificates(path))
        days = settings.audit_expiry_warn_days if args.expiry_days is None else args.expiry_days
        if days < 0:
            raise ConfigError("--expiry-days must be 0 or more")
        if args.temp_file_minutes < 1:
            raise ConfigError("--temp-file-minutes must be 1 or more")
        if args.jobs < 1:
            raise ConfigError("--jobs must be 1 or more")
        prefix = root_prefix(root, settings.storage_root)
    except ConfigError as exc:
        print(f"audit: {exc}", file=err)
        return EXIT_USAGE

    options = AuditOptions(
        root=root,
        trust_roots=roots,
        since=args.since,
        expiry_window=timedelta(days=days),
        manifest=args.manifest,
        count_first=not args.no_progress and err.isatty(),
        jobs=args.jobs,
        root_prefix=prefix,
        temp_min_age=timedelta(minutes=args.temp_file_minutes),
        remove_temp_files=args.remove_temp_files,
    )
    if args.json:
        writer: JsonReport | TextReport = JsonReport(
            out,
            {
                "root": str(root),
                "started_at": datetime.now(UTC).isoformat(),
                "since": args.since.isoformat() if args.since else None,
                "expiry_days": days,
                "trust_roots": len(roots),
                "manifest": args.manifest,
                "temp_file_minutes": args.temp_file_minutes,
                "remove_temp_files": args.remove_temp_files,
            },
        )
    else:
        writer = TextReport(out, show_ok=args.all)
    bar = ProgressBar(err) if options.count_first else None
    try:
        summary = run_audit(options, on_manifest=writer.manifest, on_file=writer.file, progress=bar)
    except BrokenPipeError:
        return _reader_gone()
    except OSError as exc:
        if bar is not None:
            bar.close()
        print(f"audit: cannot read {str(root)!r}: {exc.strerror or exc}", file=err)
        return EXIT_USAGE
    if bar is not None:
        bar.close()
    try:
        writer.finish(summary)
        out.flush()  # here, not at exit, where a closed pipe would print a traceback
    except BrokenPipeError:
        return _reader_gone()
    return EXIT_OK if summary.ok else EXIT_PROBLEMS


def _reader_gone() -> int:
    """stdout's reader is gone (``audit | head``): nobody to report to; exit 1 without a
    traceback (stdout pointed at /dev/null, so Python's own flush at exit writes nowhere)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_PROBLEMS
