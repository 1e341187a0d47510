# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The engine_image module as a whole, against an in-memory Docker (no registry is reachable in tests)."""

from __future__ import annotations

import json

import docker.errors
import pytest

from ansible_collections.september.engine.plugins.modules import engine_image

SECRET = "s3cret-registry-token"


class FakeImage:
    def __init__(self, ref, image_id):
        self.id = image_id
        self.tags = [ref]
        self.attrs = {"Id": image_id, "Config": {"Labels": {"org.opencontainers.image.version": ref.split(":")[-1]}}}


class FakeImages:
    def __init__(self, d):
        self.d = d

    def get(self, ref):
        if ref in self.d.local:
            return self.d.local[ref]
        raise docker.errors.ImageNotFound(f"No such image: {ref}")


class FakeApi:
    def __init__(self, d):
        self.d = d

    def pull(self, repository, tag=None, stream=False, decode=False, auth_config=None):
        self.d.pulls.append((repository, tag, auth_config))
        if self.d.pull_raises:
            raise self.d.pull_raises
        yield {"status": f"Pulling from {repository}", "id": tag}
        if self.d.pull_error:
            yield {"errorDetail": {"message": self.d.pull_error}, "error": self.d.pull_error}
            return
        ref = f"{repository}:{tag}"
        self.d.local[ref] = FakeImage(ref, self.d.remote_id)
        yield {"status": f"Status: Downloaded newer image for {ref}"}


class FakeDocker:
    def __init__(self):
        self.local = {}
        self.pulls = []
        self.pull_error = None
        self.pull_raises = None
        self.remote_id = "sha256:" + "b" * 64
        self.images = FakeImages(self)
        self.api = FakeApi(self)


@pytest.fixture
def fake(monkeypatch):
    d = FakeDocker()
    monkeypatch.setattr(engine_image, "docker_client", lambda params: d)
    return d


def test_present_image_is_unchanged(fake, run_module):
    fake.local["engine:2.3.1"] = FakeImage("engine:2.3.1", "sha256:" + "a" * 64)
    result = run_module(engine_image, {"name": "engine:2.3.1"})
    assert result["changed"] is False and fake.pulls == []
    assert result["image"] == {"name": "engine:2.3.1", "id": "sha256:" + "a" * 64, "version": "2.3.1",
                               "pulled": False, "present": True, "actions": []}


def test_missing_image_is_pulled(fake, run_module):
    result = run_module(engine_image, {"name": "registry.example.com:5000/sept/engine:2.3.1"}, diff=True)
    assert result["changed"] is True and result["image"]["pulled"] is True and result["image"]["present"] is True
    assert fake.pulls == [("registry.example.com:5000/sept/engine", "2.3.1", None)]
    assert result["diff"] == {"before": {"present": False, "id": None},
                              "after": {"present": True, "id": "sha256:" + "b" * 64}}
    assert run_module(engine_image, {"name": "registry.example.com:5000/sept/engine:2.3.1"})["changed"] is False


def test_credentials_are_passed_and_never_returned(fake, run_module):
    result = run_module(engine_image, {"name": "engine:2.3.1", "registry_username": "bot", "registry_password": SECRET})
    assert fake.pulls[0][2] == {"username": "bot", "password": SECRET}
    assert SECRET not in json.dumps(result)


def test_check_mode_predicts_and_pulls_nothing(fake, run_module):
    result = run_module(engine_image, {"name": "engine:2.3.1"}, check=True, diff=True)
    assert result["changed"] is True and fake.pulls == [] and fake.local == {}
    assert result["image"]["actions"] == ["pull engine:2.3.1"] and result["image"]["pulled"] is False
    assert result["diff"]["after"]["present"] is True


def test_pull_always(fake, run_module):
    fake.local["engine:2.3.1"] = FakeImage("engine:2.3.1", fake.remote_id)
    result = run_module(engine_image, {"name": "engine:2.3.1", "pull": "always"})
    assert fake.pulls and result["changed"] is False, "same id after the pull"
    fake.remote_id = "sha256:" + "c" * 64
    assert run_module(engine_image, {"name": "engine:2.3.1", "pull": "always"})["changed"] is True


def test_never_fails_clearly_when_missing(fake, run_module):
    result = run_module(engine_image, {"name": "engine:9.9.9", "pull": "never"})
    assert result["failed"] and "engine:9.9.9" in result["msg"] and "pull=never" in result["msg"]
    assert fake.pulls == []


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ("manifest for engine:9.9.9 not found: manifest unknown: manifest unknown", "tag does not exist"),
        ('Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io: no such host', "unreachable"),
        ("unauthorized: authentication required", "refused access"),
    ],
)
def test_pull_errors_in_the_stream(fake, error, kind, run_module):
    fake.pull_error = error
    result = run_module(engine_image, {"name": "engine:9.9.9"})
    assert result["failed"] and "engine:9.9.9" in result["msg"] and kind in result["msg"] and error in result["msg"]


def test_pull_error_raised_by_the_sdk(fake, run_module):
    fake.pull_raises = docker.errors.NotFound("404", explanation="manifest unknown")
    result = run_module(engine_image, {"name": "engine:9.9.9", "registry_username": "bot", "registry_password": SECRET})
    assert result["failed"] and "tag does not exist" in result["msg"] and SECRET not in result["msg"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"name": "engine"}, "has no tag"),
        ({"name": "registry.example.com:5000/engine"}, "has no tag"),
        ({"name": "engine:2.3.1", "registry_username": "bot"}, "registry_password"),
        ({"name": "engine:2.3.1", "pull": "sometimes"}, "pull"),
        ({"name": "Engine:2.3.1"}, "not a repository path"),
        ({"name": "engine:2.3.1", "lock": {"key": "engine-u001", "run_id": "r", "owner": "o"}},
         "not an Engine identity key"),
    ],
)
def test_bad_input(fake, args, message, run_module):
    result = run_module(engine_image, args)
    assert result["failed"] and message in result["msg"] and fake.pulls == []


def test_digest_pins_the_pull(fake, run_module):
    digest = "sha256:" + "d" * 64
    run_module(engine_image, {"name": f"registry.example.com:5000/sept/engine:2.3.1@{digest}"})
    assert fake.pulls == [("registry.example.com:5000/sept/engine", digest, None)]


def test_the_lock_is_held_while_pulling(fake, tmp_path, run_module):
    lock = {"dir": str(tmp_path), "key": "volume:engine-data-u001", "engine": "u001", "run_id": "run-1",
            "owner": "awx job 1", "ttl": 60}
    seen = []
    real_pull = FakeApi.pull

    def pull(self, *args, **kwargs):
        seen.append(json.loads((tmp_path / "engine-data-u001.lock").read_text())["run_id"])
        yield from real_pull(self, *args, **kwargs)

    fake.api.pull = pull.__get__(fake.api)
    result = run_module(engine_image, {"name": "engine:2.3.1", "lock": lock})
    assert not result["failed"] and seen == ["run-1"]
    assert not (tmp_path / "engine-data-u001.lock").exists()  # taken by the module, so released by it
    other = run_module(engine_image, {"name": "engine:2.3.2", "lock": dict(lock, run_id="run-0")})
    assert not other["failed"]
    (tmp_path / "engine-data-u001.lock").write_text(json.dumps({
        "owner": "awx job 0", "run_id": "run-0", "acquired_at": "2099-01-01T00:00:00Z",
        "expires_at": "2099-01-01T01:00:00Z"}))
    refused = run_module(engine_image, {"name": "engine:2.3.3", "lock": lock})
    assert refused["failed"] and "is locked by awx job 0 (run run-0)" in refused["msg"]
    assert [p[1] for p in fake.pulls] == ["2.3.1", "2.3.2"]
    held = run_module(engine_image, {"name": "engine:2.3.3", "lock": dict(lock, run_id="run-0")})
    assert not held["failed"] and (tmp_path / "engine-data-u001.lock").exists()  # the run's own lock stays
