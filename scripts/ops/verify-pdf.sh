#!/usr/bin/env bash
# Verify an archived PDF: every signature intact, valid and trusted; the sidecar's SHA-256 when present.
#
# Usage: scripts/ops/verify-pdf.sh FILE.pdf
#
# Environment:
#   VERIFY_PDF_TRUST          colon-separated PEM files with the trust roots (required), e.g. the
#                             signer's root and the TSA's root
#   VERIFY_PDF_OTHER_CERTS    colon-separated PEM files with intermediates (optional)
#   VERIFY_PDF_SHOW_DETAILS   true: print the full report instead of one line per signature
#   VERIFY_PDF_PYHANKO        the pyhanko CLI to use (default: `pyhanko` on PATH, else the one in
#                             the repository's .venv); set to "none" to use verify-pdf.py instead
#
# Signatures are judged by the AdES validation model (ETSI EN 319 102-1; PAdES ETSI EN 319 142-1):
# a timestamped signature (B-T, B-LT, B-LTA) is valid when the signer's certificate was valid at
# the time its signature timestamp proves and the TSA's chain is valid now (B-LTA: at the time a
# later document timestamp proves), so an archive stays valid after its signer certificate
# expired: "Signature1:<fp>:VALID (valid at <time>, proven by the signature timestamp; signer
# certificate expired on <date>)". A signature without a timestamp (B-B) whose signer
# certificate has expired cannot be proven either way: "Signature1:<fp>:INDETERMINATE (cannot be
# proven: no timestamp, signer certificate expired on <date>)", exit status 3. Document timestamps
# (B-LTA) form a chain: the newest is judged at the present time, an older one whose TSA
# certificate expired at the time the next newer, valid one proves: "DocTimeStamp-…:<fp>:VALID
# (valid at <time>, proven by the document timestamp of <time>; TSA certificate expired on …)".
#
# Uses pyHanko's CLI (`pyhanko sign validate`, which validates at the present time) when
# installed, else scripts/ops/verify-pdf.py (pyHanko's AdES engine, pyhanko.sign.validation.ades).
# When the CLI judges a signature INVALID, verify-pdf.py re-checks the file by the AdES model and
# its verdict counts: the CLI's own AdES command (`pyhanko sign adesverify`) either requires
# revocation data for every certificate or checks none, and neither is the soft-fail below.
# Always verify-pdf.py for a file with a document timestamp (B-LTA), which the CLI passes over.
# Revocation is checked online where the certificates name OCSP/CRL services; an unreachable
# service does not fail the check (soft-fail), a "revoked" answer does (for a timestamped
# signature: one dated before the time its timestamp proves).
#
# Exit status: 0 intact + valid + trusted (+ sidecar matches); 1 invalid, untrusted, or sidecar
# mismatch; 2 usage or set-up error; 3 nothing invalid, but a signature is INDETERMINATE.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"

if [[ $# -ne 1 ]]; then
    echo "usage: $0 FILE.pdf" >&2
    exit 2
fi
file="$1"
if [[ ! -f "$file" ]]; then
    echo "verify-pdf: $file: no such file" >&2
    exit 2
fi
if [[ -z "${VERIFY_PDF_TRUST:-}" ]]; then
    echo "verify-pdf: set VERIFY_PDF_TRUST to the trust root PEM file(s), colon-separated" >&2
    exit 2
fi
# A certificate file that cannot be read is a set-up error (2), not a verdict on the archive (1).
for setting in VERIFY_PDF_TRUST VERIFY_PDF_OTHER_CERTS; do
    IFS=: read -r -a pems <<<"${!setting:-}"
    for pem in "${pems[@]}"; do
        if [[ -n "$pem" && ! ( -f "$pem" && -r "$pem" ) ]]; then
            echo "verify-pdf: $setting names $pem, which is not a readable file" >&2
            exit 2
        fi
    done
done

python="$repo_root/.venv/bin/python"
[[ -x "$python" ]] || python="$(command -v python3)"

status=0

# 1. Sidecar (<file>.json): written after the PDF by the archiver; must match the bytes.
sidecar="$file.json"
if [[ -f "$sidecar" ]]; then
    expected="$("$python" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d["sha256"], d["size"])' "$sidecar" 2>/dev/null)" || {
        echo "verify-pdf: sidecar $sidecar is not valid JSON with sha256 and size" >&2
        exit 1
    }
    actual="$(sha256sum -- "$file" | cut -d' ' -f1) $(stat -c %s -- "$file")"
    if [[ "$expected" == "$actual" ]]; then
        echo "sidecar: OK (sha256 ${actual%% *})"
    else
        echo "sidecar: MISMATCH (sidecar: $expected, file: $actual)"
        status=1
    fi
else
    echo "sidecar: none ($sidecar not found: the signatures are checked, not the recorded SHA-256)"
fi

# 2. Signatures.
pyhanko="${VERIFY_PDF_PYHANKO:-}"
if [[ -z "$pyhanko" ]]; then
    pyhanko="$(command -v pyhanko || true)"
    [[ -n "$pyhanko" ]] || { [[ -x "$repo_root/.venv/bin/pyhanko" ]] && pyhanko="$repo_root/.venv/bin/pyhanko"; }
fi

details=0
case "${VERIFY_PDF_SHOW_DETAILS:-false}" in 1|true|yes|on|TRUE|True) details=1 ;; esac

# pyHanko's CLI validates signature fields only and passes over document timestamps (PAdES
# B-LTA, ETSI EN 319 142-1): a file that holds one is checked by verify-pdf.py, which checks
# every signature and every document timestamp.
if grep -aq '/DocTimeStamp' -- "$file"; then
    pyhanko=none
fi

if [[ -n "$pyhanko" && "$pyhanko" != "none" ]]; then
    args=(sign validate --trust-replace --soft-revocation-check)
    IFS=: read -r -a roots <<<"$VERIFY_PDF_TRUST"
    for root in "${roots[@]}"; do
        [[ -n "$root" ]] && args+=(--trust "$root")
    done
    IFS=: read -r -a others <<<"${VERIFY_PDF_OTHER_CERTS:-}"
    for other in "${others[@]}"; do
        [[ -n "$other" ]] && args+=(--other-certs "$other")
    done
    if [[ $details -eq 1 ]]; then args+=(--pretty-print); else args+=(--executive-summary); fi
    # pyHanko's report is kept in a temporary file and printed unless a signature is judged INVALID
    # (then verify-pdf.py's lines replace it); its stderr (warnings, log lines, "Error: …") is kept
    # to name the cause when it gave no verdict, e.g. on a PDF it cannot parse. A PDF without a
    # signature gets no report at all and exit status 0 from pyHanko's CLI: that is a failure here.
    errors="$(mktemp)"
    "$pyhanko" "${args[@]}" "$file" 2>"$errors" >"$errors.out"
    rc=$?
    invalid=':INVALID$|is judged INVALID'  # --executive-summary, --pretty-print
    if [[ $rc -ne 0 ]] && grep -qE "$invalid" "$errors.out"; then
        # Not valid at the present time: the AdES validation model decides (see the header).
        [[ $details -eq 1 ]] && { cat -- "$errors.out"; cat -- "$errors" >&2; }
        echo "signatures: pyHanko's CLI judges at the present time: $(grep -cE "$invalid" "$errors.out") INVALID; re-checked by the AdES validation model (verify-pdf.py):"
        "$python" "$here/verify-pdf.py" --signatures-only "$file"
        rc=$?
        rm -f -- "$errors" "$errors.out"
        pyhanko=none
    else
        cat -- "$errors.out"
        if [[ $details -eq 1 ]]; then
            cat -- "$errors" >&2
        elif [[ $rc -ne 0 ]]; then
            reason="$(sed -n 's/^Error: //p' "$errors" | tail -n 1)"
            [[ -n "$reason" ]] || reason="$(grep -v '^[[:space:]]' "$errors" | tail -n 1)"
            echo "signatures: NOT VERIFIED (pyHanko: ${reason:-exit status $rc, no message})"
        fi
        if [[ $rc -eq 0 ]] && ! grep -q '[^[:space:]]' "$errors.out"; then
            echo "signatures: NONE (the PDF holds no signature)"
            rc=1
        fi
        rm -f -- "$errors" "$errors.out"
    fi
else
    "$python" "$here/verify-pdf.py" --signatures-only "$file"
    rc=$?
fi
if [[ $rc -ne 0 ]]; then
    [[ $rc -eq 2 && ( -z "$pyhanko" || "$pyhanko" == "none" ) ]] && exit 2
    if [[ $rc -eq 3 && $status -eq 0 ]]; then status=3; else status=1; fi
fi
exit $status
