# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The engine_container module as a whole, against an in-memory Docker (the real thing is in tests/system)."""

from __future__ import annotations

import copy
import uuid

import docker.errors
import pytest
import requests.exceptions
from ansible.module_utils import basic

from ansible_collections.september.engine.plugins.module_utils._container import (
    PREVIOUS_IMAGE_ID_LABEL,
    PREVIOUS_IMAGE_LABEL,
    ROLLED_BACK_FROM_LABEL,
)
from ansible_collections.september.engine.plugins.modules import engine_container

NAME = "ctr-u001"
MUTATIONS = ("stop", "rename", "update_container", "create_container_from_config", "start", "remove_container",
             "connect_container_to_network", "tag", "unpause")


def image_attrs(version: str) -> dict:
    return {
        "Id": f"sha256:{version.replace('.', '') * 20}"[:71],
        "RepoTags": [f"engine:{version}"],
        "Config": {
            "Env": ["PATH=/usr/bin:/bin", f"ENGINE_VERSION={version}"],
            "Cmd": ["python3", "-m", "engine.server"],
            "WorkingDir": "/app",
            "ExposedPorts": {"8000/tcp": {}},
            "Labels": {"org.opencontainers.image.version": version},
        },
    }


class FakeImage:
    def __init__(self, attrs):
        self.attrs = attrs
        self.id = attrs["Id"]
        self.tags = list(attrs["RepoTags"])


class FakeContainer:
    def __init__(self, docker_, cid):
        self._docker = docker_
        self.id = cid

    @property
    def attrs(self):
        return copy.deepcopy(self._docker.store[self.id])

    @property
    def name(self):
        return self._docker.store[self.id]["Name"].lstrip("/")

    @property
    def status(self):
        return self._docker.store[self.id]["State"]["Status"]

    @property
    def labels(self):
        return self._docker.store[self.id]["Config"].get("Labels") or {}

    def reload(self):
        pass


class FakeApi:
    def __init__(self, docker_):
        self.d = docker_

    def _call(self, what, *args, **kwargs):
        self.d.calls.append((what, args, kwargs))
        script = self.d.fail.get(what)
        if script:  # a string fails once; a list scripts successive calls (None: succeed)
            message = script.pop(0) if isinstance(script, list) else self.d.fail.pop(what)
            if message:
                raise docker.errors.APIError(f"{what} failed", explanation=message)

    def stop(self, cid, timeout=None):
        self._call("stop", cid, timeout=timeout)
        self.d.store[cid]["State"].update(Status="exited", ExitCode=0)

    def rename(self, cid, name):
        self._call("rename", cid, name)
        if self.d.by_name(name):
            raise docker.errors.APIError("Conflict", explanation=f"name {name} in use")
        self.d.store[cid]["Name"] = "/" + name

    def update_container(self, cid, restart_policy=None):
        self._call("update_container", cid, restart_policy=restart_policy)
        self.d.store[cid]["HostConfig"]["RestartPolicy"] = restart_policy

    def create_container_from_config(self, body, name=None):
        self._call("create_container_from_config", body, name=name)
        image = self.d.images.get(body["Image"])
        body = copy.deepcopy(body)
        host_config = body.pop("HostConfig")
        body.pop("NetworkingConfig", None)
        config = copy.deepcopy(image.attrs["Config"])
        config["Env"] = body.pop("Env", []) + config["Env"]
        config["Labels"] = {**config["Labels"], **body.pop("Labels", {})}
        config.update(body)
        return {"Id": self.d.add(name, config, host_config, image.id)}

    def connect_container_to_network(self, cid, network, **kwargs):
        self._call("connect_container_to_network", cid, network, **kwargs)

    def start(self, cid):
        self._call("start", cid)
        self.d.store[cid]["State"].update(Status="running")

    def unpause(self, cid):
        self._call("unpause", cid)
        self.d.store[cid]["State"].update(Status="running")

    def tag(self, image, repository, tag=None, force=False):
        self._call("tag", image, repository, tag, force=force)
        ref = f"{repository}:{tag}"
        for other in self.d.images.images:
            if ref in other.tags:
                other.tags.remove(ref)
        self.d.images.get(image).tags.append(ref)

    def remove_container(self, cid, v=False, force=False):
        self._call("remove_container", cid, v=v, force=force)
        assert v is False, "never remove a volume"
        del self.d.store[cid]


class FakeImages:
    def __init__(self, images):
        self.images = images

    def get(self, ref):
        for image in self.images:
            if ref == image.id or ref in image.tags:
                return image
        raise docker.errors.ImageNotFound(f"No such image: {ref}")


class FakeContainers:
    def __init__(self, docker_):
        self.d = docker_

    def get(self, name):
        cid = self.d.by_name(name) or (name if name in self.d.store else None)
        if cid is None:
            raise docker.errors.NotFound(f"No such container: {name}")
        return FakeContainer(self.d, cid)


class FakeDocker:
    def __init__(self, versions=("2.3.0", "2.3.1")):
        self.store: dict = {}
        self.calls: list = []
        self.fail: dict = {}
        self.images = FakeImages([FakeImage(image_attrs(v)) for v in versions])
        self.api = FakeApi(self)
        self.containers = FakeContainers(self)

    def by_name(self, name):
        return next((cid for cid, a in self.store.items() if a["Name"] == "/" + name), None)

    def add(self, name, config, host_config, image_id, status="created"):
        cid = uuid.uuid4().hex * 2
        config.setdefault("Hostname", cid[:12])
        self.store[cid] = {
            "Id": cid,
            "Name": "/" + name,
            "Image": image_id,
            "Config": config,
            "HostConfig": host_config,
            "State": {"Status": status, "ExitCode": 0},
            "Mounts": [],
            "NetworkSettings": {"Networks": {"engine_net": {"Aliases": ["engine", cid[:12]], "IPAddress": "1.2.3.4"}}},
        }
        return cid

    def orchestrate(self, name=NAME, version="2.3.0", status="running"):
        """A container as the orchestrator creates it."""
        image = self.images.get(f"engine:{version}")
        config = copy.deepcopy(image.attrs["Config"])
        config["Env"] = ["ENGINE_API_KEY=k3y", "TENANT=acme", *config["Env"]]
        config["Labels"] = {**config["Labels"], "com.example.tenant": "acme"}
        config["Image"] = f"engine:{version}"
        host_config = {
            "Binds": [f"engine-data-{name}:/data:rw"],
            "NetworkMode": "engine_net",
            "PortBindings": {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "9601"}]},
            "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
        }
        return self.add(name, config, host_config, image.id, status)

    def container(self, name):
        cid = self.by_name(name)
        return self.store[cid] if cid else None

    def mutations(self):
        return [c for c in self.calls if c[0] in MUTATIONS]


@pytest.fixture
def fake(monkeypatch):
    d = FakeDocker()
    monkeypatch.setattr(engine_container, "docker_client", lambda params: d)
    return d


@pytest.fixture
def run(run_module):
    """engine_container on the Engine NAME (unless the args name another)."""
    return lambda args, check=False, diff=False: run_module(engine_container, {"name": NAME, **args}, check, diff)


def test_present_switches_faithfully(fake, run):
    fake.orchestrate()
    result = run({"image": "engine:2.3.1"}, diff=True)
    assert not result["failed"], result
    assert result["changed"] is True
    new = fake.container(NAME)
    previous = fake.container(NAME + "--previous")
    assert new["Config"]["Image"] == "engine:2.3.1"
    assert "ENGINE_VERSION=2.3.1" in new["Config"]["Env"] and "ENGINE_VERSION=2.3.0" not in new["Config"]["Env"]
    assert "TENANT=acme" in new["Config"]["Env"]
    assert new["Config"]["Labels"]["org.opencontainers.image.version"] == "2.3.1"
    assert new["Config"]["Labels"]["com.example.tenant"] == "acme"
    assert new["Config"]["Labels"][PREVIOUS_IMAGE_LABEL] == "engine:2.3.0"
    assert new["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert new["HostConfig"]["PortBindings"] == previous["HostConfig"]["PortBindings"]
    assert new["State"]["Status"] == "running"
    assert previous["State"]["Status"] == "exited"
    assert previous["HostConfig"]["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert [c[0] for c in fake.mutations()] == ["stop", "rename", "create_container_from_config", "start",
                                                "update_container"]
    assert fake.mutations()[0][2] == {"timeout": 60}
    body = fake.mutations()[2][1][0]
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"engine_net": {"Aliases": ["engine"]}}}
    c = result["container"]
    assert c["image"] == "engine:2.3.1" and c["version"] == "2.3.1" and c["previous_image"] == "engine:2.3.0"
    assert c["previous_container"] == NAME + "--previous" and c["failed_container"] is None
    assert c["timings"]["drain_seconds"] is not None and c["timings"]["switch_seconds"] is not None
    assert result["diff"]["before"]["image"] == "engine:2.3.0" and result["diff"]["after"]["image"] == "engine:2.3.1"
    assert result["diff"]["after"]["previous_container"] == NAME + "--previous"


def test_present_again_is_unchanged(fake, run):
    fake.orchestrate()
    run({"image": "engine:2.3.1"})
    fake.calls.clear()
    result = run({"image": "engine:2.3.1"})
    assert result["changed"] is False and fake.mutations() == []
    assert result["container"]["actions"] == []
    assert "diff" not in result


def test_check_mode_predicts_and_changes_nothing(fake, run):
    fake.orchestrate()
    before = copy.deepcopy(fake.store)
    result = run({"image": "engine:2.3.1"}, check=True, diff=True)
    assert result["changed"] is True
    assert fake.mutations() == [] and fake.store == before
    assert result["container"]["actions"] == [
        f"drain-stop {NAME} (timeout 60s)",
        f"rename {NAME} to {NAME}--previous",
        f"create {NAME} from engine:2.3.1",
        f"start {NAME}",
        f"set restart policy of {NAME}--previous to no",
    ]
    assert result["container"]["image"] == "engine:2.3.0"
    assert result["diff"]["after"] == {"image": "engine:2.3.1", "version": "2.3.1",
                                       "previous_container": f"{NAME}--previous", "status": "running"}


def test_missing_image_fails_before_anything_stops(fake, run):
    fake.orchestrate()
    result = run({"image": "engine:9.9.9"})
    assert result["failed"] and "engine:9.9.9" in result["msg"] and "nothing was stopped" in result["msg"]
    assert fake.mutations() == []


def test_missing_image_in_check_mode_warns(fake, monkeypatch, run):
    warnings = []
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, msg: warnings.append(msg))
    fake.orchestrate()
    result = run({"image": "engine:9.9.9"}, check=True)
    assert not result["failed"] and result["changed"] is True
    assert any("engine_image" in w for w in warnings)


def test_unfinished_switch_is_refused(fake, run):
    fake.orchestrate()
    run({"image": "engine:2.3.1"})
    fake.images.images.append(FakeImage(image_attrs("2.4.0")))
    fake.calls.clear()
    result = run({"image": "engine:2.4.0"})
    assert result["failed"] and "Unfinished switch" in result["msg"] and "finalized" in result["msg"]
    assert fake.mutations() == []


@pytest.mark.parametrize("failing", ["create_container_from_config", "start", "connect_container_to_network"])
def test_failed_switch_puts_the_old_container_back(fake, failing, run):
    fake.store[fake.orchestrate()]["NetworkSettings"]["Networks"]["monitoring"] = {"Aliases": ["m"]}
    old_id = fake.by_name(NAME)
    fake.fail[failing] = "boom"
    result = run({"image": "engine:2.3.1"})
    assert result["failed"]
    assert "boom" in result["msg"] and "put back" in result["msg"]
    assert fake.by_name(NAME) == old_id and fake.by_name(NAME + "--previous") is None
    old = fake.container(NAME)
    assert old["State"]["Status"] == "running"
    assert old["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert len(fake.store) == 1, "the half-made new container is removed"
    assert any(a.startswith("undo:") for a in result["actions"])


def test_failed_put_back_says_the_engine_may_be_down(fake, run):
    fake.orchestrate()
    fake.fail.update(create_container_from_config="no space left", rename=[None, "daemon hiccup"])
    result = run({"image": "engine:2.3.1"})
    assert result["failed"] and "no space left" in result["msg"] and "daemon hiccup" in result["msg"]
    assert "may be DOWN" in result["msg"]


@pytest.mark.parametrize("fail_at", ["start", "update_container"])
def test_interrupted_switch_is_finished(fake, fail_at, run):
    """A switch cut off before its last steps (the module killed): present again finishes it."""
    fake.orchestrate()
    run({"image": "engine:2.3.1", "start": fail_at != "start"})
    previous = fake.container(NAME + "--previous")
    if fail_at == "start":
        assert fake.container(NAME)["State"]["Status"] == "created"
    previous["HostConfig"]["RestartPolicy"] = {"Name": "unless-stopped", "MaximumRetryCount": 0}
    result = run({"image": "engine:2.3.1"})
    assert result["changed"] is True
    assert fake.container(NAME)["State"]["Status"] == "running"
    assert previous["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert run({"image": "engine:2.3.1"})["changed"] is False


def test_rolled_back_when_the_switch_stopped_after_the_rename(fake, run):
    fake.orchestrate(name=NAME + "--previous", status="exited")
    result = run({"state": "rolled_back"})
    assert result["changed"] is True and fake.container(NAME)["State"]["Status"] == "running"
    assert fake.container(NAME)["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert result["container"]["failed_container"] is None


def test_rolled_back_to_previous(fake, run):
    fake.orchestrate()
    old_id = fake.by_name(NAME)
    run({"image": "engine:2.3.1"})
    bad_id = fake.by_name(NAME)
    result = run({"state": "rolled_back"})
    assert result["changed"] is True and not result["failed"]
    assert fake.by_name(NAME) == old_id and fake.by_name(NAME + "--failed") == bad_id
    assert fake.container(NAME)["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert fake.container(NAME)["State"]["Status"] == "running"
    assert fake.container(NAME + "--failed")["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert fake.container(NAME + "--failed")["State"]["Status"] == "exited"
    assert result["container"]["failed_container"] == NAME + "--failed"
    assert result["container"]["previous_container"] is None and result["container"]["version"] == "2.3.0"
    fake.calls.clear()
    again = run({"state": "rolled_back"})
    assert again["changed"] is False and fake.mutations() == []
    again = run({"state": "rolled_back", "image": "engine:2.3.0"})
    assert again["changed"] is False and fake.mutations() == []


def test_rolled_back_without_previous_recreates(fake, run):
    fake.orchestrate(version="2.3.1")
    bad_id = fake.by_name(NAME)
    result = run({"state": "rolled_back", "image": "engine:2.3.0"})
    assert result["changed"] is True, result
    assert fake.by_name(NAME + "--failed") == bad_id
    new = fake.container(NAME)
    assert new["Config"]["Image"] == "engine:2.3.0" and "ENGINE_VERSION=2.3.0" in new["Config"]["Env"]
    assert new["Config"]["Labels"][ROLLED_BACK_FROM_LABEL] == "engine:2.3.1"
    assert PREVIOUS_IMAGE_LABEL not in new["Config"]["Labels"]
    assert run({"state": "rolled_back", "image": "engine:2.3.0"})["changed"] is False


def test_rolled_back_without_previous_or_image_fails(fake, run):
    fake.orchestrate()
    result = run({"state": "rolled_back"})
    assert result["failed"] and "set image" in result["msg"]


def test_finalized(fake, run):
    fake.orchestrate()
    run({"image": "engine:2.3.1"})
    assert run({"state": "finalized"}, check=True)["changed"] is True
    assert fake.by_name(NAME + "--previous") is not None
    result = run({"state": "finalized"})
    assert result["changed"] is True and fake.by_name(NAME + "--previous") is None
    assert result["container"]["actions"] == [f"remove {NAME}--previous"]
    assert run({"state": "finalized"})["changed"] is False


def test_finalized_refuses_to_remove_the_only_copy(fake, run):
    fake.orchestrate(name=NAME + "--previous", status="exited")
    result = run({"state": "finalized"})
    assert result["failed"] and "only copy" in result["msg"]
    assert fake.by_name(NAME + "--previous") is not None


def test_finalized_remove_failed(fake, run):
    fake.orchestrate()
    fake.orchestrate(name=NAME + "--failed", status="exited")
    assert run({"state": "finalized"})["changed"] is False
    assert run({"state": "finalized", "remove_failed": True})["changed"] is True
    assert fake.by_name(NAME + "--failed") is None


def test_stopped_and_started(fake, run):
    fake.orchestrate()
    result = run({"state": "stopped", "stop_timeout": 5})
    assert result["changed"] is True and fake.container(NAME)["State"]["Status"] == "exited"
    assert fake.mutations()[0] == ("stop", (fake.by_name(NAME),), {"timeout": 5})
    assert result["container"]["timings"]["drain_seconds"] is not None
    assert run({"state": "stopped"})["changed"] is False
    assert run({"state": "started"}, check=True)["changed"] is True
    assert fake.container(NAME)["State"]["Status"] == "exited"
    assert run({"state": "started"})["changed"] is True
    assert run({"state": "started"})["changed"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"state": "present"}, "image"),
        ({"image": "engine:2.3.1", "stop_timeout": -1}, "stop_timeout"),
        ({"image": "engine:2.3.1", "failed_suffix": "--previous"}, "differ"),
        ({"image": "engine:2.3.1", "name": "nope"}, "No container named 'nope'"),
    ],
)
def test_bad_input(fake, args, message, run):
    fake.orchestrate()
    result = run(args)
    assert result["failed"] and message in result["msg"]
    assert fake.mutations() == []


# --------------------------------------------------------------------------- the Engine is never left stopped


def failing_stop(fake, exc, really_stops=True):
    """docker stop that raises ``exc`` (after stopping the container, as Docker does for a paused one)."""

    def stop(cid, timeout=None):
        fake.calls.append(("stop", (cid,), {"timeout": timeout}))
        if really_stops:
            fake.store[cid]["State"].update(Status="exited", ExitCode=2)
        raise exc

    fake.api.stop = stop


@pytest.mark.parametrize(
    "exc",
    [
        docker.errors.APIError("stop failed", explanation="Container 3f1c is not running"),
        requests.exceptions.ReadTimeout("Read timed out. (read timeout=70)"),
    ],
)
@pytest.mark.parametrize("really_stops", [True, False])
def test_a_failing_stop_during_the_drain_leaves_the_engine_running(fake, exc, really_stops, run):
    old_id = fake.orchestrate()
    failing_stop(fake, exc, really_stops)
    result = run({"image": "engine:2.3.1"})
    assert result["failed"] and "drain-stop" in result["msg"] and "started again" in result["msg"]
    assert fake.by_name(NAME) == old_id and len(fake.store) == 1
    assert fake.container(NAME)["State"]["Status"] == "running"
    assert fake.container(NAME)["Config"]["Image"] == "engine:2.3.0"
    assert [c[0] for c in fake.mutations()] == ["stop", "start"]


def test_a_failing_stop_during_a_rollback_leaves_the_engine_running(fake, run):
    fake.orchestrate()
    run({"image": "engine:2.3.1"})
    bad_id = fake.by_name(NAME)
    failing_stop(fake, docker.errors.APIError("stop failed", explanation="is not running"))
    result = run({"state": "rolled_back"})
    assert result["failed"] and "was put back and started again" in result["msg"]
    assert fake.by_name(NAME) == bad_id and fake.container(NAME)["State"]["Status"] == "running"
    assert fake.container(NAME + "--previous")["State"]["Status"] == "exited"


def test_a_previous_container_that_cannot_start_puts_the_serving_one_back(fake, run):
    fake.orchestrate()
    previous_id = fake.by_name(NAME)
    run({"image": "engine:2.3.1"})
    bad_id = fake.by_name(NAME)
    fake.fail["start"] = "port is already allocated"
    result = run({"state": "rolled_back"})
    assert result["failed"] and "port is already allocated" in result["msg"] and "put back" in result["msg"]
    assert fake.by_name(NAME) == bad_id and fake.container(NAME)["State"]["Status"] == "running"
    assert fake.container(NAME)["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert fake.by_name(NAME + "--previous") == previous_id
    assert fake.container(NAME + "--previous")["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert fake.by_name(NAME + "--failed") is None


@pytest.mark.parametrize("state", ["present", "rolled_back", "started"])
@pytest.mark.parametrize("status", ["exited", "created", "paused"])
def test_a_stopped_engine_on_the_target_image_is_started(fake, state, status, run):
    fake.orchestrate(status=status)
    result = run({"state": state, "image": "engine:2.3.0"})
    assert result["changed"] is True and not result["failed"]
    assert fake.container(NAME)["State"]["Status"] == "running"
    assert [c[0] for c in fake.mutations()] == ["unpause" if status == "paused" else "start"]
    assert run({"state": state, "image": "engine:2.3.0"})["changed"] is False
    fake.container(NAME)["State"]["Status"] = status
    assert run({"state": state, "image": "engine:2.3.0", "start": False})["changed"] is (state == "started")


# --------------------------------------------------------------------------- the exact image a rollback goes back to


def retag(fake, ref, version_label):
    """Build another image and give it ``ref`` (as a CI that re-pushes a tag would)."""
    attrs = image_attrs("9.9.9")
    attrs["Id"] = "sha256:" + "e" * 64
    attrs["RepoTags"] = []
    attrs["Config"]["Labels"]["org.opencontainers.image.version"] = version_label
    image = FakeImage(attrs)
    fake.images.images.insert(0, image)
    fake.api.tag(image.id, *ref.split(":"))
    fake.calls.clear()
    return image


def test_rolled_back_goes_to_the_recorded_image_id_after_the_tag_moved(fake, monkeypatch, run):
    warnings = []
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, msg: warnings.append(msg))
    fake.images.images[0].attrs["Config"]["Labels"]["org.opencontainers.image.version"] = "v2.3.0"
    good_id = fake.images.get("engine:2.3.0").id
    fake.orchestrate()
    run({"image": "engine:2.3.1"})
    assert fake.container(NAME)["Config"]["Labels"][PREVIOUS_IMAGE_ID_LABEL] == good_id
    run({"state": "finalized"})
    other = retag(fake, "engine:2.3.0", "2.3.0-rebuilt")
    result = run({"state": "rolled_back"}, diff=True)
    assert not result["failed"] and result["changed"] is True
    assert fake.container(NAME)["Image"] == good_id and fake.container(NAME)["Config"]["Image"] == "engine:2.3.0"
    assert fake.images.get("engine:2.3.0").id == good_id and "engine:2.3.0" not in other.tags
    tag_calls = [c for c in fake.mutations() if c[0] == "tag"]
    assert tag_calls == [("tag", (good_id, "engine", "2.3.0"), {"force": True})]
    assert not any("v2.3.0" in str(c) for c in fake.calls)  # never a reference made from the version label
    assert any("not at the image recorded before the switch" in w for w in warnings)
    assert run({"state": "rolled_back"})["changed"] is False


def test_rolled_back_uses_the_recorded_id_when_the_reference_is_gone(fake, run):
    good_id = fake.images.get("engine:2.3.0").id
    fake.orchestrate()
    run({"image": "engine:2.3.1"})
    run({"state": "finalized"})
    fake.images.get(good_id).tags.clear()  # docker rmi engine:2.3.0 with the image still used: untagged
    result = run({"state": "rolled_back", "image": "engine:2.3.0"})
    assert not result["failed"] and fake.container(NAME)["Image"] == good_id
    assert fake.images.get("engine:2.3.0").id == good_id


def test_rolled_back_to_another_image_than_recorded_goes_there(fake, run):
    fake.images.images.append(FakeImage(image_attrs("2.2.0")))
    fake.orchestrate()
    run({"image": "engine:2.3.1"})
    run({"state": "finalized"})
    result = run({"state": "rolled_back", "image": "engine:2.2.0"})
    assert not result["failed"] and fake.container(NAME)["Config"]["Image"] == "engine:2.2.0"
    assert [c for c in fake.mutations() if c[0] == "tag"] == []


def test_rolled_back_when_nothing_recorded_is_left_fails_before_stopping(fake, run):
    fake.orchestrate()
    run({"image": "engine:2.3.1"})
    run({"state": "finalized"})
    fake.images.images = [i for i in fake.images.images if "engine:2.3.0" not in i.tags]
    fake.calls.clear()
    result = run({"state": "rolled_back"})
    assert result["failed"] and "not present on this Docker host" in result["msg"]
    assert fake.mutations() == [] and fake.container(NAME)["State"]["Status"] == "running"


def test_the_lock_option_refuses_before_anything_changes(fake, tmp_path, run):
    fake.orchestrate()
    lock = {"dir": str(tmp_path), "key": "volume:engine-data-ctr-u001", "run_id": "run-b", "owner": "alice"}
    (tmp_path / "engine-data-ctr-u001.lock").write_text(
        '{"owner": "awx job 42", "run_id": "run-a", "acquired_at": "2099-01-01T00:00:00Z", '
        '"expires_at": "2099-01-01T01:00:00Z"}')
    result = run({"image": "engine:2.3.1", "lock": lock})
    assert result["failed"] and "is locked by awx job 42 (run run-a)" in result["msg"]
    assert fake.mutations() == []
    held = run({"image": "engine:2.3.1", "lock": dict(lock, run_id="run-a", owner="awx job 42")})
    assert not held["failed"] and held["changed"] is True
    assert '"run_id": "run-a"' in (tmp_path / "engine-data-ctr-u001.lock").read_text()
