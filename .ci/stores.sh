# Sourced by the CI scripts: the four engine stores, reached as CI reaches them.
# Needs CI_USER and USER_PATH set by the caller.
CI_UID=$(id -u "$CI_USER")
CI_GID=$(id -g "$CI_USER")
CI_HOME=$(getent passwd "$CI_USER" | cut -d: -f6)
RUNTIME_DIR=/run/user/$CI_UID

# Same clean environment as setup-engines.sh and the tests use.
as_user() {
    setpriv --reuid="$CI_UID" --regid="$CI_GID" --init-groups \
        env -i -C "$CI_HOME" HOME="$CI_HOME" USER="$CI_USER" LOGNAME="$CI_USER" \
        SHELL=/bin/bash PATH="$USER_PATH" XDG_RUNTIME_DIR="$RUNTIME_DIR" "$@"
}
sys_docker() { docker -H unix:///var/run/docker.sock "$@"; }
sys_podman() { podman "$@"; }
usr_podman() { as_user podman "$@"; }
usr_docker() { as_user docker -H "unix://$RUNTIME_DIR/docker.sock" "$@"; }


STORES=(sys_docker sys_podman usr_podman usr_docker)
store_label() {
    case $1 in
        sys_docker) echo "system docker" ;;
        sys_podman) echo "rootful podman" ;;
        usr_podman) echo "rootless podman ($CI_USER)" ;;
        usr_docker) echo "rootless docker ($CI_USER)" ;;
    esac
}
