# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What upgrading a brain to a target image would do: read the brain and the image, classify, optionally boot-test.

Used by migration_check (the whole report) and engine_preflight (the upgrade's gates).
"""

from __future__ import annotations

import secrets

from ansible_collections.september.engine.plugins.module_utils._boot_test import BootTest
from ansible_collections.september.engine.plugins.module_utils._brain import (
    ReadonlyBrain,
    applied_migrations,
    locate_brain,
)
from ansible_collections.september.engine.plugins.module_utils._docker import (
    ImageNotFound,
    docker_client,
    get_image,
    image_version,
)
from ansible_collections.september.engine.plugins.module_utils._errors import OptionsError
from ansible_collections.september.engine.plugins.module_utils._migrations import (
    assess,
    boot_test_reasons,
    classify_migrations,
    compare,
    schema_statements,
    shipped_migrations,
)


class MigrationCheck:
    """Reads the brain and the target image, classifies what would run, and optionally boot-tests it."""

    def __init__(self, params: dict, hide=None, client=None):
        """`params`: migration_check's options; `hide(value)` keeps a secret out of the output (no_log_values)."""
        self.params = params
        self.hide = hide or (lambda value: None)
        self.client = client
        if not self.params["migrations_dir"].startswith("/"):
            raise OptionsError(
                f"migrations_dir must be an absolute path inside the image (got {self.params['migrations_dir']})."
            )
        if self.params["boot_timeout"] < 1:
            raise OptionsError(f"boot_timeout must be 1 second or more (got {self.params['boot_timeout']}).")

    def _current(self, client, location) -> tuple:
        """(reference, version, image id) of the current image; the reference alone when it is not present here."""
        ref = self.params["current_image"] or location.image
        if not ref:
            return None, None, None
        lookup = ref if self.params["current_image"] else location.image_id or ref
        try:
            image = client.images.get(lookup)
        except ImageNotFound:
            if self.params["boot_test"]:
                get_image(client, ref)  # raises NotFoundError with the fix
            tag = ref.rpartition(":")[2] if "/" not in ref.rpartition(":")[2] else None
            return ref, tag, None
        return ref, image_version(image, self.params["version_label"]), image.id

    def run(self) -> dict:
        p = self.params
        client = self.client or docker_client(p)
        target = get_image(client, p["target_image"])
        location = locate_brain(p, client)
        current_ref, current_version, current_id = self._current(client, location)
        if p["boot_test"] and not current_ref:
            raise OptionsError(
                "boot_test needs the current image: give current_image (or locate the brain with container)."
            )
        with ReadonlyBrain(location.path) as conn:
            applied = applied_migrations(conn, p)
            statements = schema_statements(conn)
        shipped = shipped_migrations(client, p["target_image"], p["migrations_dir"])
        pending = compare(applied, shipped)[0]
        verdicts, problems = classify_migrations(statements, pending)
        report = assess(
            applied=applied,
            shipped=shipped,
            verdicts=verdicts,
            current_image=current_ref,
            current_version=current_version,
            target_image=p["target_image"],
            target_version=image_version(target, p["version_label"]),
            same_image=current_id is not None and current_id == target.id,
        )
        report["warnings"].extend(
            f"Part of the brain's schema could not be copied for the classification ({problem})."
            for problem in problems
        )
        report["boot_test"] = None
        report["boot_test_reasons"] = boot_test_reasons(report)
        report["brain_path"] = location.path
        self._read = (client, location, current_ref)
        if p["boot_test"]:
            self.boot_test(report)
        return report

    def boot_test(self, report: dict) -> dict:
        """Boot the target (then the current image) on a copy of the brain, after run(); fills report["boot_test"]
        (and may turn the rollback strategy to brain_restore). engine_preflight calls it once its gates passed."""
        client, location, current_ref = self._read
        if not current_ref:
            raise OptionsError(
                "boot_test needs the current image: give current_image (or locate the brain with container)."
            )
        report["boot_test"] = self._boot_test(client, location, current_ref, report)
        return report["boot_test"]

    def _boot_test(self, client, location, current_ref: str, report: dict) -> dict:
        p = self.params
        api_key = secrets.token_urlsafe(24)
        self.hide(api_key)
        test = BootTest(
            client,
            brain_path=location.path,
            brain_file=p["brain_file"] if location.source != "path" else "brain.sqlite",
            data_dir=p["data_dir"],
            target_image=p["target_image"],
            current_image=current_ref,
            api_key=api_key,
            api_key_env=p["api_key_env"],
            env=p["env"],
            timeout=p["boot_timeout"],
            work_dir=p["boot_test_dir"],
            read_applied=lambda conn: applied_migrations(conn, p),
        )
        result = test.run()
        report["warnings"].extend(test.warnings)
        if not result["target_healthy"]:
            report["warnings"].append(
                f"{p['target_image']} did not become healthy on a copy of this brain ({result['target']['failure']}: "
                f"{result['target']['message']}): do not upgrade to it."
            )
        if not result["image_rollback_works"] and report["rollback_strategy"] != "brain_restore":
            report["rollback_strategy"] = "brain_restore"
            report["warnings"].append(
                f"{current_ref} did not come back on the copy the target had run on ({result['current']['failure']}): "
                "an image-only rollback does not work, restore the pre-upgrade brain snapshot instead."
            )
        return result
