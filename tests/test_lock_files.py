"""requirements/*.lock: hash-pinned, consistent with each other and with pyproject.toml's ranges,
and used by the Makefile and the Containerfile; scripts/dev/lock-diff.py reports differences."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
LOCKS = {name: REPO / "requirements" / f"{name}.lock" for name in ("runtime", "test", "bench")}
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _requirements(path: Path) -> list[str]:
    """The lock's requirement entries (continuation lines joined, comments dropped)."""
    joined = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    return [
        line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for entry in _requirements(path):
        requirement = Requirement(entry.split(" --hash")[0])
        (specifier,) = requirement.specifier
        pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_every_entry_is_an_exact_version_with_hashes(name):
    entries = _requirements(LOCKS[name])
    assert len(entries) > 20
    for entry in entries:
        requirement = Requirement(entry.split(" --hash")[0])
        assert [s.operator for s in requirement.specifier] == ["=="], entry
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", entry), f"no hash: {entry[:80]}"


def test_a_package_has_one_version_in_all_locks():
    runtime, test, bench = (_pins(LOCKS[n]) for n in ("runtime", "test", "bench"))
    assert runtime.items() <= test.items(), "runtime.lock must be test.lock's subset, same versions"
    assert test.items() <= bench.items(), "test.lock must be bench.lock's subset, same versions"


@pytest.mark.parametrize(
    ("lock", "groups"), [("runtime", ()), ("test", ("test",)), ("bench", ("test", "bench"))]
)
def test_the_locks_satisfy_pyproject(lock, groups):
    """A range changed in pyproject.toml without `make lock` fails here."""
    pins = _pins(LOCKS[lock])
    wanted = list(PYPROJECT["project"]["dependencies"])
    for group in groups:
        wanted += PYPROJECT["project"]["optional-dependencies"][group]
    for text in wanted:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{lock}.lock lacks {name}: run make lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{lock}.lock pins {name}=={pins[name]}, outside {requirement.specifier}: run make lock"
        )


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_the_build_tooling_is_pinned(lock):
    """The editable install runs without build isolation: setuptools (as [build-system] asks)
    and pip come from the lock."""
    pins = _pins(LOCKS[lock])
    assert "pip" in pins
    for text in PYPROJECT["build-system"]["requires"]:
        requirement = Requirement(text)
        assert requirement.specifier.contains(pins[canonicalize_name(requirement.name)])
    build_in = (REPO / "requirements" / "build.in").read_text(encoding="utf-8")
    for text in PYPROJECT["build-system"]["requires"]:
        assert text in build_in.splitlines(), "requirements/build.in repeats [build-system] requires"


def test_the_makefile_installs_from_the_locks():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    stamp_rule = re.search(r"^\$\(STAMP\): (.*)$", makefile, re.M)
    assert stamp_rule and "$(TEST_LOCK)" in stamp_rule.group(1), "the venv stamp must depend on the lock"
    assert "--require-hashes" in makefile and "--no-deps --no-build-isolation -e ." in makefile
    assert re.search(r"^lock:", makefile, re.M) and re.search(r"^test-latest:", makefile, re.M)


def test_the_image_installs_from_the_runtime_lock():
    containerfile = (REPO / "Containerfile").read_text(encoding="utf-8")
    assert "COPY requirements/runtime.lock" in containerfile
    assert re.search(r"--require-hashes[^\n]*\\\n\s*-r requirements/runtime.lock", containerfile)
    assert "--no-deps --no-build-isolation ." in containerfile
    assert "!requirements/runtime.lock" in (REPO / ".containerignore").read_text(encoding="utf-8")


def test_lock_diff_reports_what_differs(tmp_path):
    """lock-diff.py against this interpreter's environment: a moved pin, a pin of a package that
    is not installed, a pin whose marker does not apply here (left out)."""
    installed_pytest = subprocess.run(
        [sys.executable, "-c", "import pytest; print(pytest.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    lock = tmp_path / "x.lock"
    lock.write_text(
        "# comment\n"
        f"pytest=={installed_pytest} \\\n    --hash=sha256:{'0' * 64}\n"
        "packaging==0.1 \\\n    --hash=sha256:" + "1" * 64 + "\n"
        "not-a-real-package-xyz==1.0 ; python_version >= '3'\n"
        "windows-only-package==2.0 ; sys_platform == 'win32'\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "dev" / "lock-diff.py"), str(lock)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert re.search(r"^  packaging\s+0\.1 -> \d", out, re.M), out
    assert re.search(r"^  not-a-real-package-xyz\s+1\.0 -> \(not installed\)", out, re.M), out
    assert re.search(r"^  iniconfig\s+\(not in the lock\) -> \d", out, re.M), out
    assert "  pytest " not in out and "windows-only" not in out and "zammad-pdf-archiver" not in out
    missing = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "dev" / "lock-diff.py"), str(tmp_path / "no")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "cannot read" in missing.stderr
