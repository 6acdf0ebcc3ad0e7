# The kasctl build image: kas, Isar's host tools, and kasctl's entrypoint.
#
# Built by `kasctl image build`, which prepares the context: this file,
# container/, and wheels/ holding kas and kasctl (pip inside the build has
# no working HTTPS behind TLS-intercepting proxies, so nothing is fetched
# from PyPI here; Debian packages come over plain HTTP from the mirror).
ARG BASE_IMAGE=debian:trixie
FROM ${BASE_IMAGE}

ARG DEBIAN_MIRROR=http://deb.debian.org/debian
ARG KASCTL_VERSION=unknown
ARG KAS_VERSION=5.5

# kas runs bitbake with LC_ALL=en_US.UTF-8, so that locale must exist.
ENV LANG=en_US.UTF-8 DEBIAN_FRONTEND=noninteractive

# Isar's host dependencies (privileged and rootless), and kas's own Python
# dependencies from Debian (kconfiglib and newt: `kas menu`), so only kas itself
# comes from a wheel. iproute2: sbuild's unshare backend runs `ip link set lo
# up` in every package build's namespace (sbuild-usernsexec).
RUN if [ -f /etc/apt/sources.list.d/debian.sources ]; then \
        sed -i "s#^URIs: .*#URIs: ${DEBIAN_MIRROR}#" /etc/apt/sources.list.d/debian.sources; \
    elif ! grep -qs '^deb ' /etc/apt/sources.list; then \
        echo "deb ${DEBIAN_MIRROR} trixie main" > /etc/apt/sources.list; \
    fi \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
        python3 python3-yaml python3-distro python3-jsonschema python3-git \
        python3-colorlog python3-kconfiglib python3-newt python3-gnupg python3-pip \
        git openssh-client ca-certificates locales tzdata less vim-tiny file \
        mmdebstrap sbuild schroot debootstrap uidmap acl bubblewrap \
        qemu-user-static binfmt-support reprepro dpkg-dev quilt \
        parted dosfstools mtools e2fsprogs fdisk gdisk zstd xz-utils \
        bzip2 unzip gettext-base sudo gosu procps iproute2 \
 && rm -rf /var/lib/apt/lists/* \
 && sed -i 's/^# *\(en_US.UTF-8 UTF-8\)/\1/' /etc/locale.gen && locale-gen

COPY wheels/ /tmp/wheels/
RUN pip3 install --no-index --no-deps --break-system-packages \
        /tmp/wheels/kas-${KAS_VERSION}-*.whl /tmp/wheels/kasctl-*.whl \
 && rm -rf /tmp/wheels /root/.cache

# The builder user; its ids and sub-id ranges are set at container start by
# the entrypoint, so the image carries none.
RUN useradd --create-home --home-dir /builder --shell /bin/bash builder \
 && sed -i '/^builder:/d' /etc/subuid /etc/subgid

# Locked by default: sudo is a blocker and no binary keeps a setuid/setgid
# bit but newuidmap/newgidmap. Only isar-privileged runs (which are
# --privileged anyway) get the real sudo back, from the entrypoint.
COPY container/sudo-blocked /usr/lib/kasctl/sudo-blocked
# the entrypoint is the installed kasctl.inside.entrypoint itself (one copy in the image)
RUN ln -s "$(python3 -I -c 'import kasctl.inside.entrypoint as m; print(m.__file__)')" \
        /usr/lib/kasctl/entrypoint.py
# Isar's rootfs_cmd against bubblewrap 0.12: see the file for what it changes
# and when it can go. kas runs bitbake with PATH=/usr/sbin:/usr/bin:/sbin:/bin,
# so the wrapper takes bwrap's own place; dpkg-divert keeps the real one.
COPY container/bwrap-merged-usr /usr/lib/kasctl/bwrap-merged-usr
RUN dpkg-divert --local --rename --divert /usr/lib/kasctl/bwrap.real --add /usr/bin/bwrap \
 && install -m 0755 /usr/lib/kasctl/bwrap-merged-usr /usr/bin/bwrap
RUN mv /usr/bin/sudo /usr/lib/kasctl/sudo.real && chmod 0755 /usr/lib/kasctl/sudo.real \
 && install -m 0755 /usr/lib/kasctl/sudo-blocked /usr/bin/sudo \
 && find / -xdev -type f -perm /6000 \
        ! -path /usr/bin/newuidmap ! -path /usr/bin/newgidmap \
        -print -exec chmod ug-s {} + > /usr/lib/kasctl/setid-stripped \
 && echo "${KASCTL_VERSION}" > /usr/lib/kasctl/version

LABEL io.kasctl.version="${KASCTL_VERSION}" io.kasctl.kas-version="${KAS_VERSION}"
WORKDIR /work
ENTRYPOINT ["/usr/bin/python3", "-I", "/usr/lib/kasctl/entrypoint.py"]
