#!/usr/bin/env bash
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# The Rollback runbook's brain rollback of one per-user Engine, by hand: what bench_rollback.py times next to
# playbooks/rollback.yml. Stop (drain), copy the pre-upgrade snapshot in as the brain, recreate the container on the
# old image with the same configuration, poll /health until it answers 200. No checks, no report, no kept copy of
# the replaced brain: the floor an automated rollback is measured against.
#
# Environment (all required): ENGINE_CONTAINER, ENGINE_VOLUME, ENGINE_IMAGE (the old release), ENGINE_PORT (host
# port on 127.0.0.1), ENGINE_NETWORK, ENGINE_ENV_FILE (holds ENGINE_API_KEY, mode 0600), ENGINE_LABEL_FILE (the
# orchestrator's labels), SNAPSHOT (the pre-upgrade snapshot file); optional DRAIN_TIMEOUT (10), HEALTH_TIMEOUT (60).
set -euo pipefail

: "${ENGINE_CONTAINER:?}" "${ENGINE_VOLUME:?}" "${ENGINE_IMAGE:?}" "${ENGINE_PORT:?}" "${ENGINE_NETWORK:?}"
: "${ENGINE_ENV_FILE:?}" "${ENGINE_LABEL_FILE:?}" "${SNAPSHOT:?}"

# 1. stop the Engine (drain)
docker stop --time "${DRAIN_TIMEOUT:-10}" "$ENGINE_CONTAINER" >/dev/null

# 2. restore the brain from the pre-upgrade snapshot (the stopped Engine checkpointed its WAL)
data="$(docker volume inspect --format '{{ .Mountpoint }}' "$ENGINE_VOLUME")"
cp --reflink=never "$SNAPSHOT" "$data/brain.sqlite"
rm -f "$data/brain.sqlite-wal" "$data/brain.sqlite-shm"

# 3. start the old version with the same configuration
docker rm "$ENGINE_CONTAINER" >/dev/null
docker run --detach --name "$ENGINE_CONTAINER" \
  --env-file "$ENGINE_ENV_FILE" --label-file "$ENGINE_LABEL_FILE" \
  --volume "$ENGINE_VOLUME:/data" --publish "127.0.0.1:$ENGINE_PORT:8000" \
  --restart unless-stopped --network "$ENGINE_NETWORK" \
  "$ENGINE_IMAGE" >/dev/null

# 4. verify: poll /health until 200
deadline=$((SECONDS + ${HEALTH_TIMEOUT:-60}))
until curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$ENGINE_PORT/health"; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "$ENGINE_CONTAINER: not healthy after ${HEALTH_TIMEOUT:-60} s" >&2
    exit 1
  fi
  sleep 0.1
done
