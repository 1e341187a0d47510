# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The migration_check module as a whole, on a real SQLite brain and a scripted Docker: returns and bad input."""

from __future__ import annotations

import io
import sqlite3
import tarfile
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from docker.errors import ImageNotFound, NotFound

from ansible_collections.september.engine.plugins.module_utils import _migration_check
from ansible_collections.september.engine.plugins.modules import migration_check
from engine_testkit.module_runner import ExitJson, FailJson

MIGRATIONS = sorted((Path(__file__).resolve().parents[4] / "tests" / "reference_engine" / "migrations").glob("*.sql"))
RELEASES = {"2.3.0": 5, "2.3.1": 5, "2.4.0": 6, "3.0.0": 8}


class FakeImage:
    def __init__(self, tag):
        self.id = f"sha256:{tag}"
        self.tags = [f"engine:{tag}"]
        self.attrs = {"Config": {"Labels": {"org.opencontainers.image.version": tag}}}
        self.shipped = RELEASES[tag]


class FakeReader:
    """The never-started container that migration_check reads an image's migrations from."""

    def __init__(self, client, image, kwargs):
        self.client, self.image, self.kwargs = client, image, kwargs
        self.removed = False

    def get_archive(self, path):
        if path.rstrip("/") != "/app/migrations":
            raise NotFound(f"Could not find the file {path}")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for file in MIGRATIONS[: self.image.shipped]:
                data = file.read_bytes()
                info = tarfile.TarInfo(f"migrations/{file.name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return iter([buffer.getvalue()]), {"name": "migrations", "mode": 2147484141}

    def start(self):
        raise AssertionError("migration_check must never start the container it reads migrations from")

    def remove(self, force=False):
        self.removed = True


class FakeDocker:
    def __init__(self):
        self.images = self
        self.containers = self
        self.readers = []

    def get(self, ref):
        tag = ref.rpartition(":")[2].replace("sha256:", "")
        if tag not in RELEASES:
            raise ImageNotFound(f"No such image: {ref}")
        return FakeImage(tag)

    def create(self, image, **kwargs):
        reader = FakeReader(self, self.get(image), kwargs)
        self.readers.append(reader)
        return reader


@pytest.fixture
def docker(monkeypatch):
    fake = FakeDocker()
    monkeypatch.setattr(_migration_check, "docker_client", lambda params: fake)
    return fake


def make_brain(path: Path, applied: int = 5, record: str = "table") -> Path:
    conn = sqlite3.connect(path)
    for file in MIGRATIONS[:applied]:
        conn.executescript(file.read_text(encoding="utf-8"))
    if record == "table":
        conn.execute("CREATE TABLE engine_schema_migrations (version TEXT PRIMARY KEY, name TEXT)")
        conn.executemany(
            "INSERT INTO engine_schema_migrations VALUES (?, ?)", [(f.name[:4], f.stem) for f in MIGRATIONS[:applied]]
        )
    elif record == "user_version":
        conn.execute(f"PRAGMA user_version = {applied}")
    conn.commit()
    conn.close()
    return path


def run(args: dict, check_mode: bool = False) -> dict:
    if check_mode:
        args = dict(args, _ansible_check_mode=True)
    with patch_module_args(args), pytest.raises((ExitJson, FailJson)) as caught:
        migration_check.main()
    result = caught.value.args[0]
    result["failed"] = isinstance(caught.value, FailJson)
    return result


@pytest.fixture
def brain(tmp_path):
    return make_brain(tmp_path / "brain.sqlite")


def test_minor_upgrade_with_an_additive_migration(docker, brain):
    before = brain.read_bytes()
    result = run(dict(path=str(brain), target_image="engine:2.4.0", current_image="engine:2.3.0"))
    assert not result["failed"] and result["changed"] is False
    migration = result["migration"]
    assert migration["applied"] == ["0001", "0002", "0003", "0004", "0005"]
    assert migration["shipped"][-1] == "0006_episode_tags"
    assert [(p["name"], p["classification"]) for p in migration["pending"]] == [("0006_episode_tags", "additive")]
    assert (migration["bump"], migration["rollback_strategy"]) == ("minor", "brain_restore")
    assert migration["is_forward_only"] and not migration["is_destructive"] and not migration["is_downgrade"]
    assert migration["boot_test"] is None
    assert migration["brain_path"] == str(brain)
    assert brain.read_bytes() == before
    assert [reader.removed for reader in docker.readers] == [True]
    assert docker.readers[0].kwargs["network_disabled"] is True


def test_check_mode_reports_the_same(docker, brain):
    args = dict(path=str(brain), target_image="engine:3.0.0", current_image="engine:2.3.0")
    normal, checked = run(args), run(args, check_mode=True)
    assert normal == checked
    assert checked["migration"]["is_destructive"] and checked["migration"]["snapshot_retention_days"] == 7


def test_patch_without_migration_and_unknown_current(docker, brain):
    migration = run(dict(path=str(brain), target_image="engine:2.3.1", current_image="engine:2.3.0"))["migration"]
    assert (migration["bump"], migration["rollback_strategy"], migration["pending"]) == ("patch", "image", [])
    migration = run(dict(path=str(brain), target_image="engine:2.3.1"))["migration"]
    assert migration["current_image"] is None and migration["bump"] is None
    assert migration["rollback_strategy"] == "image"


def test_same_image_changes_nothing(docker, brain):
    migration = run(dict(path=str(brain), target_image="engine:2.3.0", current_image="engine:2.3.0"))["migration"]
    assert migration["rollback_strategy"] == "none" and migration["bump"] == "none"


def test_user_version_source(docker, tmp_path):
    brain = make_brain(tmp_path / "uv.sqlite", applied=5, record="user_version")
    migration = run(dict(path=str(brain), target_image="engine:2.4.0", migrations_source="user_version"))["migration"]
    assert migration["applied"] == ["0001", "0002", "0003", "0004", "0005"]
    assert [p["name"] for p in migration["pending"]] == ["0006_episode_tags"]


def test_downgrade(docker, tmp_path):
    brain = make_brain(tmp_path / "b.sqlite", applied=6)
    migration = run(dict(path=str(brain), target_image="engine:2.3.0", current_image="engine:2.4.0"))["migration"]
    assert migration["is_downgrade"] and migration["not_shipped"] == ["0006"]
    assert migration["bump"] == "downgrade"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (dict(target_image="engine:9.9.9"), "Image 'engine:9.9.9' is not present on this Docker host"),
        (dict(target_image="engine:2.4.0", migrations_dir="/app/nope"), "has no /app/nope: set migrations_dir"),
        (dict(target_image="engine:2.4.0", migrations_dir="app/migrations"), "migrations_dir must be an absolute"),
        (dict(target_image="engine:2.4.0", boot_test=True), "boot_test needs the current image"),
        (dict(target_image="engine:2.4.0", boot_timeout=0), "boot_timeout must be 1 second or more"),
        (dict(target_image="engine:2.4.0", migrations_table="nope"), "The brain has no table 'nope'"),
        (dict(target_image="engine:2.4.0", migrations_column="nope"), "Check migrations_column"),
        (
            dict(target_image="engine:2.4.0", current_image="engine:1.0.0", boot_test=True),
            "Image 'engine:1.0.0' is not present",
        ),
    ],
)
def test_bad_input(docker, brain, args, message):
    before = brain.read_bytes()
    result = run(dict(args, path=str(brain)))
    assert result["failed"], result
    assert message in result["msg"]
    assert brain.read_bytes() == before
    assert all(reader.removed for reader in docker.readers)


def test_a_brain_that_is_not_sqlite(docker, tmp_path):
    fake = tmp_path / "brain.sqlite"
    fake.write_text("definitely not a database\n")
    result = run(dict(path=str(fake), target_image="engine:2.4.0"))
    assert result["failed"] and "is not an SQLite database" in result["msg"]


def test_a_missing_brain(docker, tmp_path):
    result = run(dict(path=str(tmp_path / "none.sqlite"), target_image="engine:2.4.0"))
    assert result["failed"] and "There is no brain at" in result["msg"]


def test_locate_options_are_exclusive(docker, brain):
    result = run(dict(path=str(brain), volume="v", target_image="engine:2.4.0"))
    assert result["failed"] and "mutually exclusive" in result["msg"]


def test_boot_test_overrides_a_static_image_strategy(docker, brain, monkeypatch):
    seen = {}

    class ScriptedBootTest:
        def __init__(self, client, **kwargs):
            seen.update(kwargs)
            self.warnings = []

        def run(self):
            current = dict(image="engine:2.3.0", is_healthy=False, failure="exited", exit_code=1, message="boom")
            target = dict(image="engine:2.3.1", is_healthy=True, failure="none", exit_code=None, message=None)
            return dict(
                target_healthy=True, image_rollback_works=False, applied_after_target=[], target=target, current=current
            )

    monkeypatch.setattr(_migration_check, "BootTest", ScriptedBootTest)
    result = run(
        dict(
            path=str(brain),
            target_image="engine:2.3.1",
            current_image="engine:2.3.0",
            boot_test=True,
            env={"PROVIDER_TOKEN": "s3cret"},
        )
    )
    migration = result["migration"]
    assert migration["rollback_strategy"] == "brain_restore"
    assert any("an image-only rollback does not work" in w for w in migration["warnings"])
    assert seen["api_key_env"] == "ENGINE_API_KEY" and len(seen["api_key"]) >= 24
    assert seen["api_key"] not in repr(result)
    assert seen["env"] == {"PROVIDER_TOKEN": "s3cret"}
    assert seen["brain_file"] == "brain.sqlite" and seen["data_dir"] == "/data"
