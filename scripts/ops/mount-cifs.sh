#!/usr/bin/env bash
# Mount an SMB/CIFS share as the archiver's STORAGE_ROOT with the options docs/05-storage.md explains.
#
# Usage:
#   scripts/ops/mount-cifs.sh //fileserver/archive /srv/ticket-archive            # dry run: prints the command
#   scripts/ops/mount-cifs.sh --apply //fileserver/archive /srv/ticket-archive    # mounts (root, cifs-utils)
#   scripts/ops/mount-cifs.sh --fstab //fileserver/archive /srv/ticket-archive    # prints an /etc/fstab line
#
# Environment (defaults in brackets):
#   CIFS_CREDENTIALS  credentials file, mode 0600, lines username=…, password=…, domain=…
#                     [/etc/zammad-pdf-archiver/cifs-credentials]
#   ARCHIVER_UID / ARCHIVER_GID  owner of every file as the Linux side sees it: the container
#                     user 10001, or the systemd unit's user [10001 / 10001]
#   CIFS_VERS         SMB dialect [3.1.1]; CIFS_EXTRA extra options appended as they are [empty]
#
# Options and why:
#   vers=3.1.1                      signed/encrypted SMB3; never SMB1
#   credentials=FILE                the password never appears in `ps` or the shell history
#   uid=,gid=,forceuid,forcegid     the archiver's user owns everything it sees on the share
#   file_mode=0640,dir_mode=0750    what Linux reports (the share's ACLs still decide on the server)
#   cache=strict                    close-to-open consistency; reads after our own write are exact
#   nosuid,nodev,noexec             an archive share never runs programs or holds devices
#   noperm                          not set: permission checks stay on the client as well
#   _netdev,nofail (fstab)          mount after the network; boot does not hang on a missing share
#   x-systemd.automount (fstab)     mounted on first access, retried when the share comes back
set -euo pipefail

mode=dry-run
case "${1:-}" in
    --apply) mode=apply; shift ;;
    --fstab) mode=fstab; shift ;;
    --dry-run) shift ;;
    -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
if [[ $# -ne 2 ]]; then
    echo "usage: $0 [--dry-run|--apply|--fstab] //SERVER/SHARE MOUNTPOINT" >&2
    exit 2
fi
share="$1"
mountpoint="$2"
credentials="${CIFS_CREDENTIALS:-/etc/zammad-pdf-archiver/cifs-credentials}"
uid="${ARCHIVER_UID:-10001}"
gid="${ARCHIVER_GID:-10001}"
vers="${CIFS_VERS:-3.1.1}"

[[ $share == //*/* ]] || { echo "share must look like //server/share, got '$share'" >&2; exit 2; }
[[ $mountpoint == /* ]] || { echo "mount point must be an absolute path, got '$mountpoint'" >&2; exit 2; }

options="vers=$vers,credentials=$credentials,uid=$uid,gid=$gid,forceuid,forcegid"
options+=",file_mode=0640,dir_mode=0750,cache=strict,nosuid,nodev,noexec"
[[ -n ${CIFS_EXTRA:-} ]] && options+=",${CIFS_EXTRA}"

# An /etc/fstab field: space, tab, newline and backslash as octal escapes (fstab(5)), so a share
# or mount point with spaces ("//fileserver/Ticket Archiv") stays one field.
fstab_field() {
    local value="${1//\\/\\134}"
    value="${value// /\\040}"
    value="${value//$'\t'/\\011}"
    printf '%s' "${value//$'\n'/\\012}"
}

case "$mode" in
    fstab)
        printf '%s %s cifs %s 0 0\n' "$(fstab_field "$share")" "$(fstab_field "$mountpoint")" \
            "$(fstab_field "$options,_netdev,nofail,x-systemd.automount")"
        ;;
    dry-run)
        echo "# dry run; add --apply to mount (as root, needs cifs-utils):"
        printf 'mkdir -p %q\n' "$mountpoint"
        printf "mount -t cifs %q %q -o '%s'\n" "$share" "$mountpoint" "$options"
        printf '# then check: findmnt %q && sudo -u %q touch %q && rm %q\n' \
            "$mountpoint" "#$uid" "$mountpoint/.probe" "$mountpoint/.probe"
        ;;
    apply)
        [[ $(id -u) -eq 0 ]] || { echo "--apply needs root" >&2; exit 1; }
        command -v mount.cifs >/dev/null || { echo "mount.cifs missing: apt-get install cifs-utils" >&2; exit 1; }
        [[ -r $credentials ]] || { echo "credentials file $credentials not readable" >&2; exit 1; }
        perms="$(stat -c %a "$credentials")"
        [[ $perms == 600 || $perms == 400 ]] || { echo "chmod 600 $credentials first (is $perms)" >&2; exit 1; }
        mkdir -p "$mountpoint"
        mount -t cifs "$share" "$mountpoint" -o "$options"
        findmnt "$mountpoint"
        ;;
esac
