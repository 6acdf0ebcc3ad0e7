#!/bin/bash
# Stand-in for the entrypoint of kas's own images, for bench/vs_kas_container.py.
#
# bench/vs_kas_container.py builds an image FROM kasctl's with this as its
# ENTRYPOINT, so that kas-container (which runs the image's entrypoint with
# `kas`'s arguments) has an image that behaves on start the way kas's does:
#
#   - started without USER_ID (not by kas-container) or with USER_ID=0: run
#     as root;
#   - otherwise give the image's `builder` user and group the ids
#     kas-container passes in USER_ID and GROUP_ID (duplicates allowed: under
#     podman's --userns=keep-id the container already has an entry for that
#     uid, which keep-id maps to the host user), make builder own its home,
#     and run as builder;
#   - a kas command (or an option) as first argument runs kas with all the
#     arguments, anything else runs as given, no argument runs bash.
#
# It leaves out what kas's image entrypoints also do that needs no USER_ID
# handling (the aufs warning, binfmt registration through sudo in kas-isar,
# git's safe.directory outside kas-container): see the benchmark's docstring.
set -e

if [ -z "$USER_ID" ] || [ "$USER_ID" = 0 ]; then
    as_builder=()
else
    groupmod --non-unique --gid "${GROUP_ID:-$USER_ID}" builder
    usermod --non-unique --uid "$USER_ID" --gid "${GROUP_ID:-$USER_ID}" builder >/dev/null
    chown -R "$USER_ID:${GROUP_ID:-$USER_ID}" /builder
    if command -v gosu >/dev/null; then
        as_builder=(gosu builder)
    else
        export HOME=/builder USER=builder LOGNAME=builder
        as_builder=(setpriv --reuid=builder --regid=builder --init-groups)
    fi
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
