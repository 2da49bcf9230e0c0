#!/bin/sh
# Image build helper (Containerfile): point apt at DEBIAN_MIRROR and trust EXTRA_CA_CERTS.
#
#   EXTRA_CA_CERTS  PEM text of one or more CA certificates; added to the system store
#                   (/etc/ssl/certs/ca-certificates.crt), which apt, OpenSSL and, through
#                   PIP_CERT, pip then trust
#   DEBIAN_MIRROR   base URL replacing http://deb.debian.org (e.g. https://mirror.corp/debian)
# Both empty: does nothing.
set -eu

if [ -n "${DEBIAN_MIRROR:-}" ]; then
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && sed -i "s#http://deb.debian.org/debian#${DEBIAN_MIRROR%/}#g" "$f"
    done
fi

if [ -n "${EXTRA_CA_CERTS:-}" ]; then
    dir=/usr/local/share/ca-certificates/extra
    mkdir -p "$dir"
    printf '%s\n' "$EXTRA_CA_CERTS" >"$dir/build-extra.crt"
    if command -v update-ca-certificates >/dev/null 2>&1; then
        update-ca-certificates >/dev/null
    else
        # No ca-certificates package yet: append to the bundle directly.
        mkdir -p /etc/ssl/certs
        cat "$dir/build-extra.crt" >>/etc/ssl/certs/ca-certificates.crt
    fi
fi
