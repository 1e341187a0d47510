# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""engine_image against the real Docker engine, through real ansible-playbook runs.

No registry is reachable from this machine: a present image is never pulled (pull=missing and never), and a
missing tag fails clearly, naming the image and with the daemon's own error, in check mode too when pull=never.
The tags used for missing images (``engine:0.0.0-ctr-missing-*``) never exist, so nothing is created or removed.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import docker
import docker.errors
import pytest

from engine_testkit.ansible import run_playbook

PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"
PLAYBOOK = PLAYBOOKS / "engine_image.yml"
BAD = PLAYBOOKS / "engine_image_bad.yml"


def missing_tag() -> str:
    return f"engine:0.0.0-ctr-missing-{uuid.uuid4().hex[:8]}"


def absent(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
    except docker.errors.ImageNotFound:
        return True
    return False


@pytest.mark.parametrize("pull", ["missing", "never"])
def test_present_image_is_not_pulled(docker_client, engine_images, pull):
    image = docker_client.images.get("engine:2.3.0")
    run = run_playbook(PLAYBOOK, extra_vars={"img_name": "engine:2.3.0", "img_pull": pull})
    assert run.rc == 0, run.stdout[-4000:] + run.stderr[-2000:]
    first = run.result("Make sure the image is present")["image"]
    assert first["id"] == image.id and first["version"] == "2.3.0"
    assert first["name"] == "engine:2.3.0"


@pytest.mark.parametrize("check_mode", [False, True])
def test_never_with_a_missing_tag_fails_clearly(docker_client, engine_images, check_mode):
    ref = missing_tag()
    run = run_playbook(
        BAD,
        extra_vars={"img_name": ref, "img_pull": "never", "img_check_mode": check_mode,
                    "expected_msg": "not present on this Docker host and pull=never"},
    )
    assert run.rc == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert absent(docker_client, ref)


def test_missing_tag_fails_with_the_daemons_error(docker_client, engine_images):
    ref = missing_tag()
    secret = f"token-{uuid.uuid4().hex}"
    run = run_playbook(
        BAD,
        extra_vars={"img_name": ref, "img_username": "ctr-bot", "img_password": secret,
                    "expected_msg": r"Could not pull image 'engine:0\.0\.0-ctr-missing-\w+': .+\. Docker said: \S+"},
    )
    assert run.rc == 0, run.stdout[-4000:] + run.stderr[-2000:]
    result = run.result("Make sure the image is present")
    assert result["failed"] and not result["changed"]
    assert absent(docker_client, ref)
    assert secret not in run.stdout + run.stderr + json.dumps(run.data)


def test_check_mode_predicts_a_pull_and_pulls_nothing(docker_client, engine_images, tmp_path):
    ref = missing_tag()
    playbook = tmp_path / "predict.yml"
    playbook.write_text(
        f"""---
- name: Predict a pull
  hosts: all
  gather_facts: false
  tasks:
    - name: Predict the pull
      september.engine.engine_image:
        name: {ref}
      check_mode: true
      diff: true
      register: img_predicted

    - name: Predicted, nothing pulled
      ansible.builtin.assert:
        that:
          - img_predicted is changed
          - img_predicted.image.actions == ['pull {ref}']
          - not img_predicted.image.pulled
          - not img_predicted.image.present
          - not img_predicted.diff.before.present
          - img_predicted.diff.after.present
""",
        encoding="utf-8",
    )
    run = run_playbook(playbook)
    assert run.rc == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert absent(docker_client, ref)
