#!/usr/bin/env bash
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Make this machine ready for `make test` and `make demo`. Idempotent, and fast when already done.
#
#   tests/harness/bootstrap.sh [docker|compose|venv|base|images|sanity-pip|lab-image|all]...
#
#   docker      a Docker engine that answers `docker info`, and Docker Compose: v1 (`docker-compose`) and the
#               v2 CLI plugin (`docker compose`, the `compose` step). As root without one: installs Debian's
#               docker.io / docker-compose and starts dockerd.
#   compose     the Compose v2 CLI plugin from Debian's packages (trixie's docker-compose 2.26.x, which holds
#               only a static binary): fetched with apt from a sources list kept apart from the system's,
#               unpacked with dpkg -x, put in the CLI plugin folder. Nothing is installed with dpkg.
#   venv        .venv with requirements-dev.txt (re-installed only when that file changes).
#   base        the reference Engine's base image ($ENGINE_BASE_IMAGE): kept if present, else pulled
#               ($ENGINE_BASE_PULL), else built offline with debootstrap + `docker import`.
#   images      every engine:<tag> of tests/reference_engine/releases.json (docker's cache makes it quick).
#   sanity-pip  ansible-test's pip bootstrap script, for machines that cannot download it.
#   lab-image   the lab's Docker host image (tests/harness/lab: docker.io, sshd, python3 on Debian, built with
#               debootstrap), kept while its recipe is unchanged: the system tests over SSH run on it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHON=${PYTHON:-python3}
VENV=${VENV:-$ROOT/.venv}
ENGINE_BASE_IMAGE=${ENGINE_BASE_IMAGE:-localhost/september-engine-base:bookworm}
ENGINE_BASE_PULL=${ENGINE_BASE_PULL:-python:3.11-slim-bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/september-dockerd.log}
# Compose v2: the Debian suite that ships it as the package docker-compose, and where its CLI plugin goes.
COMPOSE_V2_SUITE=${COMPOSE_V2_SUITE:-trixie}
if [ "$(id -u)" -eq 0 ]; then
  COMPOSE_V2_CACHE=${COMPOSE_V2_CACHE:-/var/cache/september-engine/compose-v2}
  COMPOSE_PLUGIN_DIR=${COMPOSE_PLUGIN_DIR:-/usr/local/lib/docker/cli-plugins}
else
  COMPOSE_V2_CACHE=${COMPOSE_V2_CACHE:-$HOME/.cache/september-engine/compose-v2}
  COMPOSE_PLUGIN_DIR=${COMPOSE_PLUGIN_DIR:-$HOME/.docker/cli-plugins}
fi

log() { printf '==> %s\n' "$*"; }
die() { printf 'bootstrap: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

apt_updated=
apt_install() {
  is_root || die "need root to install $* (or install it yourself)"
  command -v apt-get >/dev/null || die "cannot install $*: no apt-get here; install it yourself"
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  log "installing $* (apt)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Compose v2 from Debian: the docker-compose package of $COMPOSE_V2_SUITE holds the CLI plugin
# usr/libexec/docker/cli-plugins/docker-compose (a static Go binary, it needs only libc). apt reads a sources
# list of its own (and no preferences) and keeps its lists and downloads in $COMPOSE_V2_CACHE, so the system's
# apt state is never touched; the .deb is only unpacked (dpkg -x), never installed.
ensure_compose_v2() {
  if docker compose version >/dev/null 2>&1; then
    log "compose v2: $(docker compose version --short 2>/dev/null) (present)"
    return
  fi
  command -v apt-get >/dev/null && command -v dpkg >/dev/null \
    || die "no 'docker compose' (v2) and no apt-get/dpkg to fetch Debian's: install the Compose v2 plugin yourself"
  local cache=$COMPOSE_V2_CACHE deb version
  mkdir -p "$cache/lists/partial" "$cache/archives/partial"
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [ -r "$keyring" ] || die "cannot verify Debian's $COMPOSE_V2_SUITE packages: $keyring is missing (apt-get install debian-archive-keyring)"
  echo "deb [signed-by=$keyring] $DEBIAN_MIRROR $COMPOSE_V2_SUITE main" >"$cache/sources.list"
  local apt_opts=(
    -o "Dir::Etc::SourceList=$cache/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
    -o "Dir::State::Lists=$cache/lists" -o "Dir::Cache=$cache" -o "Dir::Cache::archives=$cache/archives"
  )
  is_root && apt_opts+=(-o APT::Sandbox::User=root)
  deb=$(ls "$cache"/docker-compose_2.*.deb 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$deb" ]; then
    log "fetching Compose v2 (docker-compose from Debian $COMPOSE_V2_SUITE)"
    apt-get "${apt_opts[@]}" -qq update >/dev/null || die "apt-get update of $COMPOSE_V2_SUITE failed ($DEBIAN_MIRROR)"
    version=$(apt-cache "${apt_opts[@]}" madison docker-compose | awk -F'|' '$2 ~ /^ *2\./ {gsub(/ /, "", $2); print $2; exit}')
    [ -n "$version" ] || die "Debian $COMPOSE_V2_SUITE has no docker-compose 2.x"
    (cd "$cache" && apt-get "${apt_opts[@]}" -qq download "docker-compose=$version" >/dev/null) \
      || die "apt-get download docker-compose=$version failed"
    deb=$(ls "$cache"/docker-compose_2.*.deb | sort -V | tail -n 1)
  fi
  rm -rf "$cache/unpacked" && mkdir -p "$cache/unpacked"
  dpkg -x "$deb" "$cache/unpacked"
  mkdir -p "$COMPOSE_PLUGIN_DIR"
  install -m 0755 "$cache/unpacked/usr/libexec/docker/cli-plugins/docker-compose" "$COMPOSE_PLUGIN_DIR/docker-compose.new"
  mv -f "$COMPOSE_PLUGIN_DIR/docker-compose.new" "$COMPOSE_PLUGIN_DIR/docker-compose"
  rm -rf "$cache/unpacked"
  docker compose version >/dev/null 2>&1 \
    || die "installed $COMPOSE_PLUGIN_DIR/docker-compose but 'docker compose version' does not work"
  log "compose v2: $(docker compose version --short) ($COMPOSE_PLUGIN_DIR/docker-compose, from $(basename "$deb"))"
}

ensure_compose() {
  # v1 stays installed next to v2: the collection detects both, and the Compose tests run against both.
  if ! command -v docker-compose >/dev/null 2>&1; then
    if is_root; then apt_install docker-compose; else log "compose v1: not installed (needs root); v2 only"; fi
  fi
  ensure_compose_v2
}

ensure_docker() {
  if ! command -v dockerd >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then
    apt_install docker.io
  fi
  ensure_compose
  if docker info >/dev/null 2>&1; then
    log "docker engine: $(docker version --format '{{.Server.Version}}' 2>/dev/null) (running)"
    return
  fi
  is_root || die "no Docker engine answers and I am not root: start Docker, or add yourself to the docker group"
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    log "starting docker (systemd)"
    systemctl start docker || true
  fi
  if ! docker info >/dev/null 2>&1; then
    log "starting dockerd in the background (log: $DOCKERD_LOG)"
    # setsid: dockerd must outlive this script and the make that called it.
    setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
  fi
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && { log "docker engine is up"; return; }
    sleep 1
  done
  tail -20 "$DOCKERD_LOG" >&2 || true
  die "the Docker engine did not answer within 60 s (see $DOCKERD_LOG)"
}

ensure_venv() {
  local stamp="$VENV/.requirements.sha256" want
  want=$(cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" | sha256sum | cut -d' ' -f1)
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    log "venv: $VENV (up to date)"
    return
  fi
  if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    apt_install python3-venv
  fi
  log "creating venv $VENV (requirements-dev.txt)"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r "$ROOT/requirements-dev.txt"
  echo "$want" >"$stamp"
}

build_base_with_debootstrap() {
  command -v debootstrap >/dev/null || apt_install debootstrap
  is_root || die "building the base image with debootstrap needs root"
  local rootfs
  rootfs=$(mktemp -d /tmp/september-base-rootfs.XXXXXX)
  # shellcheck disable=SC2064
  trap "rm -rf '$rootfs'" RETURN
  log "no registry answered: building $ENGINE_BASE_IMAGE with debootstrap (about a minute)"
  debootstrap --variant=minbase --include=python3,sqlite3,ca-certificates \
    bookworm "$rootfs" "$DEBIAN_MIRROR" >/tmp/september-debootstrap.log 2>&1 \
    || { tail -20 /tmp/september-debootstrap.log >&2; die "debootstrap failed (log: /tmp/september-debootstrap.log)"; }
  rm -rf "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
  tar -C "$rootfs" -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["/bin/bash"]' - "$ENGINE_BASE_IMAGE" >/dev/null
}

ensure_base_image() {
  if docker image inspect "$ENGINE_BASE_IMAGE" >/dev/null 2>&1; then
    log "base image: $ENGINE_BASE_IMAGE (present)"
    return
  fi
  # The normal path for anyone with a registry: a pulled Debian bookworm Python image.
  if timeout 300 docker pull -q "$ENGINE_BASE_PULL" >/dev/null 2>&1; then
    docker tag "$ENGINE_BASE_PULL" "$ENGINE_BASE_IMAGE"
    log "base image: $ENGINE_BASE_IMAGE (pulled $ENGINE_BASE_PULL)"
    return
  fi
  build_base_with_debootstrap
  log "base image: $ENGINE_BASE_IMAGE (debootstrap)"
}

ensure_images() {
  "$PYTHON" "$ROOT/tests/reference_engine/build.py" --base-image "$ENGINE_BASE_IMAGE"
}

# ansible-test sanity bootstraps pip into its virtual environments with a script it downloads from a
# host that may be unreachable. It looks in its cache first, and runs the script with
# PIP_CONFIG_FILE=/dev/null: our stand-in bootstraps pip from the standard library (ensurepip) and
# then installs what was asked from the package index, naming the system CA bundle explicitly.
ensure_sanity_pip() {
  local cache="$HOME/.ansible/test/cache" version
  version=$("$VENV/bin/python" - <<'EOF'
from ansible_test._internal.python_requirements import get_venv_packages
class _Py:  # the only attribute get_venv_packages reads
    version = "3.11"
print(get_venv_packages(_Py())["pip"])
EOF
)
  local target="$cache/get_pip_${version//./_}.py"
  if [ -s "$target" ] && ! grep -q 'september.engine stand-in' "$target"; then
    log "ansible-test pip bootstrap: $target (a real one, kept)"
    return
  fi
  mkdir -p "$cache"
  cat >"$target.new" <<'EOF'
"""september.engine stand-in for pip's get-pip.py (ansible-test's cached bootstrap script)."""
import ensurepip
import os
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
bundles = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem")
cert = next((path for path in bundles if os.path.exists(path)), None)
# get-pip.py's own flags are not pip's: --no-setuptools / --no-wheel only mean "do not add them".
args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
command = [sys.executable, "-m", "pip", "install"] + (["--cert", cert] if cert else []) + args
sys.exit(subprocess.call(command))
EOF
  if cmp -s "$target.new" "$target"; then
    rm -f "$target.new"
    log "ansible-test pip bootstrap: $target (present)"
  else
    mv "$target.new" "$target"
    log "ansible-test pip bootstrap: $target (stand-in written)"
  fi
}

# The lab's Docker host image (tests/harness/lab): Debian with docker.io, sshd and python3, built with debootstrap
# once and kept while its recipe is unchanged. After ensure_docker: it copies the Compose v2 plugin in.
ensure_lab_image() {
  bash "$ROOT/tests/harness/lab/build-image.sh"
}

main() {
  [ $# -gt 0 ] || set -- all
  for step in "$@"; do
    case "$step" in
      docker) ensure_docker ;;
      compose) ensure_compose ;;
      venv) ensure_venv ;;
      base) ensure_base_image ;;
      images) ensure_images ;;
      sanity-pip) ensure_sanity_pip ;;
      lab-image) ensure_lab_image ;;
      all) ensure_docker; ensure_venv; ensure_base_image; ensure_images; ensure_sanity_pip; ensure_lab_image ;;
      *) die "unknown step '$step' (docker, compose, venv, base, images, sanity-pip, lab-image, all)" ;;
    esac
  done
}

main "$@"
