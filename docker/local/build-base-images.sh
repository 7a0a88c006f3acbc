#!/usr/bin/env bash
# Local stand-ins for the images that a registry would give, made on this machine:
#   $PYTHON_IMAGE  Debian bookworm + Python 3.11 (venv, passwd) + CPU PyTorch 2.13.0: the Dockerfile's BASE_IMAGE
#   $REDIS_IMAGE   Debian bookworm + Debian's redis-server 7.0, run as the redis user, data in /data
#   $DEBIAN_IMAGE  Debian bookworm, as debian:bookworm-slim is (apt, passwd): the base of docker/s3 and docker/lb
# Each is a debootstrap root file system given to `docker import`. An image that already
# exists is kept (delete it to rebuild). Needs root, debootstrap and a running Docker engine.
#   docker/local/build-base-images.sh [WORKDIR]
set -euo pipefail

PYTHON_IMAGE=${PYTHON_IMAGE:-atnl-local/python:3.11-torch2.13.0-cpu}
REDIS_IMAGE=${REDIS_IMAGE:-atnl-local/redis:7-bookworm}
DEBIAN_IMAGE=${DEBIAN_IMAGE:-atnl-local/debian:bookworm}
SUITE=bookworm
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mkdir -p "${1:-var/compose-test/base}" && cd "${1:-var/compose-test/base}" && pwd)
# The archive this host's apt uses (debootstrap's default when none is configured).
MIRROR=$(grep -hoE '^(URIs:|deb) +[a-z]+://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null |
    head -1 | awk '{print $2}' || true)

exists() { docker image inspect "$1" >/dev/null 2>&1; }

# bootstrap DIR PACKAGES: a minimal bookworm root file system with PACKAGES, without apt's caches and docs.
bootstrap() {
    rm -rf "$1"
    debootstrap --variant=minbase --include="$2" --cache-dir="$WORK/debs" "$SUITE" "$1" $MIRROR >"$1.log" 2>&1 ||
        { tail -20 "$1.log"; return 1; }
    rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/* "$1"/usr/share/doc/* "$1"/usr/share/man/* \
        "$1"/usr/share/info/* "$1"/var/log/*.log "$1"/var/cache/debconf/*-old
    : >"$1/etc/resolv.conf" # docker gives each container its own
}

# import DIR IMAGE CHANGES...: the root file system as an image, with Dockerfile-style settings.
import() {
    local dir=$1 image=$2
    shift 2
    local changes=()
    for change in "$@"; do changes+=(--change "$change"); done
    tar -C "$dir" --numeric-owner -c . | docker import "${changes[@]}" --message "debootstrap $SUITE, $(date -u +%F)" - "$image" >/dev/null
    rm -rf "$dir" "$dir.log"
    echo "built $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}'))"
}

mkdir -p "$WORK/debs"

if exists "$PYTHON_IMAGE"; then
    echo "kept $PYTHON_IMAGE"
else
    root=$WORK/python-rootfs
    bootstrap "$root" python3,python3-venv,passwd
    # torch (the CPU wheel that `pip install torch==2.13.0` takes from this machine) and its pinned
    # dependencies, into the system site-packages, as the CUDA base has torch in its Python.
    site=$root/usr/local/lib/python3.11/dist-packages
    pip install --quiet --no-deps --target "$site" -r "$HERE/torch-requirements.txt"
    rm -rf "$site/bin"
    # pip in a build step goes through this machine's TLS; trust what the host trusts.
    install -D -m 644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    import "$root" "$PYTHON_IMAGE" \
        'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        'ENV LANG=C.UTF-8' \
        'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        'CMD ["python3"]'
fi

if exists "$REDIS_IMAGE"; then
    echo "kept $REDIS_IMAGE"
else
    root=$WORK/redis-rootfs
    bootstrap "$root" redis-server
    install -d -o "$(chroot "$root" id -u redis)" -g "$(chroot "$root" id -g redis)" "$root/data"
    install -m 755 "$HERE/redis-entrypoint.sh" "$root/usr/local/bin/redis-entrypoint"
    import "$root" "$REDIS_IMAGE" \
        'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        'USER redis' \
        'WORKDIR /data' \
        'VOLUME /data' \
        'EXPOSE 6379' \
        'ENTRYPOINT ["/usr/local/bin/redis-entrypoint"]' \
        'CMD ["redis-server"]'
fi

if exists "$DEBIAN_IMAGE"; then
    echo "kept $DEBIAN_IMAGE"
else
    root=$WORK/debian-rootfs
    bootstrap "$root" passwd
    # As Debian's own images: a package's install scripts start no service in a build step.
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    import "$root" "$DEBIAN_IMAGE" \
        'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        'ENV LANG=C.UTF-8' \
        'CMD ["bash"]'
fi
