#!/bin/bash
# Stand-in for the entrypoint of kas's kas-isar image, for bench/vs_kas_container.py.
#
# bench/vs_kas_container.py builds an image FROM kasctl's with this as its
# ENTRYPOINT (and the image's real sudo back, setuid, with a passwordless
# rule for builder, as kas's image has), so that kas-container, which runs
# the image's entrypoint with kas's arguments, has an image that does on
# start what kas-isar's does (`container-entrypoint` in kas's git repository,
# releases 5.4 and 5.5; the steps are this project's reading of it):
#
#   1. make qemu's binfmt handlers available: mount binfmt_misc when it is
#      not mounted, enable the handlers through sudo, and stop when that
#      leaves no binfmt_misc;
#   2. fall back to TERM=xterm for a terminal type the image does not know;
#      warn when / is on aufs;
#   3. without USER_ID (not started by kas-container) or with USER_ID=0: run
#      as root;
#   4. otherwise give `builder` the ids in USER_ID and GROUP_ID (duplicates
#      allowed: under podman's --userns=keep-id the uid already has an
#      entry), chown its home, take over an ssh dir and the timezone when
#      given, and run as builder through gosu;
#   5. write builder's /etc/subuid and /etc/subgid line from the last row of
#      the container's id maps (base moved past builder's uid when the row
#      starts at 1, as on docker's remapped maps);
#   6. a kas command (or an option) as first argument runs kas with all the
#      arguments, anything else runs as given, no argument runs bash.
#
# It leaves out the rootless-docker chown of the managed dirs (the benchmark
# does not run kas-container on rootless docker) and GitLab's safe.directory.
set -e

if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
sudo update-binfmts --enable
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    echo "kas-like entrypoint: no binfmt_misc, foreign architectures cannot run" >&2
    exit 1
fi

if ! infocmp "${TERM:-dumb}" >/dev/null 2>&1; then
    export TERM=xterm
fi
if mount | grep -q "on / type aufs"; then
    echo "WARNING: / is on aufs, wic images cannot be built" >&2
fi

if [ -z "$USER_ID" ] || [ "$USER_ID" = 0 ]; then
    as_builder=()
    owner=root
else
    gid="${GROUP_ID:-$USER_ID}"
    groupmod --non-unique --gid "$gid" builder
    usermod --non-unique --uid "$USER_ID" --gid "$gid" builder >/dev/null
    chown -R "$USER_ID:$gid" /builder
    if [ -d /var/kas/userdata/.ssh ]; then
        cp -a /var/kas/userdata/.ssh /builder/
        chown -R "$USER_ID:$gid" /builder/.ssh
    fi
    if [ -n "$TZ" ] && [ -e "/usr/share/zoneinfo/$TZ" ]; then
        ln -sf "/usr/share/zoneinfo/$TZ" /etc/localtime
    fi
    owner=builder
    if command -v gosu >/dev/null; then
        as_builder=(gosu builder)
    else
        export HOME=/builder USER=builder LOGNAME=builder
        as_builder=(setpriv --reuid=builder --regid=builder --init-groups)
    fi
fi

sub_range() {  # the id map's last row (sorted) -> "base:count" for builder
    local own="$1" map="$2" first base count
    read -r first base count < <(sort -n "$map" | tail -n 1)
    if [ "$first" = 1 ]; then
        echo "$((first + own)):$((count - own))"
    else
        echo "$base:$count"
    fi
}
if [ "$owner" = builder ]; then
    echo "builder:$(sub_range "$(id -u builder)" /proc/self/uid_map)" >/etc/subuid
    echo "builder:$(sub_range "$(id -g builder)" /proc/self/gid_map)" >/etc/subgid
fi

[ "$PWD" != / ] || cd /builder

case "${1-}" in
"")
    exec "${as_builder[@]}" bash
    ;;
build | checkout | clean | cleanall | cleansstate | diff | dump | for-all-repos | lock | menu | \
    purge | shell | -*)
    exec "${as_builder[@]}" kas "$@"
    ;;
*)
    exec "${as_builder[@]}" "$@"
    ;;
esac
