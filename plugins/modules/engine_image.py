#!/usr/bin/python
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: engine_image
short_description: Make sure an Engine image is present on the Docker host before any downtime
version_added: 0.1.0
description:
  - Makes sure an image is present on the Docker host, pulling it when it is not (O(pull=missing)), every time
    (O(pull=always)) or never (O(pull=never)).
  - A failed pull fails with what it means (the tag does not exist, the registry is unreachable, access refused) and
    the daemon's own message.
  - A reference without a tag or digest is refused.
author:
  - September Engine maintainers (@september-engine)
options:
  name:
    description:
      - Full image reference with its tag or digest, for example C(engine:2.3.1),
        C(registry.example.com/september-engine:2.3.1) or C(registry.example.com/september-engine@sha256:...).
    type: str
    required: true
  pull:
    description:
      - V(missing) pulls only when the image is not present locally.
      - V(always) pulls every time (a moved tag is fetched again); it reports a change when the image id changed.
      - V(never) only checks that the image is present, and fails when it is not.
    type: str
    choices: [missing, always, never]
    default: missing
  state:
    description: V(present) is the only state; this module never removes images.
    type: str
    choices: [present]
    default: present
  registry_username:
    description:
      - User name for the registry of O(name), when it needs credentials. Without it, the Docker daemon's own
        credentials (C(docker login) on the host) apply.
    type: str
  registry_password:
    description: Password or token for O(registry_username). Never returned, never logged.
    type: str
extends_documentation_fragment:
  - september.engine._attributes
  - september.engine._attributes.ACTIONGROUP_ENGINE
  - september.engine._docker
  - september.engine._lock
attributes:
  check_mode:
    support: full
    details:
      - Predicts the pull (RV(image.actions)) and pulls nothing.
  diff_mode:
    support: full
    details:
      - Before and after presence and id of the image.
  idempotent:
    support: partial
    details:
      - With O(pull=always) every run pulls, and check mode reports a change (what the registry holds is not known
        without pulling).
notes:
  - Runs on the Docker host. The pull is made by the Docker daemon, through its proxy and registry settings.
  - See docs/modules.md in the collection for why the rollout pulls first.
seealso:
  - module: september.engine.engine_container
"""

EXAMPLES = r"""
- name: Pull the target image before any Engine stops (a missing tag fails here)
  september.engine.engine_image:
    name: "{{ engine_image_repository }}:{{ engine_target_version }}"
  register: engine_target_image

- name: Pull from a private registry
  september.engine.engine_image:
    name: registry.example.com/september-engine:2.3.1
    registry_username: "{{ vault_registry_user }}"
    registry_password: "{{ vault_registry_token }}"

- name: Only check that the image was loaded on this host (air-gapped)
  september.engine.engine_image:
    name: engine:2.3.1
    pull: never
  register: engine_local_image
  failed_when: not engine_local_image.image.present
"""

RETURN = r"""
image:
  description: The image.
  returned: always
  type: dict
  contains:
    name:
      description: The reference as given in O(name).
      type: str
      returned: always
      sample: engine:2.3.1
    id:
      description: The image id, null when it is not present (in check mode, before a predicted pull).
      type: str
      returned: always
      sample: sha256:ab0a7ee0cc7a2c1b9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c
    version:
      description: The image's C(org.opencontainers.image.version) label (else its tag), or null.
      type: str
      returned: always
      sample: 2.3.1
    pulled:
      description: Whether this run pulled the image (never in check mode).
      type: bool
      returned: always
      sample: false
    present:
      description: Whether the image is present on the Docker host now (in check mode, before a predicted pull).
      type: bool
      returned: always
      sample: true
    actions:
      description: What was done, or would be done in check mode (C(pull <name>)); empty when nothing.
      type: list
      elements: str
      returned: always
      sample: ["pull engine:2.3.1"]
"""

from ansible_collections.september.engine.plugins.module_utils._container import EngineImage
from ansible_collections.september.engine.plugins.module_utils._docker import (
    docker_argument_spec,
    docker_client,
)
from ansible_collections.september.engine.plugins.module_utils._lock import lock_argument_spec
from ansible_collections.september.engine.plugins.module_utils._module import EngineModule


def main() -> None:
    argument_spec = dict(
        name=dict(type="str", required=True),
        pull=dict(type="str", choices=["missing", "always", "never"], default="missing"),
        state=dict(type="str", choices=["present"], default="present"),
        registry_username=dict(type="str"),
        registry_password=dict(type="str", no_log=True),
    )
    argument_spec.update(docker_argument_spec())
    argument_spec.update(lock_argument_spec())
    module = EngineModule(argument_spec, docker=True, required_together=[("registry_username", "registry_password")])
    module.run(lambda: EngineImage(docker_client(module.params), module.params, module.check_mode).run(), locked=True)


if __name__ == "__main__":
    main()
