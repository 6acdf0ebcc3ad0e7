#!/usr/bin/env bash
# Copy an image built in system docker into the other three stores, so the
# kasctl image is built once per CI run instead of four times (about 80 s
# each). Always reloads: a store may hold an older build under the same tag.
#
# Usage: spread-image.sh IMAGE...
set -euo pipefail

CI_USER=${KASCI_USER:-kasci}
USER_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
. "$(dirname "${BASH_SOURCE[0]}")/stores.sh"

archive=$(mktemp /var/tmp/kasctl-image.XXXXXX.tar)
trap 'rm -f "$archive"' EXIT
printf '==> save %s from system docker\n' "$*"
sys_docker save -o "$archive" "$@"
for store in sys_podman usr_podman usr_docker; do
    start=$SECONDS
    quiet=(); [ "${store#*_}" = podman ] && quiet=(--quiet)
    "$store" load "${quiet[@]}" <"$archive" >/dev/null || { echo "ERROR: $(store_label "$store"): load failed" >&2; exit 1; }
    printf '    %s: loaded in %ss\n' "$(store_label "$store")" "$((SECONDS - start))"
done
