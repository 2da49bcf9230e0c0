#!/usr/bin/env bash
# Generate a throw-away development PKI for signing: root CA, PAdES signer (+ PFX) and RFC 3161 TSA.
#
# Usage: scripts/dev/gen-dev-certs.sh [OUTDIR]     (default: var/dev-certs under the repository root)
#
# Writes, into OUTDIR:
#   root.pem, root.key       dev root CA (RSA-3072, 10 years)
#   signer.pem, signer.key   signing certificate (RSA-3072, keyUsage=critical,digitalSignature,nonRepudiation)
#   signer.pfx               PKCS#12 with key, signer cert and root; password $DEV_PFX_PASSWORD (default "changeit")
#   tsa.pem, tsa.key         time-stamping certificate (extendedKeyUsage=critical,timeStamping) for `openssl ts`
#
# Idempotent: when every file already exists, nothing is done. Private keys and the PFX are mode 0600.
# Needs only bash and openssl (3.x). Never use these certificates outside development.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
outdir="${1:-$repo_root/var/dev-certs}"
pfx_password="${DEV_PFX_PASSWORD:-changeit}"
files=(root.pem root.key signer.pem signer.key signer.pfx tsa.pem tsa.key)

mkdir -p "$outdir"
all_present=1
for f in "${files[@]}"; do
    [[ -e "$outdir/$f" ]] || all_present=0
done
if [[ $all_present -eq 1 ]]; then
    echo "dev certificates already present in $outdir"
    exit 0
fi

umask 077
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Root CA.
openssl req -x509 -newkey rsa:3072 -sha256 -days 3650 -nodes \
    -keyout "$work/root.key" -out "$work/root.pem" \
    -subj "/O=zammad-pdf-archiver dev/CN=Dev Root CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" 2>/dev/null

# issue NAME SUBJECT EXTENSIONS: leaf key + certificate issued by the root.
issue() {
    local name="$1" subject="$2" extensions="$3"
    openssl req -new -newkey rsa:3072 -nodes -keyout "$work/$name.key" -out "$work/$name.csr" \
        -subj "$subject" 2>/dev/null
    printf '%s\n' "$extensions" >"$work/$name.ext"
    openssl x509 -req -in "$work/$name.csr" -CA "$work/root.pem" -CAkey "$work/root.key" \
        -set_serial "0x$(openssl rand -hex 16)" -days 825 -sha256 \
        -extfile "$work/$name.ext" -out "$work/$name.pem" 2>/dev/null
}

issue signer "/O=zammad-pdf-archiver dev/CN=Dev Archive Signer" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,nonRepudiation
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid"

issue tsa "/O=zammad-pdf-archiver dev/CN=Dev TSA" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=critical,timeStamping
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid"

# Password via the environment, never on the command line (ps would show it).
DEV_PFX_PASSWORD_INTERNAL="$pfx_password" openssl pkcs12 -export \
    -inkey "$work/signer.key" -in "$work/signer.pem" -certfile "$work/root.pem" \
    -name "dev-archive-signer" -passout env:DEV_PFX_PASSWORD_INTERNAL -out "$work/signer.pfx"

for f in "${files[@]}"; do
    cp "$work/$f" "$outdir/$f"
done
chmod 600 "$outdir"/root.key "$outdir"/signer.key "$outdir"/tsa.key "$outdir"/signer.pfx
chmod 644 "$outdir"/root.pem "$outdir"/signer.pem "$outdir"/tsa.pem
echo "dev certificates written to $outdir"
