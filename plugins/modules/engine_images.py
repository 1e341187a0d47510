#!/usr/bin/python
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: engine_images
short_description: Keep the last versions of each Engine image on a Docker host, and every image a rollback needs
version_added: 0.4.0
description:
  - Per repository, orders the local images by version and keeps the newest O(keep) versions; older ones are
    removed, unless something may still need them.
  - Never removes an image that a container uses (running or stopped), that an Engine's recorded rollback names
    (container labels, a Compose project's C(.september-engine.json)), or that O(protect) lists; such images are
    returned in RV(images.protected) with the reason.
  - Only whole semantic-version tags (C(2.3.0), C(v2.3.0), C(2.4.0-rc.1)) are versions. Other tags (C(latest),
    C(2.4), C(stable)) and the images that carry one are never removed (RV(images.skipped)). An image known in the
    repository only by digest is ordered by its C(org.opencontainers.image.version) label.
  - Removes reference by reference in the repository, never forced; references of other repositories to the same
    image are left alone. Docker refusing a removal is reported in RV(images.refused) and as a warning, not as a
    failure.
author:
  - September Engine maintainers (@september-engine)
options:
  repositories:
    description:
      - Repositories to apply retention to, without tag (C(engine), C(registry.example.com/september-engine)).
      - By default, the repositories of every Engine on the Docker host, and of what their rollbacks record. A
        container is an Engine when a volume named O(volume_prefix)C(*) is mounted at O(data_dir), when it carries
        the collection's C(io.september.engine.*) labels, or when it is a Compose service named in
        O(compose_services).
    type: list
    elements: str
  keep:
    description: How many versions to keep per repository, the newest first (at least 1).
    type: int
    default: 5
  protect:
    description:
      - Images never removed, as references (C(engine:2.3.0), C(engine@sha256:...)) or image ids (C(sha256:...),
        or 12 hex digits or more).
    type: list
    elements: str
    default: []
  compose_dirs:
    description:
      - More Compose project folders whose C(.september-engine.json) records a rollback, for projects that have no
        container at the moment. The folders of the Compose containers on the host are always read.
    type: list
    elements: path
    default: []
  compose_services:
    description: Compose services that are Engines (to find the repositories when O(repositories) is not given).
    type: list
    elements: str
    default: [engine]
  volume_prefix:
    description: Name prefix of the per-user Engines' data volumes (to find the repositories).
    type: str
    default: engine-data-
  data_dir:
    description: Where the Engines' brain volume is mounted in their containers.
    type: str
    default: /data
  previous_suffix:
    description: Name suffix of the kept previous container of a per-user Engine (for the reason reported).
    type: str
    default: --previous
extends_documentation_fragment:
  - september.engine._attributes
  - september.engine._attributes.ACTIONGROUP_ENGINE
  - september.engine._docker
attributes:
  check_mode:
    support: full
    details:
      - Returns the plan (kept, removed, protected, skipped and why) and removes nothing.
  diff_mode:
    support: full
    details:
      - Before and after lists of the references per repository.
  idempotent:
    support: full
notes:
  - Runs on the Docker host; run it once per Docker host (the role M(september.engine.engine_image_retention)
    does), not once per Engine.
  - The Compose state files are read on the Docker host; run as a user that can read them (they are mode 0600).
  - See docs/modules.md in the collection for what protects an image.
seealso:
  - module: september.engine.engine_image
  - module: september.engine.engine_preflight
"""

EXAMPLES = r"""
- name: Keep the last 5 versions of every Engine image on this Docker host
  september.engine.engine_images:
  register: engine_images_kept

- name: Plan only, for one repository, keeping 3 versions and a release the team still tests against
  september.engine.engine_images:
    repositories:
      - registry.example.com/september-engine
    keep: 3
    protect:
      - registry.example.com/september-engine:2.3.1
  check_mode: true
  register: engine_images_plan

- name: Say what was removed
  ansible.builtin.debug:
    msg: "{{ item.key }}: removed {{ item.value.removed | join(', ') or 'nothing' }}"
  loop: "{{ engine_images_kept.images | dict2items }}"
  loop_control:
    label: "{{ item.key }}"
"""

RETURN = r"""
images:
  description: Per repository (as given, or as found), what retention kept, removed, protected and skipped.
  returned: success
  type: dict
  sample:
    engine:
      kept: ["engine:2.9.0", "engine:2.8.0", "engine:2.7.0", "engine:2.6.0", "engine:2.5.0"]
      removed: ["engine:2.2.0"]
      protected:
        - ref: engine:2.3.0
          id: sha256:8d8eec945511c1b9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c
          version: 2.3.0
          why: "rollback of engine-u042: label io.september.engine.previous-image-id"
      skipped:
        - ref: engine:latest
          why: "not a version tag: left alone"
      refused: []
  contains:
    kept:
      description: References of the newest O(keep) versions, newest first.
      type: list
      elements: str
      returned: always
    removed:
      description: References removed (in check mode, that would be removed).
      type: list
      elements: str
      returned: always
    protected:
      description: Older images kept all the same, each with C(ref), C(id), C(version) and C(why) (every reason).
      type: list
      elements: dict
      returned: always
    skipped:
      description: References that are not versions, left alone, each with C(ref) and C(why).
      type: list
      elements: dict
      returned: always
    refused:
      description: References Docker refused to remove (or that moved since the plan), each with C(ref) and C(why).
      type: list
      elements: dict
      returned: always
repositories:
  description: The repositories considered, as given in O(repositories) or as found from the Engines.
  returned: success
  type: list
  elements: str
  sample: ["engine"]
actions:
  description: The removals done (in check mode, planned), one per reference.
  returned: success
  type: list
  elements: str
  sample: ["remove engine:2.2.0 (sha256:417a3c070094)"]
"""

from ansible_collections.september.engine.plugins.module_utils._docker import (
    docker_argument_spec,
    docker_client,
)
from ansible_collections.september.engine.plugins.module_utils._images import ImageRetention, images_argument_spec
from ansible_collections.september.engine.plugins.module_utils._module import EngineModule


def main() -> None:
    argument_spec = images_argument_spec()
    argument_spec.update(docker_argument_spec())
    module = EngineModule(argument_spec, docker=True)
    module.run(lambda: ImageRetention(docker_client(module.params), module.params, module.check_mode,
                                      module.warn).run())


if __name__ == "__main__":
    main()
