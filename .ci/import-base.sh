#!/usr/bin/env bash
# Import a Debian root filesystem tarball as a base image into all four
# engine stores used by kasctl's CI. No registry is reachable from CI, so the
# base image is made from Debian's mirror instead of pulled, e.g.:
#   mmdebstrap --variant=minbase trixie trixie.tar http://deb.debian.org/debian
# Stores that already hold the image are skipped.
# Run as root after .ci/setup-engines.sh (the engines must be running).
#
# Usage: import-base.sh TARBALL [IMAGE]     (IMAGE defaults to debian:trixie)
set -euo pipefail

CI_USER=${KASCI_USER:-kasci}
USER_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

step() { printf '==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: $0 TARBALL [IMAGE]"
TARBALL=$1
IMAGE=${2:-debian:trixie}
[ "$(id -u)" = 0 ] || die "must run as root"
[ -f "$TARBALL" ] && [ -r "$TARBALL" ] || die "no readable tarball: $TARBALL"
id "$CI_USER" >/dev/null 2>&1 || die "user $CI_USER missing: run setup-engines.sh first"

. "$(dirname "${BASH_SOURCE[0]}")/stores.sh"

# A truncated tarball (e.g. mmdebstrap still writing it) would import as a
# broken image: make sure it reads to the end.
tar -tf "$TARBALL" >/dev/null || die "$TARBALL is not a complete tar archive"

# Like the official debian images: an interactive shell by default.
CHANGE='CMD ["bash"]'

step "import $TARBALL as $IMAGE"
for store in "${STORES[@]}"; do
    label=$(store_label "$store")
    # podman stores it as localhost/$IMAGE; "image exists $IMAGE" finds that.
    if [ "${store#*_}" = podman ]; then
        have() { "$store" image exists "$IMAGE"; }
    else
        have() { "$store" image inspect "$IMAGE" >/dev/null 2>&1; }
    fi
    if have; then
        info "$label: already has $IMAGE"
        continue
    fi
    start=$SECONDS
    # Fed on stdin: root opens the file, so the user's engines need no
    # read access to it.
    quiet=(); [ "${store#*_}" = podman ] && quiet=(--quiet) # no progress noise
    "$store" import "${quiet[@]}" --change "$CHANGE" - "$IMAGE" <"$TARBALL" >/dev/null \
        || die "$label: import failed"
    have || die "$label: $IMAGE still missing after import"
    info "$label: imported in $((SECONDS - start))s"
done
