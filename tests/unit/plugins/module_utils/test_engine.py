# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json

import pytest

from ansible_collections.september.engine.plugins.module_utils import _engine
from ansible_collections.september.engine.plugins.module_utils._errors import NotFoundError


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("engine:2.3.0", ("engine", "2.3.0")),
        ("registry.example:5000/september-engine:2.3.1", ("registry.example:5000/september-engine", "2.3.1")),
        ("registry.example:5000/september-engine", ("registry.example:5000/september-engine", None)),
        ("engine@sha256:abc", ("engine", None)),
        ("engine", ("engine", None)),
        (None, (None, None)),
    ],
)
def test_split_repository(ref, expected):
    assert _engine.split_repository(ref) == expected


class _Images:
    def get(self, ref):
        raise _engine.NotFound("no image")


class _Containers:
    def __init__(self, containers):
        self._containers = containers

    def get(self, name):
        if name in self._containers:
            return self._containers[name]
        raise _engine.NotFound(name)

    def list(self, **_kwargs):
        return list(self._containers.values())


class _Client:
    def __init__(self, containers):
        self.containers = _Containers(containers)
        self.images = _Images()


def test_missing_container_says_what_to_fix():
    with pytest.raises(NotFoundError, match="engine_container_name"):
        _engine.resolve_engine(_Client({}), {"deployment": "container", "container_name": "engine-u1"})


def test_missing_compose_dir_says_what_to_fix(tmp_path):
    with pytest.raises(NotFoundError, match="engine_compose_dir"):
        _engine.resolve_engine(_Client({}), {"deployment": "compose", "compose_dir": str(tmp_path / "nope")})


@pytest.mark.parametrize(("rolled_back", "expected"), [(None, "engine:2.3.0"), ("engine:2.4.1", None)])
def test_compose_previous_comes_from_the_state_file(tmp_path, rolled_back, expected):
    record = {"image": "engine:2.4.1", "previous_image": "engine:2.3.0", "rolled_back_from": rolled_back}
    (tmp_path / ".september-engine.json").write_text(json.dumps({"services": {"engine": record}}))
    engine = _engine.resolve_engine(_Client({}), {"deployment": "compose", "compose_dir": str(tmp_path)})
    assert engine["exists"] is False
    assert (engine["previous"] or {}).get("image") == expected
    assert engine["rolled_back_from"] is None  # no container runs what the record says it went back to


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        (None, None),
        ([], None),
        ([{"action": "present", "from": "engine:2.3.0", "to": "engine:2.4.0", "result": "ok"},
          {"action": "present", "from": "engine:2.4.0", "to": "engine:2.4.1", "result": "in progress"}],
         {"action": "present", "from": "engine:2.4.0", "to": "engine:2.4.1", "result": "in progress"}),
    ],
)
def test_compose_last_switch_comes_from_the_state_file(tmp_path, history, expected):
    record = {"image": "engine:2.4.1", "previous_image": "engine:2.4.0"}
    if history is not None:
        record["history"] = history
    (tmp_path / ".september-engine.json").write_text(json.dumps({"services": {"engine": record}}))
    engine = _engine.resolve_engine(_Client({}), {"deployment": "compose", "compose_dir": str(tmp_path)})
    assert engine["compose"]["last_switch"] == expected


class _Ctr:
    def __init__(self, name, labels, image="engine:2.3.1", image_id="sha256:231"):
        self.name, self.id, self.labels = name, name * 3, labels
        self.attrs = {"Image": image_id, "Config": {"Image": image, "Labels": labels},
                      "State": {"Status": "running", "Running": True},
                      "Mounts": [{"Type": "volume", "Name": "e_engine_data", "Destination": "/data"}],
                      "HostConfig": {}, "NetworkSettings": {}}


class _FilteringContainers(_Containers):
    def list(self, filters=None, **_kwargs):
        wanted = dict(item.split("=", 1) for item in (filters or {}).get("label", []))
        return [c for c in self._containers.values() if all(c.labels.get(k) == v for k, v in wanted.items())]


def test_compose_project_comes_from_the_labels_and_the_options(tmp_path):
    (tmp_path / "docker-compose.yml").write_text("services:\n  engine:\n    image: engine:2.3.1\n")
    (tmp_path / "brain.yml").write_text("services:\n  engine:\n    profiles: [engine]\n")
    ctr = _Ctr("e-engine-1", {"com.docker.compose.project": "e", "com.docker.compose.service": "engine",
                              "com.docker.compose.project.working_dir": str(tmp_path),
                              "com.docker.compose.project.config_files": "docker-compose.yml,brain.yml"})
    client = _Client({})
    client.containers = _FilteringContainers({ctr.name: ctr})
    record = {"image": "engine:2.3.1", "previous_image": "engine:2.3.0", "previous_image_id": "sha256:230"}
    (tmp_path / ".september-engine.json").write_text(json.dumps({"services": {"engine": record}}))
    engine = _engine.resolve_engine(client, {"deployment": "compose", "compose_dir": str(tmp_path)})
    compose = engine["compose"]
    assert compose["files"] == [str(tmp_path / "docker-compose.yml"), str(tmp_path / "brain.yml")]
    assert (compose["project"], compose["profiles"], compose["problem"]) == ("e", ["engine"], None)
    assert compose["config_sources"]["files"] == "container"
    assert engine["identity"]["key"] == "volume:e_engine_data"
    assert engine["previous"]["image"] == "engine:2.3.0" and engine["previous"]["image_id"] == "sha256:230"
    named = _engine.resolve_engine(client, {"deployment": "compose", "compose_dir": str(tmp_path),
                                            "compose_file": ["docker-compose.yml"], "project_name": "e"})
    assert named["compose"]["files"] == [str(tmp_path / "docker-compose.yml")]
    assert named["compose"]["config_sources"]["files"] == "option"
    with pytest.raises(NotFoundError, match=r"nope\.yml does not exist"):
        _engine.resolve_engine(client, {"deployment": "compose", "compose_dir": str(tmp_path),
                                        "compose_file": ["nope.yml"]})


def test_compose_project_that_cannot_be_read_is_a_problem_not_a_failure(tmp_path):
    engine = _engine.resolve_engine(_Client({}), {"deployment": "compose", "compose_dir": str(tmp_path)})
    assert engine["compose"]["files"] is None and "No compose file" in engine["compose"]["problem"]


def test_container_previous_carries_the_recorded_image_id():
    ctr = _Ctr("engine-u1", {"io.september.engine.previous-image": "engine:2.3.0",
                             "io.september.engine.previous-image-id": "sha256:230"})
    engine = _engine.resolve_engine(_Client({"engine-u1": ctr}),
                                    {"deployment": "container", "container_name": "engine-u1"})
    assert engine["previous"] == {"container": None, "image": "engine:2.3.0", "image_id": "sha256:230",
                                  "version": "2.3.0", "status": None}


def test_an_engine_whose_container_a_dead_run_renamed_keeps_its_brain_identity():
    # A run died (or is still working) between renaming engine-u1 to engine-u1--previous and creating the new
    # container: the Engine is the kept container's brain, never "container:engine-u1" (docs/faults.md D10).
    kept = _Ctr("engine-u1--previous", {}, image="engine:2.3.0", image_id="sha256:230")
    engine = _engine.resolve_engine(_Client({kept.name: kept}),
                                    {"deployment": "container", "container_name": "engine-u1"})
    assert (engine["exists"], engine["container"], engine["volume"]) == (False, "engine-u1", "e_engine_data")
    assert engine["identity"]["key"] == "volume:e_engine_data"
    assert engine["previous"]["container"] == "engine-u1--previous" and engine["previous"]["version"] == "2.3.0"
    kept.attrs["Mounts"] = [{"Type": "bind", "Source": "/srv/u1/data", "Destination": "/data"}]
    engine = _engine.resolve_engine(_Client({kept.name: kept}),
                                    {"deployment": "container", "container_name": "engine-u1"})
    assert engine["identity"]["key"] == "bind:/srv/u1/data" and engine["volume"] is None
    kept.attrs["Mounts"] = []  # nothing at /data: the name is all there is
    engine = _engine.resolve_engine(_Client({kept.name: kept}),
                                    {"deployment": "container", "container_name": "engine-u1"})
    assert engine["identity"]["key"] == "container:engine-u1"


def test_what_a_rollback_took_the_engine_back_from():
    params = {"deployment": "container", "container_name": "engine-u1"}

    def made(ctr, when):
        ctr.attrs["Created"] = when
        return ctr

    # A rollback that created the container labels it.
    back = made(_Ctr("engine-u1", {"io.september.engine.rolled-back-from": "engine:2.4.0"}, image="engine:2.3.0"),
                "2026-12-01T10:00:00.5Z")
    assert _engine.resolve_engine(_Client({back.name: back}), params)["rolled_back_from"] == "engine:2.4.0"
    # A rollback that put the kept container back (the upgrade's own): the container it kept as failed was made
    # after it. The put-back container's labels tell of the switch that made IT (from 2.2.0), long undone: a
    # second rollback must not take them for where to go back to (it went on to 2.2.0).
    put_back = made(_Ctr("engine-u1", {"io.september.engine.previous-image": "engine:2.2.0",
                                       "io.september.engine.previous-image-id": "sha256:220"}, image="engine:2.3.0"),
                    "2026-11-01T10:00:00Z")
    failed = made(_Ctr("engine-u1--failed", {}, image="engine:2.4.1"), "2026-12-01T10:00:00.123456789Z")
    engine = _engine.resolve_engine(_Client({put_back.name: put_back, failed.name: failed}), params)
    assert engine["rolled_back_from"] == "engine:2.4.1" and engine["previous"] is None
    # A failed container older than the container is an earlier rollback's, left behind: it tells nothing.
    made(failed, "2026-10-01T10:00:00Z")
    engine = _engine.resolve_engine(_Client({put_back.name: put_back, failed.name: failed}), params)
    assert engine["rolled_back_from"] is None and engine["previous"]["image"] == "engine:2.2.0"
    never = _Ctr("engine-u1", {}, image="engine:2.3.0")
    assert _engine.resolve_engine(_Client({never.name: never}), params)["rolled_back_from"] is None


def test_a_compose_record_of_a_rollback_counts_while_the_service_runs_what_it_says(tmp_path):
    (tmp_path / "docker-compose.yml").write_text("services:\n  engine:\n    image: engine:2.3.0\n")
    ctr = _Ctr("e-engine-1", {"com.docker.compose.project": "e", "com.docker.compose.service": "engine",
                              "com.docker.compose.project.working_dir": str(tmp_path)}, image="engine:2.3.0")
    client = _Client({})
    client.containers = _FilteringContainers({ctr.name: ctr})
    record = {"image": "engine:2.3.0", "previous_image": "engine:2.3.0", "rolled_back_from": "engine:2.4.0"}
    (tmp_path / ".september-engine.json").write_text(json.dumps({"services": {"engine": record}}))
    params = {"deployment": "compose", "compose_dir": str(tmp_path)}
    assert _engine.resolve_engine(client, params)["rolled_back_from"] == "engine:2.4.0"
    ctr.attrs["Config"]["Image"] = "engine:2.6.0"  # the project edited by hand since
    assert _engine.resolve_engine(client, params)["rolled_back_from"] is None
