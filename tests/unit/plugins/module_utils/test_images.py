# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""module_utils/_images.py: version order, keep, every protection, non-version tags, check mode, refusals, and the
pre-flight's rollback image check, against an in-memory Docker that removes references as the daemon does."""

from __future__ import annotations

import json

import docker.errors
import pytest

from ansible_collections.september.engine.plugins.module_utils import _images
from ansible_collections.september.engine.plugins.module_utils._errors import OptionsError
from ansible_collections.september.engine.plugins.module_utils._images import (
    ImageRetention,
    ImageRetentionError,
    parse_semver,
    rollback_image_problem,
)

R = "retention-test/engine"


def image_id(n) -> str:
    return "sha256:" + f"{n:02x}" * 32


class Resp:
    def __init__(self, status):
        self.status_code = status
        self.reason = {404: "Not Found", 409: "Conflict", 500: "Server Error"}[status]
        self.url = "http+docker://localhost/images"


def api_error(status, text):
    cls = docker.errors.NotFound if status == 404 else docker.errors.APIError
    return cls(text, response=Resp(status), explanation=text)


class FakeApi:
    """The few Docker API calls engine_images makes, with the daemon's rules for removing a reference."""

    def __init__(self):
        self.imgs = {}  # id -> {"Id", "RepoTags", "RepoDigests", "Labels"}
        self.ctrs = []
        self.removals = []
        self.refuse = {}  # ref -> message (409)
        self.registry = set()
        self.down = False

    def images(self):
        if self.down:
            raise docker.errors.DockerException("connection refused")
        return json.loads(json.dumps(list(self.imgs.values())))

    def containers(self, all=False):
        assert all, "engine_images must list stopped containers too"
        return json.loads(json.dumps(self.ctrs))

    def _find(self, ref):
        for entry in self.imgs.values():
            if ref == entry["Id"] or (len(ref) >= 12 and entry["Id"].split(":")[-1].startswith(ref.split(":")[-1])):
                return entry
            if ref in entry["RepoTags"] or ref in entry["RepoDigests"]:
                return entry
        raise api_error(404, f"No such image: {ref}")

    def inspect_image(self, ref):
        return {"Id": self._find(ref)["Id"]}

    def remove_image(self, ref, force=False, noprune=False):
        assert force is False, "never forced"
        self.removals.append(ref)
        if ref in self.refuse:
            raise api_error(409, self.refuse[ref])
        entry = self._find(ref)
        refs = entry["RepoTags"] + entry["RepoDigests"]
        if len(refs) > 1:
            for key in ("RepoTags", "RepoDigests"):
                entry[key] = [r for r in entry[key] if r != ref]
            # The last tag of a repository gone: Docker drops its digests in that repository too.
            repo = ref.split("@")[0].rsplit(":", 1)[0] if "@" not in ref else ref.split("@")[0]
            if not any(t.rsplit(":", 1)[0] == repo for t in entry["RepoTags"]):
                entry["RepoDigests"] = [d for d in entry["RepoDigests"] if d.split("@")[0] != repo]
            if entry["RepoTags"] or entry["RepoDigests"]:
                return [{"Untagged": ref}]
        users = [c for c in self.ctrs if c["ImageID"] == entry["Id"]]
        if users:
            raise api_error(409, f"conflict: unable to remove repository reference \"{ref}\" (must force) - "
                                 f"container {users[0]['Id'][:12]} is using its referenced image")
        del self.imgs[entry["Id"]]
        return [{"Untagged": ref}, {"Deleted": entry["Id"]}]

    def inspect_distribution(self, ref, auth_config=None):
        if ref in self.registry:
            return {"Descriptor": {"digest": "sha256:" + "e" * 64}}
        raise api_error(404, f"manifest unknown: {ref}")


class FakeDocker:
    def __init__(self):
        self.api = FakeApi()

    def image(self, n, *refs, labels=None, digests=()):
        self.api.imgs[image_id(n)] = {"Id": image_id(n), "RepoTags": list(refs), "RepoDigests": list(digests),
                                      "Labels": labels}
        return image_id(n)

    def container(self, name, n, state="running", image=None, labels=None, mounts=None):
        self.api.ctrs.append({"Id": f"{len(self.api.ctrs) + 1:064x}", "Names": [f"/{name}"], "ImageID": image_id(n),
                              "Image": image or image_id(n), "State": state, "Labels": labels or {},
                              "Mounts": mounts or []})

    def tags(self):
        return sorted(t for e in self.api.imgs.values() for t in e["RepoTags"])


def versions(d: FakeDocker, *names, repo=R, start=1):
    """One image per version, ids start, start+1, ..."""
    return {v: d.image(start + i, f"{repo}:{v}") for i, v in enumerate(names)}


def run(d, check=False, warn=None, **params):
    params.setdefault("repositories", [R])
    base = dict(keep=5, protect=[], compose_dirs=[], compose_services=["engine"], volume_prefix="engine-data-",
                data_dir="/data", previous_suffix="--previous")
    base.update(params)
    return ImageRetention(d, base, check_mode=check, warn=warn).run()


SEVEN = ["2.3.0", "2.3.1", "2.4.0", "2.4.1", "2.4.2", "2.5.0", "3.0.0"]


# --------------------------------------------------------------------------- versions


@pytest.mark.parametrize(
    "older,newer",
    [
        ("2.3.0", "2.3.1"),
        ("2.3.1", "2.4.0"),
        ("2.9.0", "2.10.0"),  # numeric, not text
        ("2.4.0-rc.1", "2.4.0"),  # a release after its pre-releases
        ("2.4.0-rc.2", "2.4.0-rc.10"),
        ("2.4.0-1", "2.4.0-alpha"),  # numeric identifiers before alphanumeric ones
        ("v2.3.0", "2.3.1"),
        ("2.99.99", "3.0.0"),
    ],
)
def test_versions_order_as_semver(older, newer):
    assert parse_semver(older) < parse_semver(newer)


@pytest.mark.parametrize("tag", ["latest", "2.4", "stable", "2", "2.3.0.1", "02.3.0", "2.3.x", "", None, "sha-1a2b"])
def test_tags_that_are_not_versions(tag):
    assert parse_semver(tag) is None


# --------------------------------------------------------------------------- keep


def test_keeps_the_last_five_versions_and_removes_the_older():
    d = FakeDocker()
    ids = versions(d, *SEVEN)
    out = run(d)
    repo = out["images"][R]
    assert repo["kept"] == [f"{R}:{v}" for v in ["3.0.0", "2.5.0", "2.4.2", "2.4.1", "2.4.0"]]
    assert repo["removed"] == [f"{R}:2.3.1", f"{R}:2.3.0"]
    assert out["changed"] is True
    assert ids["2.3.0"] not in d.api.imgs and ids["2.3.1"] not in d.api.imgs
    assert d.tags() == sorted(f"{R}:{v}" for v in SEVEN[2:])
    assert out["actions"] == [f"remove {R}:2.3.1 ({ids['2.3.1'][:19]})", f"remove {R}:2.3.0 ({ids['2.3.0'][:19]})"]


def test_order_is_by_version_not_by_listing_or_id():
    d = FakeDocker()
    d.image(1, f"{R}:2.10.0")
    d.image(2, f"{R}:2.9.0")
    d.image(3, f"{R}:2.2.0")
    d.image(4, f"{R}:2.11.0-rc.1")
    repo = run(d, keep=2)["images"][R]
    assert repo["kept"] == [f"{R}:2.11.0-rc.1", f"{R}:2.10.0"]
    assert repo["removed"] == [f"{R}:2.9.0", f"{R}:2.2.0"]


@pytest.mark.parametrize("keep,removed", [(1, 6), (5, 2), (7, 0), (20, 0)])
def test_keep(keep, removed):
    d = FakeDocker()
    versions(d, *SEVEN)
    out = run(d, keep=keep)
    assert len(out["images"][R]["removed"]) == removed
    assert len(d.api.imgs) == 7 - removed
    assert out["changed"] is bool(removed)


@pytest.mark.parametrize("keep", [0, -1])
def test_keep_must_be_at_least_one(keep):
    with pytest.raises(OptionsError, match="keep at least 1"):
        run(FakeDocker(), keep=keep)


def test_one_version_with_two_tags_counts_once_and_goes_as_a_whole():
    d = FakeDocker()
    versions(d, "2.5.0", "2.6.0", start=10)
    both = d.image(1, f"{R}:2.3.0", f"{R}:v2.3.0")
    out = run(d, keep=2)
    assert sorted(out["images"][R]["removed"]) == [f"{R}:2.3.0", f"{R}:v2.3.0"]
    assert both not in d.api.imgs


def test_other_repositories_are_never_touched():
    d = FakeDocker()
    versions(d, *SEVEN)
    versions(d, *SEVEN, repo="engine", start=20)
    # The same image in two repositories: retention of R only untags it there.
    shared = d.image(40, f"{R}:1.0.0", "engine:1.0.0")
    run(d)
    engine_tags = sorted(t for t in d.tags() if t.startswith("engine:"))
    assert engine_tags == sorted(["engine:1.0.0"] + [f"engine:{v}" for v in SEVEN])
    assert d.api.imgs[shared]["RepoTags"] == ["engine:1.0.0"]


def test_a_repository_is_matched_however_docker_hub_is_spelled():
    d = FakeDocker()
    versions(d, *SEVEN, repo="engine")
    out = run(d, repositories=["docker.io/library/engine"])
    assert out["images"]["docker.io/library/engine"]["removed"] == ["engine:2.3.1", "engine:2.3.0"]


@pytest.mark.parametrize("bad", ["engine:2.3.0", "engine@sha256:" + "a" * 64, "Engine", "a b"])
def test_repositories_name_repositories_only(bad):
    with pytest.raises(OptionsError, match="repositories"):
        run(FakeDocker(), repositories=[bad])


# --------------------------------------------------------------------------- protections


def test_an_image_any_container_uses_is_protected_running_or_stopped_engine_or_not():
    d = FakeDocker()
    ids = versions(d, *SEVEN)
    d.container("sept-u001", SEVEN.index("2.3.0") + 1, state="running")
    d.container("some-tool", SEVEN.index("2.3.1") + 1, state="exited")
    repo = run(d)["images"][R]
    assert repo["removed"] == []
    whys = {p["ref"]: p["why"] for p in repo["protected"]}
    assert whys == {f"{R}:2.3.1": "used by 1 container(s): some-tool (exited)",
                    f"{R}:2.3.0": "used by 1 container(s): sept-u001 (running)"}
    assert all(i in d.api.imgs for i in ids.values())
    assert d.api.removals == []


def test_the_previous_image_labels_protect_the_rollback():
    d = FakeDocker()
    ids = versions(d, *SEVEN)
    d.container("u1", SEVEN.index("3.0.0") + 1,
                labels={"io.september.engine.previous-image": f"{R}:2.3.1",
                        "io.september.engine.previous-image-id": ids["2.3.1"]})
    # Only the id is recorded and the tag was moved since: the id still protects the recorded image.
    d.container("u2", SEVEN.index("3.0.0") + 1, labels={"io.september.engine.previous-image-id": ids["2.3.0"][:19]})
    repo = run(d)["images"][R]
    assert repo["removed"] == []
    assert {p["ref"]: p["why"] for p in repo["protected"]} == {
        f"{R}:2.3.1": "the rollback recorded in the labels of u1",
        f"{R}:2.3.0": "the rollback recorded in the labels of u2",
    }


def test_the_kept_previous_container_protects_the_rollback():
    d = FakeDocker()
    versions(d, *SEVEN)
    d.container("u1--previous", SEVEN.index("2.3.0") + 1, state="exited")
    repo = run(d)["images"][R]
    assert repo["removed"] == [f"{R}:2.3.1"]
    assert repo["protected"] == [dict(ref=f"{R}:2.3.0", id=image_id(1), version="2.3.0",
                                      why="kept previous container(s) for a rollback: u1--previous (exited)")]


def test_a_compose_state_file_protects_the_rollback(tmp_path):
    d = FakeDocker()
    ids = versions(d, *SEVEN)
    project = tmp_path / "proj"
    project.mkdir()
    (project / ".september-engine.json").write_text(json.dumps({"format": 1, "services": {"engine": {
        "image": f"{R}:3.0.0", "image_id": ids["3.0.0"], "previous_image": f"{R}:2.3.0",
        "previous_image_id": ids["2.3.0"]}}}))
    labels = {"com.docker.compose.project": "proj", "com.docker.compose.service": "engine",
              "com.docker.compose.project.working_dir": str(project)}
    d.container("proj-engine-1", SEVEN.index("3.0.0") + 1, labels=labels)
    repo = run(d)["images"][R]
    assert repo["removed"] == [f"{R}:2.3.1"]
    assert repo["protected"][0]["ref"] == f"{R}:2.3.0"
    assert repo["protected"][0]["why"] == f"the rollback recorded in {project}/.september-engine.json (service engine)"


def test_a_compose_project_without_a_container_is_read_from_compose_dirs(tmp_path):
    d = FakeDocker()
    versions(d, *SEVEN)
    (tmp_path / ".september-engine.json").write_text(json.dumps({"format": 1, "services": {"engine": {
        "image": f"{R}:2.3.1", "previous_image": f"{R}:2.3.0"}}}))
    assert run(d, check=True)["images"][R]["removed"] == [f"{R}:2.3.1", f"{R}:2.3.0"]
    repo = run(d, compose_dirs=[str(tmp_path)])["images"][R]
    assert repo["removed"] == []
    assert [p["why"] for p in repo["protected"]] == [
        f"the Compose Engine recorded in {tmp_path}/.september-engine.json (service engine) runs it",
        f"the rollback recorded in {tmp_path}/.september-engine.json (service engine)",
    ]


def test_a_damaged_state_file_removes_nothing(tmp_path):
    d = FakeDocker()
    versions(d, *SEVEN)
    (tmp_path / ".september-engine.json").write_text("{not json")
    with pytest.raises(ImageRetentionError, match=r"not valid JSON.*no image was removed"):
        run(d, compose_dirs=[str(tmp_path)])
    assert len(d.api.imgs) == 7 and d.api.removals == []


@pytest.mark.parametrize("how", ["ref", "id", "short id"])
def test_the_protect_option(how):
    d = FakeDocker()
    ids = versions(d, *SEVEN)
    item = {"ref": f"{R}:2.3.0", "id": ids["2.3.0"], "short id": ids["2.3.0"][7:19]}[how]
    repo = run(d, protect=[item])["images"][R]
    assert repo["removed"] == [f"{R}:2.3.1"]
    assert repo["protected"][0]["why"] == f"listed in protect: {item}"


def test_protecting_what_is_not_here_protects_nothing_else():
    d = FakeDocker()
    versions(d, *SEVEN)
    out = run(d, protect=[f"{R}:1.0.0", "sha256:" + "9" * 64, "9" * 12])
    assert out["images"][R]["removed"] == [f"{R}:2.3.1", f"{R}:2.3.0"]


def test_every_reason_is_given_and_long_lists_are_bounded():
    d = FakeDocker()
    versions(d, *SEVEN)
    for i in range(5):
        d.container(f"u{i}", 1, state="running")
    d.container("u9--previous", 1, state="exited")
    why = run(d, protect=[f"{R}:2.3.0"])["images"][R]["protected"][0]["why"]
    assert why == ("used by 5 container(s): u0 (running), u1 (running), u2 (running) and 2 more; "
                   "kept previous container(s) for a rollback: u9--previous (exited); "
                   f"listed in protect: {R}:2.3.0")


def test_protected_images_do_not_count_against_keep():
    d = FakeDocker()
    versions(d, *SEVEN)
    d.container("u1", 1)
    repo = run(d, keep=2)["images"][R]
    assert repo["kept"] == [f"{R}:3.0.0", f"{R}:2.5.0"]
    assert [p["ref"] for p in repo["protected"]] == [f"{R}:2.3.0"]
    assert repo["removed"] == [f"{R}:{v}" for v in ["2.4.2", "2.4.1", "2.4.0", "2.3.1"]]


# --------------------------------------------------------------------------- tags that are not versions


def test_tags_that_are_not_versions_are_left_alone_and_reported():
    d = FakeDocker()
    versions(d, *SEVEN)
    d.image(30, f"{R}:nightly")
    d.api.imgs[image_id(1)]["RepoTags"].append(f"{R}:stable")  # 2.3.0 is also "stable"
    d.api.imgs[image_id(7)]["RepoTags"].append(f"{R}:latest")  # 3.0.0 is also "latest"
    repo = run(d)["images"][R]
    assert sorted(s["ref"] for s in repo["skipped"]) == [f"{R}:latest", f"{R}:nightly", f"{R}:stable"]
    assert all(s["why"] == "not a version tag: left alone" for s in repo["skipped"])
    assert repo["removed"] == [f"{R}:2.3.1"]
    assert repo["protected"][0]["ref"] == f"{R}:2.3.0"
    assert repo["protected"][0]["why"] == f"also tagged {R}:stable (not a version)"
    assert image_id(30) in d.api.imgs and image_id(1) in d.api.imgs


def test_an_image_known_only_by_digest_is_ordered_by_its_version_label():
    d = FakeDocker()
    versions(d, "2.5.0", "2.6.0", start=10)
    old = d.image(1, digests=[f"{R}@sha256:" + "1" * 64], labels={"org.opencontainers.image.version": "2.3.0"})
    new = d.image(2, digests=[f"{R}@sha256:" + "2" * 64], labels={"org.opencontainers.image.version": "2.7.0"})
    unknown = d.image(3, digests=[f"{R}@sha256:" + "3" * 64], labels={"org.opencontainers.image.version": "dev"})
    repo = run(d, keep=3)["images"][R]
    assert repo["kept"] == [f"{R}@sha256:" + "2" * 64, f"{R}:2.6.0", f"{R}:2.5.0"]
    assert repo["removed"] == [f"{R}@sha256:" + "1" * 64]
    assert repo["skipped"] == [dict(ref=f"{R}@sha256:" + "3" * 64,
                                    why="no tag and no org.opencontainers.image.version label that is a version: "
                                        "left alone")]
    assert old not in d.api.imgs and new in d.api.imgs and unknown in d.api.imgs


# --------------------------------------------------------------------------- check mode, diff, refusals


def test_check_mode_plans_and_removes_nothing():
    d = FakeDocker()
    versions(d, *SEVEN)
    d.container("u1", 1)
    planned = run(d, check=True)
    assert planned["changed"] is True
    assert planned["images"][R]["removed"] == [f"{R}:2.3.1"]
    assert planned["actions"] == [f"remove {R}:2.3.1 ({image_id(2)[:19]})"]
    assert d.api.removals == [] and len(d.api.imgs) == 7
    assert planned["diff"]["before"][R] == sorted(f"{R}:{v}" for v in SEVEN)
    assert planned["diff"]["after"][R] == sorted(f"{R}:{v}" for v in SEVEN if v != "2.3.1")
    done = run(d)
    assert {k: done["images"][R][k] for k in ("kept", "removed", "protected")} == {
        k: planned["images"][R][k] for k in ("kept", "removed", "protected")}
    again = run(d)
    assert again["changed"] is False and again["images"][R]["removed"] == [] and again["actions"] == []
    assert again["diff"]["before"] == again["diff"]["after"]


def test_a_refusal_is_reported_not_a_failure():
    d = FakeDocker()
    versions(d, *SEVEN)
    d.api.refuse[f"{R}:2.3.0"] = "conflict: unable to delete (image has dependent child images)"
    warnings = []
    out = run(d, warn=warnings.append)
    repo = out["images"][R]
    assert repo["removed"] == [f"{R}:2.3.1"]
    assert repo["refused"] == [dict(ref=f"{R}:2.3.0", why="Docker refused: conflict: unable to delete (image has "
                                                          "dependent child images)")]
    assert warnings and f"{R}:2.3.0 was not removed" in warnings[0]
    assert out["changed"] is True


def test_a_container_that_appears_after_the_plan_makes_docker_refuse():
    d = FakeDocker()
    versions(d, *SEVEN)
    real_inspect = d.api.inspect_image

    def inspect_then_use(ref):
        if ref == f"{R}:2.3.0" and not d.api.ctrs:
            d.container("late", 1, state="created")
        return real_inspect(ref)

    d.api.inspect_image = inspect_then_use
    repo = run(d)["images"][R]
    assert repo["removed"] == [f"{R}:2.3.1"]
    assert repo["refused"][0]["ref"] == f"{R}:2.3.0"
    assert "container" in repo["refused"][0]["why"] and "is using its referenced image" in repo["refused"][0]["why"]
    assert image_id(1) in d.api.imgs


def test_a_tag_moved_since_the_plan_is_left_alone():
    d = FakeDocker()
    versions(d, *SEVEN)
    real_images = d.api.images

    def list_then_move():
        listed = real_images()
        d.api.imgs[image_id(1)]["RepoTags"] = []
        d.image(50, f"{R}:2.3.0")  # re-tagged to another build after the listing
        return listed

    d.api.images = list_then_move
    repo = run(d)["images"][R]
    assert repo["refused"] == [dict(ref=f"{R}:2.3.0", why=f"it points at {image_id(50)[:19]} now, not at "
                                                          f"{image_id(1)[:19]} as planned: left alone")]
    assert image_id(50) in d.api.imgs


def test_docker_unreachable_is_an_error():
    d = FakeDocker()
    d.api.down = True
    with pytest.raises(ImageRetentionError, match="Could not list the images: connection refused"):
        run(d)


# --------------------------------------------------------------------------- which repositories by default


def test_default_repositories_are_those_of_the_engines(tmp_path):
    d = FakeDocker()
    versions(d, *SEVEN, repo="engine")
    versions(d, "1.0.0", repo="registry:5000/team/engine", start=20)
    versions(d, "7.0.0", "7.1.0", repo="postgres", start=30)
    versions(d, "0.1.0", repo="compose/engine", start=40)
    versions(d, "0.2.0", repo="recorded/engine", start=45)
    d.container("u1", 1, image="engine:2.3.0", mounts=[{"Type": "volume", "Name": "engine-data-u1",
                                                       "Destination": "/data"}])
    d.container("u2", 20, image="registry:5000/team/engine:1.0.0",
                labels={"io.september.engine.previous-image": "engine:2.3.1"})
    d.container("db", 30, image="postgres:7.0.0", mounts=[{"Type": "volume", "Name": "pgdata", "Destination": "/data"}])
    (tmp_path / ".september-engine.json").write_text(json.dumps({"format": 1, "services": {"engine": {
        "image": "compose/engine:0.1.0", "previous_image": "recorded/engine:0.2.0"}}}))
    d.container("proj-engine-1", 40, image="compose/engine:0.1.0",
                labels={"com.docker.compose.project": "proj", "com.docker.compose.service": "engine",
                        "com.docker.compose.project.working_dir": str(tmp_path)})
    d.container("proj-db-1", 31, image="postgres:7.1.0",
                labels={"com.docker.compose.project": "proj", "com.docker.compose.service": "db"})
    out = run(d, repositories=None, check=True)
    assert out["repositories"] == ["engine", "registry:5000/team/engine", "compose/engine", "recorded/engine"]
    assert "postgres" not in out["images"]


def test_no_engine_no_repositories_warns_and_changes_nothing():
    d = FakeDocker()
    versions(d, *SEVEN)
    warnings = []
    out = run(d, repositories=None, warn=warnings.append)
    assert out == dict(changed=False, images={}, repositories=[], actions=[], diff=dict(before={}, after={}))
    assert "No Engine was found" in warnings[0]


# --------------------------------------------------------------------------- the pre-flight's rollback image check


def test_rollback_image_present_by_id_or_reference():
    d = FakeDocker()
    ids = versions(d, "2.3.0")
    assert rollback_image_problem(d, dict(image=f"{R}:2.3.0", image_id=ids["2.3.0"])) is None
    assert rollback_image_problem(d, dict(image=f"{R}:2.3.0", image_id=None)) is None
    # The tag is gone, the exact image is still here: the rollback tags it again.
    assert rollback_image_problem(d, dict(image=f"{R}:9.9.9", image_id=ids["2.3.0"])) is None
    # Nothing runs: nothing to go back to.
    assert rollback_image_problem(d, dict(image=None, image_id=None)) is None


def test_rollback_image_missing_but_pullable_is_no_problem_unless_pull_never():
    d = FakeDocker()
    d.api.registry.add(f"{R}:2.3.0")
    engine = dict(image=f"{R}:2.3.0", image_id=image_id(9))
    assert rollback_image_problem(d, engine) is None
    problem = rollback_image_problem(d, engine, pull="never")
    assert problem.startswith(f"its rollback image {R}:2.3.0 ({image_id(9)[:19]}) is not on this Docker host")
    assert "docker pull" in problem


def test_rollback_image_missing_and_not_pullable():
    d = FakeDocker()
    problem = rollback_image_problem(d, dict(image=f"{R}:2.3.0", image_id=image_id(9)))
    assert "the registry cannot give it back (manifest unknown" in problem
    assert "rebuild it from the release's git tag" in problem
    # Only an id, no reference to pull.
    assert "not on this Docker host" in rollback_image_problem(d, dict(image=image_id(9), image_id=image_id(9)))


def test_rollback_image_check_passes_the_registry_credentials():
    d = FakeDocker()
    seen = []
    d.api.inspect_distribution = lambda ref, auth_config=None: seen.append(auth_config) or {}
    auth = {"username": "bot", "password": "s3cret"}
    assert rollback_image_problem(d, dict(image=f"{R}:2.3.0"), registry_auth=auth) is None
    assert seen == [auth]


def test_rollback_image_check_with_docker_failing_is_an_error():
    d = FakeDocker()

    def broken(ref):
        raise api_error(500, "daemon exploded")

    d.api.inspect_image = broken
    with pytest.raises(ImageRetentionError, match="daemon exploded"):
        rollback_image_problem(d, dict(image=f"{R}:2.3.0"))


def test_module_util_names():
    assert _images.DEFAULT_KEEP == 5
    spec = _images.images_argument_spec()
    assert spec["keep"]["default"] == 5 and spec["repositories"].get("default") is None
