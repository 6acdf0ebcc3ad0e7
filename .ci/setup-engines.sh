#!/usr/bin/env bash
# Install and start every container engine kasctl's CI tests against, on a
# fresh Debian 12 machine with no systemd (see MACHINE-NOTES.md):
#   system docker, rootful podman, rootless podman and rootless docker, the
#   last two for the unprivileged test user $KASCI_USER (default: kasci).
# Must run as root. Idempotent: a second run reuses what is already running.
#
# Usage: setup-engines.sh
set -euo pipefail

CI_USER=${KASCI_USER:-kasci}
SUBID_START=100000
SUBID_COUNT=165536
PACKAGES=(podman runc uidmap docker.io rootlesskit slirp4netns fuse-overlayfs mmdebstrap acl zsh fish bash-completion
          procps) # procps: pgrep, to find a daemon that is still starting
SYSTEM_DOCKER_SOCK=/var/run/docker.sock
SYSTEM_DOCKER_LOG=/var/log/dockerd.log
ROOTLESS_DOCKER_LOG=/var/log/dockerd-rootless-$CI_USER.log
READY_TIMEOUT=${KASCI_READY_TIMEOUT:-60} # seconds to wait for a daemon to answer
# PATH for the test user: dockerd-rootless.sh needs /usr/sbin (dockerd) and
# /sbin; /usr/local/bin comes first so the same docker client as root's is used.
USER_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

step() { printf '==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
export DEBIAN_FRONTEND=noninteractive

# ---------------------------------------------------------------- packages
# apt-get update alone costs several seconds; skip it when all is installed.
step "packages: ${PACKAGES[*]}"
missing=()
for p in "${PACKAGES[@]}"; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) || true
    [ "$st" = 'install ok installed' ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    info "installing: ${missing[*]}"
    apt-get update -q
    apt-get install -y -q "${PACKAGES[@]}" </dev/null
else
    info "all installed"
fi

# ------------------------------------------------------------ system docker
# Explicit -H: a DOCKER_HOST/DOCKER_CONTEXT in the caller's env must not
# redirect the check to another daemon. timeout: a hung daemon accepts the
# connection but never answers, which would block the client forever.
system_docker() { timeout 5 docker -H "unix://$SYSTEM_DOCKER_SOCK" "$@"; }

# wait_ready NAME LOG PID CMD...: poll CMD until it succeeds; fail after
# READY_TIMEOUT, or at once if PID (the daemon we started, may be empty) died.
wait_ready() {
    local name=$1 log=$2 pid=$3; shift 3
    local deadline=$((SECONDS + READY_TIMEOUT)) why=
    until "$@" >/dev/null 2>&1; do
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            why="exited"
        elif [ "$SECONDS" -ge "$deadline" ]; then
            why="did not answer within ${READY_TIMEOUT}s"
        fi
        if [ -n "$why" ]; then
            printf 'ERROR: %s %s; last lines of %s:\n' "$name" "$why" "$log" >&2
            tail -n 30 "$log" >&2 || true
            exit 1
        fi
        sleep 0.5
    done
}

# daemon_pid UID NAME: pid of a running NAME owned by UID, if any. A daemon
# that runs but does not answer yet is still starting: wait for it rather
# than start a second one (e.g. one that apt's init script just launched).
daemon_pid() { pgrep -u "$1" -x "$2" | head -n 1 || true; }

step "system docker"
if system_docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
    info "already running, reusing it"
else
    pid=$(daemon_pid 0 dockerd)
    if [ -n "$pid" ]; then
        info "dockerd (pid $pid) is starting, waiting"
    else
        info "starting /usr/sbin/dockerd, log $SYSTEM_DOCKER_LOG"
        # No systemd: run it in its own session so it outlives this script.
        setsid nohup /usr/sbin/dockerd >>"$SYSTEM_DOCKER_LOG" 2>&1 </dev/null &
        pid=$!
    fi
    wait_ready "system dockerd" "$SYSTEM_DOCKER_LOG" "$pid" \
        system_docker version --format '{{.Server.Version}}'
fi
info "server $(system_docker version --format '{{.Server.Version}}')"

# ----------------------------------------------------------- rootful podman
# crun cannot work on this cgroup-v1 host ("cgroups in hybrid mode not
# supported") and there is no CAP_SYS_RESOURCE, so podman's default ulimits
# fail ("setrlimit ...: Operation not permitted"): use runc, no ulimits.
CONTAINERS_CONF='[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
'
# User storage must be overlay (kernel 6.x native); vfs copies the whole
# image for every container.
STORAGE_CONF='[storage]
driver = "overlay"
'

# write_file PATH CONTENT [OWNER]: (re)write only if different.
write_file() {
    local path=$1 content=$2 owner=${3:-root} tmp
    if [ -f "$path" ] && [ "$(cat "$path")" = "${content%$'\n'}" ]; then
        info "$path unchanged"
        return
    fi
    tmp=$(mktemp)
    printf '%s' "$content" >"$tmp"
    install -D -m 644 -o "$owner" -g "$(id -gn "$owner")" "$tmp" "$path"
    rm -f "$tmp"
    info "wrote $path"
}

step "rootful podman"
write_file /etc/containers/containers.conf "$CONTAINERS_CONF"
rt=$(podman info --format '{{.Host.OCIRuntime.Name}}') || die "podman info failed"
[ "$rt" = runc ] || die "rootful podman uses runtime '$rt', expected runc"
info "runtime $rt"

# ---------------------------------------------------------------- test user
step "test user $CI_USER"
if ! id "$CI_USER" >/dev/null 2>&1; then
    useradd -m -s /bin/bash "$CI_USER"
    info "created"
fi
CI_UID=$(id -u "$CI_USER")
CI_GID=$(id -g "$CI_USER")
CI_HOME=$(getent passwd "$CI_USER" | cut -d: -f6)
RUNTIME_DIR=/run/user/$CI_UID
ROOTLESS_DOCKER_SOCK=$RUNTIME_DIR/docker.sock
info "uid $CI_UID, home $CI_HOME"

# as_user CMD...: run CMD as the test user with a clean, known environment
# (the same one tests use). setpriv execs directly: no lingering parent.
as_user() {
    setpriv --reuid="$CI_UID" --regid="$CI_GID" --init-groups \
        env -i -C "$CI_HOME" HOME="$CI_HOME" USER="$CI_USER" LOGNAME="$CI_USER" \
        SHELL=/bin/bash PATH="$USER_PATH" XDG_RUNTIME_DIR="$RUNTIME_DIR" "$@"
}

# Rootless engines need exactly ONE sub-id range per user: useradd writes
# 100000:65536, and a second overlapping line breaks newuidmap ("write to
# uid_map failed: Invalid argument"). 165536 ids let an image's own
# `useradd` range (100000:65536) lie inside the container's uid map.
subids_changed=0
for f in /etc/subuid /etc/subgid; do
    want="$CI_USER:$SUBID_START:$SUBID_COUNT"
    touch "$f"
    others=$(awk -F: -v u="$CI_USER" -v id="$CI_UID" '$1 != u && $1 != id' "$f")
    mine=$(awk -F: -v u="$CI_USER" -v id="$CI_UID" '$1 == u || $1 == id' "$f")
    if [ "$mine" != "$want" ]; then
        tmp=$(mktemp "$f.XXXXXX")
        { [ -z "$others" ] || printf '%s\n' "$others"; printf '%s\n' "$want"; } >"$tmp"
        chmod 644 "$tmp"
        mv "$tmp" "$f"
        subids_changed=1
        info "$f: set $want"
    fi
    # Another user's range overlapping ours would share host ids: warn.
    printf '%s\n' "$others" | awk -F: -v s="$SUBID_START" -v n="$SUBID_COUNT" -v f="$f" \
        'NF == 3 && $2 < s + n && $2 + $3 > s {
            print "    WARNING: " f ": " $0 " overlaps " s ":" n > "/dev/stderr" }'
done

# System docker tests run as the test user through the docker group.
if [[ " $(id -nG "$CI_USER") " != *" docker "* ]]; then
    usermod -aG docker "$CI_USER"
    info "added to group docker"
fi

# slirp4netns (rootless podman) and rootlesskit (rootless docker) open
# /dev/net/tun as the user.
if [ ! -c /dev/net/tun ]; then
    mkdir -p /dev/net
    mknod /dev/net/tun c 10 200
fi
chmod 666 /dev/net/tun

# No systemd-logind: create the user's runtime dir ourselves (podman's run
# dir, rootless docker's socket and state live there).
install -d -m 755 /run/user
install -d -m 700 -o "$CI_UID" -g "$CI_GID" "$RUNTIME_DIR"

for d in "$CI_HOME/.config" "$CI_HOME/.config/containers"; do
    [ -d "$d" ] || install -d -m 755 -o "$CI_UID" -g "$CI_GID" "$d"
done
write_file "$CI_HOME/.config/containers/containers.conf" "$CONTAINERS_CONF" "$CI_USER"
write_file "$CI_HOME/.config/containers/storage.conf" "$STORAGE_CONF" "$CI_USER"

# ---------------------------------------------------------- rootless podman
step "rootless podman ($CI_USER)"
# A user namespace podman already set up (pause process, storage) keeps the
# old id map until migrated.
if [ "$subids_changed" = 1 ] && { [ -d "$CI_HOME/.local/share/containers" ] \
        || [ -d "$RUNTIME_DIR/libpod" ] || [ -d "/tmp/containers-user-$CI_UID" ]; }; then
    info "sub-ids changed after podman was used: podman system migrate"
    as_user podman system migrate
fi
driver=$(as_user podman info --format '{{.Store.GraphDriverName}}') \
    || die "rootless podman info failed for $CI_USER"
[ "$driver" = overlay ] || die "rootless podman storage driver is '$driver', not overlay;" \
    "storage was created with another driver: run 'podman system reset' as $CI_USER"
umap=$(as_user podman unshare cat /proc/self/uid_map | awk '{$1=$1; print}' | paste -sd'/')
info "storage $driver, user namespace uid_map: $umap"

# ---------------------------------------------------------- rootless docker
step "rootless docker ($CI_USER)"
rootless_docker() { as_user timeout 5 docker -H "unix://$ROOTLESS_DOCKER_SOCK" "$@"; }
rootless_ready() {
    local opts
    opts=$(rootless_docker info --format '{{json .SecurityOptions}}' 2>/dev/null) || return 1
    [[ $opts == *rootless* ]]
}
if rootless_ready; then
    info "already running, reusing it"
    # Its user namespace was made from the old ranges; only a restart fixes it.
    [ "$subids_changed" = 0 ] || printf '    WARNING: %s\n' \
        "sub-ids changed but rootless dockerd keeps its old uid map; restart it" >&2
else
    # rootlesskit is the outer process of dockerd-rootless.sh.
    pid=$(daemon_pid "$CI_UID" rootlesskit)
    if [ -n "$pid" ]; then
        info "rootless dockerd (rootlesskit pid $pid) is starting, waiting"
    else
        info "starting dockerd-rootless.sh, log $ROOTLESS_DOCKER_LOG"
        # Same environment as as_user (a function cannot be exec'd by setsid).
        setsid nohup setpriv --reuid="$CI_UID" --regid="$CI_GID" --init-groups \
            env -i -C "$CI_HOME" HOME="$CI_HOME" USER="$CI_USER" LOGNAME="$CI_USER" \
            PATH="$USER_PATH" XDG_RUNTIME_DIR="$RUNTIME_DIR" \
            /usr/share/docker.io/contrib/dockerd-rootless.sh \
            >>"$ROOTLESS_DOCKER_LOG" 2>&1 </dev/null &
        pid=$!
    fi
    wait_ready "rootless dockerd" "$ROOTLESS_DOCKER_LOG" "$pid" rootless_ready
fi
info "server $(rootless_docker version --format '{{.Server.Version}}'), socket $ROOTLESS_DOCKER_SOCK"

# ------------------------------------------- users for host-problem tests
# kasnum: its sub-id lines name it by uid, not by name (both must work).
# kasnosub: no sub-id range at all (kasctl must say so before any container).
# kasdef: the distributions' default range of 65536 sub-ids, with which Isar
#   maps nobody/nogroup on its own (a build must work, and not warn).
# Their ranges lie far above kasci's, so no two users share host ids.
step "users for host-problem tests"
# subid_line LINE OWNER...: in /etc/subuid and /etc/subgid, the lines of each OWNER
# (a name or uid) replaced by LINE (none if LINE is empty)
subid_line() {
    local line=$1 f owner
    shift
    for f in /etc/subuid /etc/subgid; do
        cp "$f" "$f.tmp"
        for owner in "$@"; do
            grep -v "^$owner:" "$f.tmp" >"$f.tmp2" || true
            mv "$f.tmp2" "$f.tmp"
        done
        [ -z "$line" ] || printf '%s\n' "$line" >>"$f.tmp"
        chmod 644 "$f.tmp" && mv "$f.tmp" "$f"
    done
}
extra_user() {
    local name=$1 line=$2 uid home
    id "$name" >/dev/null 2>&1 \
        || { useradd -m -s /bin/bash -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 "$name" && info "created $name"; }
    uid=$(id -u "$name")
    home=$(getent passwd "$name" | cut -d: -f6)
    subid_line "${line//UID/$uid}" "$name" "$uid"
    install -d -m 700 -o "$uid" -g "$(id -g "$name")" "/run/user/$uid"
    write_file "$home/.config/containers/containers.conf" "$CONTAINERS_CONF" "$name"
    write_file "$home/.config/containers/storage.conf" "$STORAGE_CONF" "$name"
    if [ -n "$line" ]; then info "$name (uid $uid): ${line//UID/$uid}"; else info "$name (uid $uid): no sub-ids"; fi
}
extra_user kasnum "UID:500000:165536"
extra_user kasnosub ""
extra_user kasdef "UID:800000:65536"

# Rootful podman's automatic user namespaces (--userns=auto, what `podman kube
# play` makes of a pod's `hostUsers: false`) take their ids from the ranges of
# the name `containers`; no user of that name is needed. 16 pods of 65536 ids,
# above every range given here.
step "sub-ids for rootful podman's automatic user namespaces"
subid_line "containers:2000000:1048576" containers
info "containers: 2000000:1048576"

# ---------------------------------------------------- the privileged executor
# isar-privileged on a rootless engine runs the rootful one through sudo, as
# kas-container does; the test user may do that for the engines only.
step "sudo for $CI_USER (isar-privileged through the executor)"
dpkg-query -W -f='${Status}' sudo 2>/dev/null | grep -q "ok installed" \
    || { apt-get update -q && apt-get install -y -q sudo </dev/null; }
SUDOERS="$CI_USER ALL=(root) NOPASSWD:SETENV: /usr/bin/podman, /usr/local/bin/docker, /usr/bin/docker, /usr/bin/env"$'\n'
write_file /etc/sudoers.d/kasci-engines "$SUDOERS" root
chmod 0440 /etc/sudoers.d/kasci-engines
visudo -cq -f /etc/sudoers.d/kasci-engines || die "sudoers rule for $CI_USER is invalid"

step "engines ready in ${SECONDS}s"
