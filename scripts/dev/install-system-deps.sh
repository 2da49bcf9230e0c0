#!/usr/bin/env bash
# Install the Debian packages the archiver's demo and tests need, when they are missing.
#
#   poppler-utils  pdfsig, pdftotext, pdfinfo, pdffonts (independent PDF verifiers)
#   openssl        dev certificates, `openssl cms -verify`, `openssl ts` (local TSA)
#   qpdf           `qpdf --check` and `qpdf --json` (structure checks in the render tests)
#   python3-venv   `python3 -m venv` on Debian
#   fonts-noto-core, fonts-dejavu-core   fallback fonts: Arabic, Hebrew, symbols (Noto Sans ships in app/render/fonts)
#   fonts-noto-cjk, fonts-noto-color-emoji   CJK and emoji fallback fonts (the render tests need them)
#   gettext        msgfmt: the tests compare the in-memory catalogue compiler (app/i18n.py) with it
#   prometheus     promtool: `promtool check rules deploy/prometheus/alerts.yml` in the tests (the
#                  tests do not use its server; on a systemd host Debian starts it on :9090:
#                  `systemctl disable --now prometheus` if unwanted)
#   faketime       libfaketime: the signature-validation tests run the verifiers days after a
#                  test certificate expired (tests/signing/test_past_validation.py)
#   postgresql     initdb, pg_ctl, psql under /usr/lib/postgresql/N/bin: the tests start their own
#                  throw-away server (tests/postgres_server.py; own port and socket dir, so the
#                  cluster "main" that Debian's package may create and start is never used)
#
# Runs apt-get only when something is missing and only as root; otherwise prints what to
# install and exits 1. Nothing to do: exits 0 silently.
set -euo pipefail

missing=()
command -v pdfsig >/dev/null 2>&1 || missing+=(poppler-utils)
command -v pdftotext >/dev/null 2>&1 || missing+=(poppler-utils)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v qpdf >/dev/null 2>&1 || missing+=(qpdf)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
[[ -d /usr/share/fonts/truetype/noto ]] || missing+=(fonts-noto-core)
[[ -f /usr/share/fonts/truetype/noto/NotoSansArabic-Regular.ttf ]] || missing+=(fonts-noto-core)
[[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || missing+=(fonts-dejavu-core)
[[ -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ]] || missing+=(fonts-noto-cjk)
[[ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]] || missing+=(fonts-noto-color-emoji)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v msgfmt >/dev/null 2>&1 || missing+=(gettext)
command -v faketime >/dev/null 2>&1 || missing+=(faketime)

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi
# unique, in order
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++')

if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "missing system packages: ${missing[*]}" >&2
    echo "install them (Debian: sudo apt-get install ${missing[*]}) and run make again" >&2
    exit 1
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
