#!/usr/bin/env bash
# Install gitlab-ci-local, which runs .gitlab-ci.yml jobs locally in docker
# containers, so tests can run kasctl inside a GitLab-style job container.
# For a Debian 12 machine with no container registry reachable: everything
# comes from Debian's apt or the npm registry, and the one helper image that
# gitlab-ci-local needs is made locally from debian:trixie.
#
# Run as root, non-interactively. Idempotent and quiet: a second run only
# checks. Needs system docker running and debian:trixie in its store.
#
# Result:
#   /usr/local/bin/gitlab-ci-local -> /opt/gitlab-ci-local/node_modules/.bin/gitlab-ci-local
#   docker image docker.io/firecow/gitlab-ci-local-util:latest (local build)
set -euo pipefail

GCL_VERSION=4.70.1            # 4.75.x fails to start on Node 20
GCL_PREFIX=/opt/gitlab-ci-local
GCL_LINK=/usr/local/bin/gitlab-ci-local
# gitlab-ci-local's default --helper-image. Every docker job uses it: before
# the job it chowns/chmods the project volume (sh, chown, chmod), and after a
# job with artifacts or cache it copies them out (bash, rsync). Made under
# this name, no --helper-image flag is needed, and with the default pull
# policy (if-not-present) an image found locally is never pulled.
HELPER_IMAGE=docker.io/firecow/gitlab-ci-local-util:latest
HELPER_BASE=${HELPER_BASE_IMAGE:-debian:trixie}  # not GCL_*: gitlab-ci-local reads those as options
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"

apt_updated=0
# quiet CMD...: run CMD, showing its output only if it fails.
quiet() {
    local out rc=0
    out=$("$@" 2>&1 </dev/null) || rc=$?
    [ "$rc" = 0 ] || { printf '%s\n' "$out" >&2; die "failed ($rc): $*"; }
}
apt_install() {
    [ "$apt_updated" = 1 ] || { quiet apt-get update -q; apt_updated=1; }
    quiet apt-get install -y -q --no-install-recommends "$@"
}

# ------------------------------------------------------------- host tools
# gitlab-ci-local copies the project's git-tracked files with rsync (and git)
# before every run, on the host.
missing=()
command -v rsync >/dev/null || missing+=(rsync)
command -v git >/dev/null || missing+=(git)
# Node.js: keep one already there (e.g. Node 20); otherwise Debian's.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

# ------------------------------------------------------- gitlab-ci-local
have=$(node -p "require('$GCL_PREFIX/node_modules/gitlab-ci-local/package.json').version" 2>/dev/null || true)
if [ "$have" != "$GCL_VERSION" ]; then
    mkdir -p "$GCL_PREFIX"
    # Its own package.json pins the exact version, apart from the project's.
    [ -f "$GCL_PREFIX/package.json" ] || printf '{"private": true}\n' >"$GCL_PREFIX/package.json"
    quiet npm install --prefix "$GCL_PREFIX" --save-exact --no-audit --no-fund \
        --loglevel=error "gitlab-ci-local@$GCL_VERSION"
fi
[ -x "$GCL_PREFIX/node_modules/.bin/gitlab-ci-local" ] || die "gitlab-ci-local binary missing after install"
[ "$(readlink "$GCL_LINK" 2>/dev/null)" = "$GCL_PREFIX/node_modules/.bin/gitlab-ci-local" ] \
    || ln -sfn "$GCL_PREFIX/node_modules/.bin/gitlab-ci-local" "$GCL_LINK"

# ------------------------------------------------------------ helper image
# Made with run + commit rather than docker build, so no builder can try to
# look the base image up in a registry. Only apt reaches out (the mirror).
docker version >/dev/null 2>&1 || die "system docker does not answer"
if ! docker image inspect "$HELPER_IMAGE" >/dev/null 2>&1; then
    docker image inspect "$HELPER_BASE" >/dev/null 2>&1 \
        || die "base image $HELPER_BASE is not in the docker store"
    tmp=gcl-helper-build-$$
    trap 'docker rm -f "$tmp" >/dev/null 2>&1 || true' EXIT
    quiet docker run --name "$tmp" --network host -e DEBIAN_FRONTEND=noninteractive \
        "$HELPER_BASE" sh -euc "
            if [ -f /etc/apt/sources.list.d/debian.sources ]; then
                sed -i 's#^URIs: .*#URIs: $DEBIAN_MIRROR#' /etc/apt/sources.list.d/debian.sources
            elif ! grep -qs '^deb ' /etc/apt/sources.list; then
                echo 'deb $DEBIAN_MIRROR trixie main' >/etc/apt/sources.list
            fi
            apt-get update -q
            apt-get install -y -q --no-install-recommends rsync bash coreutils
            apt-get clean
            rm -rf /var/lib/apt/lists/*
            command -v bash rsync chown chmod
        "
    docker commit \
        --change 'CMD ["bash"]' \
        --change 'LABEL org.opencontainers.image.description="local gitlab-ci-local helper: debian + bash + rsync"' \
        "$tmp" "$HELPER_IMAGE" >/dev/null
    quiet docker rm -f "$tmp"
    trap - EXIT
fi
