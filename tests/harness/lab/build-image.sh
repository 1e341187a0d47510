#!/usr/bin/env bash
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# The lab's Docker host image: a Debian bookworm root filesystem (debootstrap, as bootstrap.sh builds the
# reference Engine's base image) with dockerd, sshd, Python and the Docker SDK, imported with `docker import`.
#
#   tests/harness/lab/build-image.sh [--force]
#
# Built once and kept: the image carries the hash of its recipe (this script, the entrypoint, the sshd
# configuration, the lab-sshd / lab-dockerd fault scripts, the package list and the Compose v2 plugin copied in, if any) in the label
# io.september.lab.recipe, and is rebuilt only when that hash changes (or with --force).
#
# Environment: LAB_IMAGE (localhost/september-engine-dockerhost:bookworm), DEBIAN_MIRROR,
# DEBOOTSTRAP_CACHE (.deb cache shared with apt: /var/cache/apt/archives when writable).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_IMAGE=${LAB_IMAGE:-localhost/september-engine-dockerhost:bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
RECIPE_LABEL=io.september.lab.recipe
# dockerd + containerd + runc (docker.io), Compose v1 (docker-compose, Python), sshd, the modules' Python
# needs (python3, python3-docker: the Docker SDK on the managed node), sqlite3 for assertions, tini as PID 1.
PACKAGES=docker.io,docker-compose,openssh-server,python3,python3-docker,sqlite3,ca-certificates,tini,procps,iproute2
# The Compose v2 CLI plugin, when this machine has one (bootstrap.sh installs Debian's): copied in as is.
COMPOSE_V2_CANDIDATES=(/usr/libexec/docker/cli-plugins/docker-compose /usr/local/lib/docker/cli-plugins/docker-compose)

log() { printf '==> %s\n' "$*"; }
die() { printf 'lab build-image: %s\n' "$*" >&2; exit 1; }

compose_v2=
for candidate in "${COMPOSE_V2_CANDIDATES[@]}"; do
  if [ -x "$candidate" ]; then compose_v2=$candidate; break; fi
done

recipe_hash() {
  {
    cat "$HERE/build-image.sh" "$HERE/entrypoint.sh" "$HERE/sshd_config" "$HERE/lab-sshd.sh" "$HERE/lab-dockerd.sh"
    echo "$PACKAGES"
    if [ -n "$compose_v2" ]; then sha256sum <"$compose_v2"; else echo "no compose v2"; fi
  } | sha256sum | cut -c1-16
}

want=$(recipe_hash)
have=$(docker image inspect --format "{{ index .Config.Labels \"$RECIPE_LABEL\" }}" "$LAB_IMAGE" 2>/dev/null || true)
if [ "${1:-}" != "--force" ] && [ "$have" = "$want" ]; then
  log "lab image: $LAB_IMAGE (present, recipe $want)"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "building $LAB_IMAGE with debootstrap needs root"
command -v debootstrap >/dev/null || {
  command -v apt-get >/dev/null || die "debootstrap is missing and there is no apt-get to install it"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}

cache=${DEBOOTSTRAP_CACHE:-/var/cache/apt/archives}
cache_args=()
if [ -d "$cache" ] && [ -w "$cache" ]; then cache_args=(--cache-dir="$cache"); fi

rootfs=$(mktemp -d /tmp/september-lab-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
buildlog=/tmp/september-lab-debootstrap.log
log "building $LAB_IMAGE (recipe $want${have:+, was $have}) with debootstrap; log: $buildlog"
started=$(date +%s)
debootstrap --variant=minbase "${cache_args[@]}" --include="$PACKAGES" \
  bookworm "$rootfs" "$DEBIAN_MIRROR" >"$buildlog" 2>&1 \
  || { tail -20 "$buildlog" >&2; die "debootstrap failed (log: $buildlog)"; }

install -m 0755 "$HERE/entrypoint.sh" "$rootfs/usr/local/sbin/lab-entrypoint"
install -m 0755 "$HERE/lab-sshd.sh" "$rootfs/usr/local/sbin/lab-sshd"
install -m 0755 "$HERE/lab-dockerd.sh" "$rootfs/usr/local/sbin/lab-dockerd"
install -m 0644 "$HERE/sshd_config" "$rootfs/etc/ssh/sshd_config.d/lab.conf"
if [ -n "$compose_v2" ]; then
  install -D -m 0755 "$compose_v2" "$rootfs/usr/libexec/docker/cli-plugins/docker-compose"
  log "Compose v2 plugin copied in from $compose_v2"
fi
# No host key in the image (each lab host makes its own at start), no root password (key only).
rm -f "$rootfs"/etc/ssh/ssh_host_*
chroot "$rootfs" usermod -p '*' root
rm -rf "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* \
  "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
echo "lab-dockerhost" >"$rootfs/etc/hostname"

old_id=$(docker image inspect --format '{{.Id}}' "$LAB_IMAGE" 2>/dev/null || true)
tar -C "$rootfs" -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c "LABEL $RECIPE_LABEL=$want" \
  -c 'EXPOSE 22' \
  -c 'ENTRYPOINT ["/usr/bin/tini", "-g", "--", "/usr/local/sbin/lab-entrypoint"]' \
  - "$LAB_IMAGE" >/dev/null
# The image this one replaces (now untagged) goes, unless a lab host still runs on it.
if [ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect --format '{{.Id}}' "$LAB_IMAGE")" ]; then
  docker image rm "$old_id" >/dev/null 2>&1 || true
fi
log "lab image: $LAB_IMAGE (built in $(( $(date +%s) - started ))s, recipe $want," \
  "$(docker image inspect --format '{{.Size}}' "$LAB_IMAGE" | awk '{printf "%d MB", $1/1000000}'))"
