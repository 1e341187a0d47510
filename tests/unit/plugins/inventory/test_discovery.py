# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""module_utils/_discovery.py: which containers of a Docker daemon are Engines, and what is read of them."""

from __future__ import annotations

import threading
import time

import pytest

from ansible_collections.september.engine.plugins.module_utils._discovery import (
    NOT_READ,
    Deadline,
    HostResult,
    HostTimeout,
    Rules,
    Target,
    _Discovery,
    discover_host,
    discover_hosts,
    parse_selector,
    url_from_inspect,
    url_from_summary,
)


def by_id(engines: list) -> dict:
    return {e["engine_id"]: e for e in engines}


def run(api, rules: Rules | None = None, fake=None):
    missing = (fake.FakeNotFound,) if fake else (LookupError,)
    return discover_host(api, rules or Rules(), Deadline(30), missing)


# ---------------------------------------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(
    ("text", "expected"),
    [("io.september.engine_id", ("io.september.engine_id", None)), ("tier=canary", ("tier", "canary")),
     (" a = b ", ("a", "b")), ("empty=", ("empty", ""))],
)  # fmt: skip
def test_selectors(text, expected):
    assert parse_selector(text) == expected


@pytest.mark.parametrize("text", ["", "  ", "=value", None, 3])
def test_bad_selectors(text):
    with pytest.raises(ValueError, match="key=value"):
        parse_selector(text)


@pytest.mark.parametrize(
    ("ports", "mode", "url"),
    [
        ([{"IP": "127.0.0.1", "PrivatePort": 8000, "PublicPort": 9001, "Type": "tcp"}], None, "http://127.0.0.1:9001"),
        # published on every address (and its IPv6 twin): the Docker host's loopback reaches it
        ([{"IP": "::", "PrivatePort": 8000, "PublicPort": 9005, "Type": "tcp"},
          {"IP": "0.0.0.0", "PrivatePort": 8000, "PublicPort": 9005, "Type": "tcp"}], None, "http://127.0.0.1:9005"),
        ([{"IP": "10.1.2.3", "PrivatePort": 8000, "PublicPort": 80, "Type": "tcp"}], None, "http://10.1.2.3:80"),
        ([{"IP": "fd00::5", "PrivatePort": 8000, "PublicPort": 81, "Type": "tcp"}], None, "http://[fd00::5]:81"),
        # another port, a UDP port, an unpublished port: no URL
        ([{"IP": "127.0.0.1", "PrivatePort": 9000, "PublicPort": 9001, "Type": "tcp"},
          {"IP": "127.0.0.1", "PrivatePort": 8000, "PublicPort": 9002, "Type": "udp"},
          {"PrivatePort": 8000, "Type": "tcp"}], None, None),
        ([], "host", "http://127.0.0.1:8000"),
    ],
)  # fmt: skip
def test_url_of_a_running_container(ports, mode, url):
    assert url_from_summary({"Ports": ports, "HostConfig": {"NetworkMode": mode}}, 8000) == url


def test_url_of_a_stopped_container_comes_from_its_configuration():
    attrs = {"HostConfig": {"PortBindings": {"8000/tcp": [{"HostIp": "", "HostPort": "9107"}]}}}
    assert url_from_inspect(attrs, 8000) == "http://127.0.0.1:9107"
    # an ephemeral port (no HostPort) of a stopped container is unknown until it runs
    assert (
        url_from_inspect({"HostConfig": {"PortBindings": {"8000/tcp": [{"HostIp": "", "HostPort": ""}]}}}, 8000) is None
    )


def test_deadline():
    now = [100.0]
    deadline = Deadline(5, clock=lambda: now[0])
    assert deadline.check("x") == 5
    now[0] = 105.5
    with pytest.raises(HostTimeout, match=r"within 5s \(stopped before listing"):
        deadline.check("listing containers")


# ---------------------------------------------------------------------------------------------- one host


def test_both_hosting_models(fake):
    api = fake.FakeApi(
        [
            fake.engine_container("u001", port=9001),
            fake.compose_engine("shop", version="2.4.0", port=9002),
            fake.Box("postgres", "postgres:16", mounts=[fake.volume_mount("pgdata", "/var/lib/postgresql/data")]),
            fake.compose_engine("shop", service="worker", port=None),  # another service of the project
        ],
        [fake.image("engine:2.3.0", "2.3.0"), fake.image("engine:2.4.0", "2.4.0")],
    )
    engines, problems = run(api, fake=fake)
    assert problems == []
    found = by_id(engines)
    assert sorted(found) == ["shop", "u001"]
    single = found["u001"]
    assert single == {
        "engine_id": "u001", "deployment": "container", "container": "u001", "container_name": "u001",
        "state": "running", "image": "engine:2.3.0", "version": "2.3.0", "url": "http://127.0.0.1:9001",
        "volume": "engine-data-u001", "brain_source": "/var/lib/docker/volumes/engine-data-u001/_data", "labels": {},
    }  # fmt: skip
    project = found["shop"]
    assert project["deployment"] == "compose"
    assert project["compose_dir"] == "/srv/september/shop"
    assert project["compose_service"] == "engine"
    assert project["compose_project"] == "shop"
    assert project["compose_files"] == ["/srv/september/shop/docker-compose.yml"]
    assert project["compose_env_file"] == "/srv/september/shop/.env"
    assert project["container"] == "shop-engine-1"
    assert (project["version"], project["url"], project["volume"]) == (
        "2.4.0",
        "http://127.0.0.1:9002",
        "shop_engine_data",
    )
    # one list call with no filter; each Engine image inspected once; running Engines need no inspect
    assert api.calls[0] == ("containers", True, {})
    assert sorted(c[0] for c in api.calls) == ["containers", "inspect_image", "inspect_image"]


def test_nothing_secret_is_read(fake):
    """The Engine key lives in the containers' environment: discovery never returns it, stopped or running."""
    api = fake.FakeApi([fake.engine_container("u001"), fake.engine_container("u002", state="exited", port=9003),
                        fake.compose_engine("c1")])  # fmt: skip
    engines, _problems = run(api, fake=fake)
    assert len(engines) == 3
    assert "sk-unit-secret" not in repr(engines)
    assert "ENGINE_API_KEY" not in repr(engines)


def test_compose_v1_labels(fake):
    """Compose v1 writes config files relative to the folder and no environment_file label."""
    api = fake.FakeApi([fake.compose_engine("legacy", v2=False, files=("docker-compose.yml", "override.yml"))])
    (engine,), _problems = run(api, fake=fake)
    assert engine["container"] == "legacy_engine_1"
    assert engine["compose_files"] == ["/srv/september/legacy/docker-compose.yml", "/srv/september/legacy/override.yml"]
    assert engine["compose_env_file"] is None


def test_compose_skips_one_off_and_other_services_and_needs_its_folder(fake):
    oneoff = fake.compose_engine("p1", extra_labels={"com.docker.compose.oneoff": "True"})
    old = fake.compose_engine("ancient")
    del old.labels["com.docker.compose.project.working_dir"]
    api = fake.FakeApi([oneoff, fake.compose_engine("p2", service="api"), old])
    engines, problems = run(api, fake=fake)
    assert engines == []
    assert len(problems) == 1
    assert "ancient" in problems[0] and "working_dir" in problems[0]


def test_compose_service_is_configurable_and_a_scaled_service_is_read_once(fake):
    api = fake.FakeApi(
        [fake.compose_engine("p", service="agent", number=2, state="exited", port=9010),
         fake.compose_engine("p", service="agent", number=1, port=9011)]
    )  # fmt: skip
    (engine,), _problems = run(api, Rules(compose_service="agent"), fake=fake)
    assert engine["container"] == "p-agent-1"  # the running one
    assert engine["url"] == "http://127.0.0.1:9011"
    assert "2 containers" in engine["note"]


def test_recognised_by_label_by_image_or_by_volume(fake):
    boxes = [
        fake.Box("by-label", "custom/agent:7", labels={"io.september.engine_id": "L1"}, port=9001),
        fake.Box("by-image", "registry.example.com:5000/september-engine:2.3.1", port=9002),
        fake.engine_container("V1", port=9003),
        fake.Box("bystander", "nginx:1", labels={"io.september.engine_id.other": "x"}, port=9004),
        fake.Box("data-but-other-prefix", "x:1", mounts=[fake.volume_mount("brain-x")]),
    ]
    rules = Rules(
        container_labels=("io.september.engine_id",),
        container_images=("registry.example.com:5000/september-engine",),
        engine_id_label="io.september.engine_id",
    )
    found = by_id(run(fake.FakeApi(boxes), rules, fake=fake)[0])
    assert sorted(found) == ["L1", "V1", "by-image"]
    assert found["by-image"]["version"] == "2.3.1"  # no image known: the tag the container runs
    # the volume rule alone (the default) finds only the contract's Engine; turned off, nothing at all
    assert sorted(by_id(run(fake.FakeApi(boxes), fake=fake)[0])) == ["V1"]
    assert run(fake.FakeApi(boxes), Rules(volume_prefix=""), fake=fake)[0] == []


def test_previous_and_failed_containers_are_not_engines(fake):
    boxes = [
        fake.engine_container("u001", "2.4.0", port=9001),
        fake.engine_container("u001", "2.3.0", name="u001--previous", state="exited", port=9001),
        fake.engine_container("u002", "2.4.1", name="u002--failed", state="exited", port=9002),
        fake.engine_container("u002", "2.3.0", port=9002),
        # an upgrade that stopped between the rename and the new container: only the previous one is there
        fake.engine_container("u003", "2.3.0", name="u003--previous", state="exited", port=9003),
    ]
    api = fake.FakeApi(boxes, [fake.image(f"engine:{v}", v) for v in ("2.3.0", "2.4.0", "2.4.1")])
    found = by_id(run(api, fake=fake)[0])
    assert sorted(found) == ["u001", "u002", "u003"]
    assert (found["u001"]["container"], found["u001"]["version"]) == ("u001", "2.4.0")
    assert (found["u002"]["container"], found["u002"]["version"]) == ("u002", "2.3.0")
    assert found["u003"]["container"] == "u003--previous"
    assert found["u003"]["container_name"] == "u003"  # the name engine_info and engine_container know it by
    assert "only u003--previous exists" in found["u003"]["note"]
    assert found["u003"]["url"] == "http://127.0.0.1:9003"  # from the stopped container's configuration
    assert found["u003"]["state"] == "exited"


def test_a_drill_twin_is_never_an_engine(fake):
    """engine_twin's staging twin carries its Engine's labels, image and volume naming, and the drill's label."""
    drill = {"io.september.engine.drill": "drill-20260504T020000Z", "io.september.engine_id": "u001"}
    boxes = [
        fake.engine_container("u001", port=9001, labels={"io.september.engine_id": "u001"}),
        fake.Box("u001--drill", "engine:2.3.0", labels=drill, mounts=[fake.volume_mount("engine-drill-u001")],
                 port=9301),
    ]  # fmt: skip
    rules = Rules(container_labels=("io.september.engine_id",), container_images=("engine",))
    assert sorted(by_id(run(fake.FakeApi(boxes), rules, fake=fake)[0])) == ["u001"]
    # without the drill's label the same container is an Engine: the label is what keeps it out
    boxes[1].labels.pop("io.september.engine.drill")
    assert sorted(by_id(run(fake.FakeApi(boxes), rules, fake=fake)[0])) == ["u001", "u001--drill"]


def test_required_labels_are_a_docker_filter_and_are_checked(fake):
    mine = {"io.september.fleet": "prod"}
    boxes = [
        fake.engine_container("u001", labels=mine),
        fake.engine_container("u002", labels={"io.september.fleet": "staging"}),
        fake.compose_engine("c1", extra_labels=mine),
        fake.compose_engine("c2"),
    ]
    api = fake.FakeApi(boxes)
    rules = Rules(required_labels=("io.september.fleet=prod",)).with_required(["io.september.fleet"])
    assert rules.required_labels == ("io.september.fleet=prod", "io.september.fleet")
    assert sorted(by_id(run(api, rules, fake=fake)[0])) == ["c1", "u001"]
    assert api.calls[0] == ("containers", True, {"label": ["io.september.fleet=prod", "io.september.fleet"]})

    class IgnoresFilters(fake.FakeApi):
        def containers(self, all=False, filters=None):
            return super().containers(all=all, filters=None)

    # a daemon (or proxy) that ignores the filter still gives only matching Engines
    assert sorted(by_id(run(IgnoresFilters(boxes), rules, fake=fake)[0])) == ["c1", "u001"]


def test_versions_and_images(fake):
    moved = fake.engine_container("u001", "2.3.0")
    moved.image_ref = moved.image_id  # the tag moved to another image: Docker lists the container by image id
    boxes = [
        moved,
        fake.engine_container("u002", "2.5.0", port=9002),
        fake.engine_container("u003", "9.9.9", port=9003),
    ]
    images = [fake.image("engine:2.3.0", "2.3.0"), fake.image("engine:2.5.0", None)]
    found = by_id(run(fake.FakeApi(boxes, images), fake=fake)[0])
    assert (found["u001"]["image"], found["u001"]["version"]) == ("engine:2.3.0", "2.3.0")  # the image's own tag
    assert found["u002"]["version"] == "2.5.0"  # no version label: the tag
    assert found["u003"]["version"] == "9.9.9"  # image gone since the list (NotFound): the container's reference
    release = fake.image("engine:2.3.0", None, {"com.example.release": "2.3.0-r7"})
    rules = Rules(version_label="com.example.release")
    found = by_id(run(fake.FakeApi([fake.engine_container("u009")], [release]), rules, fake=fake)[0])
    assert found["u009"]["version"] == "2.3.0-r7"


def test_stopped_engines_and_models(fake):
    boxes = [fake.engine_container("u001"), fake.engine_container("u002", state="exited", port=9002),
             fake.compose_engine("c1")]  # fmt: skip
    assert sorted(by_id(run(fake.FakeApi(boxes), Rules(include_stopped=False), fake=fake)[0])) == ["c1", "u001"]
    assert sorted(by_id(run(fake.FakeApi(boxes), Rules(deployments=("container",)), fake=fake)[0])) == ["u001", "u002"]
    assert sorted(by_id(run(fake.FakeApi(boxes), Rules(deployments=("compose",)), fake=fake)[0])) == ["c1"]


def test_a_bind_mounted_brain_and_the_engine_id_label(fake):
    box = fake.Box("alice", "engine:2.3.0", labels={"io.september.engine_id": "user-alice"},
                   mounts=[fake.bind_mount("/srv/brains/alice")], port=9001)  # fmt: skip
    rules = Rules(container_labels=("io.september.engine_id",), engine_id_label="io.september.engine_id")
    (engine,), _problems = run(fake.FakeApi([box]), rules, fake=fake)
    assert (engine["engine_id"], engine["volume"], engine["brain_source"]) == ("user-alice", None, "/srv/brains/alice")


# ---------------------------------------------------------------------------------------------- many hosts


def test_many_hosts_in_parallel_one_dead_one_hanging(fake):
    good = fake.FakeApi([fake.engine_container("u001")])
    hanging = fake.HangingApi()
    started = threading.Barrier(2, timeout=5)

    def connect_good(_timeout):
        started.wait()  # both live hosts are read at the same time
        return good

    def connect_hanging(_timeout):
        started.wait()
        return hanging

    def connect_dead(_timeout):
        raise ConnectionRefusedError(111, "Connection refused")

    targets = [
        Target("h1", connect_good, Rules(), 5),
        Target("h2", connect_dead, Rules(), 5),
        Target("h3", connect_hanging, Rules(), 0.5),
    ]
    t0 = time.monotonic()
    try:
        results = discover_hosts(targets, errors=(OSError,), missing=(fake.FakeNotFound,), max_workers=3)
    finally:
        hanging.release.set()
    assert time.monotonic() - t0 < 5
    assert [e["engine_id"] for e in results["h1"].engines] == ["u001"] and results["h1"].error is None
    assert good.closed and good.timeout is not None  # the client's own timeout is the time left
    assert "ConnectionRefusedError" in results["h2"].error and results["h2"].engines == []
    assert results["h3"].error == "no answer within 0.5s" and results["h3"].engines == []


def test_a_host_that_answers_too_slowly_is_stopped_between_calls(fake):
    now = [0.0]

    class Slow(fake.FakeApi):
        def containers(self, all=False, filters=None):
            now[0] += 10  # the list took 10 s: nothing more is asked
            return super().containers(all=all, filters=filters)

    api = Slow([fake.engine_container("u001")], [fake.image("engine:2.3.0", "2.3.0")])
    with pytest.raises(HostTimeout, match="inspecting image"):
        discover_host(api, Rules(), Deadline(5, clock=lambda: now[0]), (fake.FakeNotFound,))


def test_a_bug_is_not_hidden_as_an_unreachable_host(fake):
    def broken(_timeout):
        raise TypeError("a bug")

    with pytest.raises(TypeError, match="a bug"):
        discover_hosts([Target("h1", broken, Rules(), 5)], errors=(OSError,))


def test_hosts_queued_behind_a_hanging_one_and_the_workers_never_hold_the_process(fake):
    """One worker: the hanging host is given up on after its limit; the host queued behind it waits for a free
    worker, which never comes before the overall limit, and says so. The worker left waiting is a daemon thread
    (a client stuck on a frozen ssh:// host must not keep ansible-inventory from ending)."""
    hanging = fake.HangingApi()
    targets = [
        Target("frozen", lambda _timeout: hanging, Rules(), 0.3),
        Target("queued", lambda _timeout: fake.FakeApi([fake.engine_container("u001")]), Rules(), 0.3),
    ]
    try:
        results = discover_hosts(targets, errors=(OSError,), missing=(fake.FakeNotFound,), max_workers=1)
        stuck = [t for t in threading.enumerate() if t.name.startswith("engines-discovery")]
        assert stuck and all(t.daemon for t in stuck)
    finally:
        hanging.release.set()
    assert results["frozen"].error == "no answer within 0.3s"
    assert results["queued"].error.startswith("not read: every worker was still waiting")


def test_hosts_out_of_time_are_given_up_on_at_a_given_moment():
    """Without threads: which hosts discover_hosts gives up on at a moment, and when it looks again."""
    targets = [Target(name, None, Rules(), timeout) for name, timeout in
               (("reading", 2), ("late", 1), ("queued", 1), ("done", 1))]
    run = _Discovery(targets, (OSError,), (LookupError,), workers=1)
    run.hard_end = 1000.0
    run.starts.update(reading=100.0, late=100.0, done=100.0)
    run.results["done"] = HostResult("done")
    assert run.give_up_on_late(now=102.5) == [103.0]  # reading: its 2 s and the grace second
    assert run.results["late"].error == "no answer within 1s" and run.results["late"].seconds == 1
    assert "reading" not in run.results and "queued" not in run.results
    run.hard_end = 102.5  # every host's time is up: those still reading or queued are given up on
    assert run.give_up_on_late(now=102.5) == []
    assert run.results["reading"].error == "no answer within 2s" and run.results["queued"].error == NOT_READ
    assert run.results["done"].error is None
