# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The pure config logic of a faithful recreate: what is copied, what is dropped as an old image's default."""

from __future__ import annotations

import pytest

from ansible_collections.september.engine.plugins.module_utils._container import (
    PREVIOUS_IMAGE_LABEL,
    ROLLED_BACK_FROM_LABEL,
    command_from_container,
    config_from_container,
    create_request,
    endpoint_from_container,
    env_without_image_defaults,
    host_config_from_container,
    image_settings_from_container,
    labels_without_image_defaults,
    networks_from_container,
    pull_failure_kind,
    runtime_settings_from_container,
    same_setting,
    split_reference,
)

CID = "5d3430eac02c6f0a8d4c8a5e1b1f0f4c3d2e1a0b9c8d7e6f5a4b3c2d1e0f9a8b"

IMAGE_230 = {
    "Env": [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "SQLITE_DB_PATH=/data/brain.sqlite",
        "ENGINE_VERSION=2.3.0",
        "ENGINE_FLAW=none",
    ],
    "Cmd": ["python3", "-m", "engine.server"],
    "WorkingDir": "/app",
    "ExposedPorts": {"8000/tcp": {}},
    "Labels": {"org.opencontainers.image.title": "september-engine", "org.opencontainers.image.version": "2.3.0"},
}

# What Docker shows for a container an orchestrator created from engine:2.3.0.
CONFIG_230 = {
    "Hostname": CID[:12],
    "Domainname": "",
    "User": "",
    "AttachStdin": False,
    "AttachStdout": False,
    "AttachStderr": False,
    "ExposedPorts": {"8000/tcp": {}},
    "Tty": False,
    "OpenStdin": False,
    "StdinOnce": False,
    "Env": ["ENGINE_API_KEY=s3cret-key", "TENANT=acme", *IMAGE_230["Env"]],
    "Cmd": ["python3", "-m", "engine.server"],
    "Image": "engine:2.3.0",
    "Volumes": {"/data": {}},
    "WorkingDir": "/app",
    "Entrypoint": None,
    "OnBuild": None,
    "Labels": {
        "io.september.engine_id": "u001",
        "com.example.tenant": "acme",
        **IMAGE_230["Labels"],
    },
}


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (None, None, True),
        (None, [], True),
        ("", None, True),
        ({}, None, True),
        (["a"], ["a"], True),
        (["a"], None, False),
        (None, ["a"], False),
        ("SIGTERM", "SIGINT", False),
    ],
)
def test_same_setting(a, b, same):
    assert same_setting(a, b) is same


@pytest.mark.parametrize(
    ("env", "image_env", "kept"),
    [
        # the old image's baked-in version must not follow the Engine onto the new image
        (["ENGINE_VERSION=2.3.0", "ENGINE_API_KEY=k"], ["ENGINE_VERSION=2.3.0"], ["ENGINE_API_KEY=k"]),
        # the orchestrator overrode an image default: a different value is the creator's, kept
        (["SQLITE_DB_PATH=/srv/b.sqlite"], ["SQLITE_DB_PATH=/data/brain.sqlite"], ["SQLITE_DB_PATH=/srv/b.sqlite"]),
        # same name, same value: indistinguishable from the image default, dropped
        (["SQLITE_DB_PATH=/data/brain.sqlite"], ["SQLITE_DB_PATH=/data/brain.sqlite"], []),
        (["A=1", "B=2"], None, ["A=1", "B=2"]),
        (None, ["A=1"], []),
        (["EMPTY="], ["EMPTY=x"], ["EMPTY="]),
    ],
)
def test_env_without_image_defaults(env, image_env, kept):
    assert env_without_image_defaults(env, image_env) == kept


@pytest.mark.parametrize(
    ("labels", "image_labels", "kept"),
    [
        (
            {"org.opencontainers.image.version": "2.3.0", "io.september.fleet": "f"},
            {"org.opencontainers.image.version": "2.3.0"},
            {"io.september.fleet": "f"},
        ),
        # an orchestrator label that shadows an image label with another value is kept
        ({"org.opencontainers.image.title": "tenant build"}, {"org.opencontainers.image.title": "engine"},
         {"org.opencontainers.image.title": "tenant build"}),
        # what this module records is never copied: it is written again for each switch
        ({PREVIOUS_IMAGE_LABEL: "engine:2.2.0", ROLLED_BACK_FROM_LABEL: "engine:2.4.1", "x": "1"}, {}, {"x": "1"}),
        (None, {"a": "b"}, {}),
    ],
)
def test_labels_without_image_defaults(labels, image_labels, kept):
    assert labels_without_image_defaults(labels, image_labels) == kept


def test_config_of_an_orchestrator_container_keeps_only_what_the_orchestrator_set():
    out = config_from_container(CONFIG_230, IMAGE_230, CID)
    assert out == {
        "Env": ["ENGINE_API_KEY=s3cret-key", "TENANT=acme"],
        "Labels": {"io.september.engine_id": "u001", "com.example.tenant": "acme"},
        "Volumes": {"/data": {}},
    }


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # command: the image's is dropped, another one is the creator's
        ({"Cmd": ["python3", "-m", "engine.server"]}, {}),
        ({"Cmd": ["python3", "-m", "engine.server", "--debug"]},
         {"Cmd": ["python3", "-m", "engine.server", "--debug"]}),
        # an entrypoint of the creator's: Cmd is the creator's too (Docker did not inherit the image's)
        ({"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["python3 -m engine.server"]},
         {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["python3 -m engine.server"]}),
        ({"Entrypoint": ["/usr/bin/tini", "--"], "Cmd": None}, {"Entrypoint": ["/usr/bin/tini", "--"]}),
        ({"WorkingDir": "/app"}, {}),
        ({"WorkingDir": "/srv"}, {"WorkingDir": "/srv"}),
        ({"User": "1000:1000"}, {"User": "1000:1000"}),
        ({"User": ""}, {}),
        ({"StopSignal": "SIGINT"}, {"StopSignal": "SIGINT"}),
        ({"StopTimeout": 45}, {"StopTimeout": 45}),
        ({"Healthcheck": {"Test": ["CMD", "curl", "-f", "http://localhost:8000/health"], "Interval": 30000000000}},
         {"Healthcheck": {"Test": ["CMD", "curl", "-f", "http://localhost:8000/health"], "Interval": 30000000000}}),
        # an exposed port of the creator's beyond the image's
        ({"ExposedPorts": {"8000/tcp": {}, "9100/tcp": {}}}, {"ExposedPorts": {"9100/tcp": {}}}),
        # the generated hostname (the short id) is Docker's, an explicit one the creator's
        ({"Hostname": "engine-u001"}, {"Hostname": "engine-u001"}),
        ({"Domainname": "engines.internal"}, {"Domainname": "engines.internal"}),
        ({"Tty": True, "OpenStdin": True}, {"Tty": True, "OpenStdin": True}),
    ],
)
def test_config_copied_or_dropped(overrides, expected):
    config = {**CONFIG_230, "Env": [], "Labels": {}, "Volumes": None, **overrides}
    assert config_from_container(config, IMAGE_230, CID) == expected


@pytest.mark.parametrize(
    ("image_extra", "overrides", "expected"),
    [
        # the image's own healthcheck, user, stop signal and entrypoint are dropped so the new image's apply
        ({"Healthcheck": {"Test": ["CMD", "true"]}}, {"Healthcheck": {"Test": ["CMD", "true"]}}, {}),
        ({"User": "engine"}, {"User": "engine"}, {}),
        ({"StopSignal": "SIGINT"}, {"StopSignal": "SIGINT"}, {}),
        ({"Entrypoint": ["/entry.sh"]}, {"Entrypoint": ["/entry.sh"]}, {}),
        # the image has an entrypoint the creator cleared (docker run --entrypoint "")
        ({"Entrypoint": ["/entry.sh"]}, {"Entrypoint": None, "Cmd": ["sleep", "1"]},
         {"Entrypoint": [""], "Cmd": ["sleep", "1"]}),
        # an image VOLUME is dropped from Config.Volumes (the anonymous volume itself is bound again by name)
        ({"Volumes": {"/cache": {}}}, {"Volumes": {"/cache": {}, "/data": {}}}, {"Volumes": {"/data": {}}}),
    ],
)
def test_image_defaults_are_dropped(image_extra, overrides, expected):
    image = {**IMAGE_230, **image_extra}
    config = {**CONFIG_230, "Env": [], "Labels": {}, "Volumes": None, **overrides}
    assert config_from_container(config, image, CID) == expected


def test_config_without_image_config_copies_everything_set():
    out = config_from_container(CONFIG_230, None, CID)
    assert "ENGINE_VERSION=2.3.0" in out["Env"]
    assert out["Cmd"] == ["python3", "-m", "engine.server"]
    assert out["WorkingDir"] == "/app"


HOST_CONFIG = {
    "Binds": ["engine-data-u001:/data:rw"],
    "ContainerIDFile": "",
    "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m"}},
    "NetworkMode": "engine_net",
    "PortBindings": {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "9001"}]},
    "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
    "Memory": 536870912,
    "AutoRemove": False,
}


def test_host_config_is_passed_back_whole():
    out = host_config_from_container(HOST_CONFIG, [], {"Volumes": {"/data": {}}})
    expected = dict(HOST_CONFIG)
    expected.pop("ContainerIDFile")
    assert out == expected
    assert out is not HOST_CONFIG and out["PortBindings"] is not HOST_CONFIG["PortBindings"]


@pytest.mark.parametrize(
    ("mounts", "declared", "binds"),
    [
        # the named volume of the contract is in Binds already: nothing added
        ([{"Type": "volume", "Name": "engine-data-u001", "Destination": "/data", "RW": True}], {"/data": {}},
         ["engine-data-u001:/data:rw"]),
        # an anonymous volume (image VOLUME or -v /path) is bound again by its name, keeping its data
        ([{"Type": "volume", "Name": "3f2a" * 16, "Destination": "/cache", "RW": True}], {"/cache": {}},
         ["engine-data-u001:/data:rw", f"{'3f2a' * 16}:/cache"]),
        ([{"Type": "volume", "Name": "ab" * 32, "Destination": "/ro", "RW": False}], {"/ro": {}},
         ["engine-data-u001:/data:rw", f"{'ab' * 32}:/ro:ro"]),
        # a volume that came from elsewhere (volumes-from), not declared on this container: left alone
        ([{"Type": "volume", "Name": "cd" * 32, "Destination": "/shared", "RW": True}], {},
         ["engine-data-u001:/data:rw"]),
        # bind mounts are in Binds already
        ([{"Type": "bind", "Source": "/etc/engine", "Destination": "/etc/engine"}], {},
         ["engine-data-u001:/data:rw"]),
    ],
)
def test_anonymous_volumes_are_carried_over(mounts, declared, binds):
    assert host_config_from_container(HOST_CONFIG, mounts, {"Volumes": declared})["Binds"] == binds


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        # Docker's short-id alias and the run-time fields are dropped
        (
            {"Aliases": ["engine-u001", CID[:12]], "NetworkID": "n1", "EndpointID": "e1", "IPAddress": "192.168.0.4",
             "Gateway": "192.168.0.1", "MacAddress": "02:42:c0:a8:00:04", "IPAMConfig": None, "Links": None},
            {"Aliases": ["engine-u001"]},
        ),
        ({"Aliases": [CID[:12]], "IPAddress": "10.0.0.2"}, {}),
        # an explicit address (IPAMConfig) is the creator's
        ({"IPAMConfig": {"IPv4Address": "10.5.0.10"}, "IPAddress": "10.5.0.10"},
         {"IPAMConfig": {"IPv4Address": "10.5.0.10"}}),
        ({"Links": ["db:db"], "DriverOpts": {"com.example.opt": "1"}},
         {"Links": ["db:db"], "DriverOpts": {"com.example.opt": "1"}}),
        (None, {}),
    ],
)
def test_endpoint_from_container(settings, expected):
    assert endpoint_from_container(settings, CID) == expected


@pytest.mark.parametrize(
    ("mode", "networks", "create", "connect"),
    [
        ("engine_net", {"engine_net": {"Aliases": ["e", CID[:12]]}}, {"engine_net": {"Aliases": ["e"]}}, {}),
        # an empty endpoint of the network mode is still named (harmless, explicit)
        ("engine_net", {"engine_net": {"Aliases": [CID[:12]]}}, {"engine_net": {}}, {}),
        # a second network is connected after the create (API < 1.44 takes one endpoint)
        ("engine_net", {"engine_net": {}, "monitoring": {"Aliases": ["m"]}}, {"engine_net": {}},
         {"monitoring": {"Aliases": ["m"]}}),
        # the default bridge needs no endpoint
        ("default", {"bridge": {"Aliases": None}}, {}, {}),
        # default mode with one network's endpoint: Docker attached that network, not bridge
        ("default", {"engine_net": {"Aliases": ["e"]}}, {"engine_net": {"Aliases": ["e"]}}, {}),
        ("host", {"host": {}}, {}, {}),
        ("none", {"none": {}}, {}, {}),
        ("container:abc", {}, {}, {}),
        # network mode given as a network id
        ("0123456789abcdef", {"engine_net": {"NetworkID": "0123456789abcdef0000"}}, {"engine_net": {}}, {}),
    ],
)
def test_networks_from_container(mode, networks, create, connect):
    assert networks_from_container({"NetworkMode": mode}, networks, CID) == (create, connect)


def test_create_request_on_the_new_image():
    attrs = {
        "Id": CID,
        "Config": CONFIG_230,
        "HostConfig": HOST_CONFIG,
        "Mounts": [{"Type": "volume", "Name": "engine-data-u001", "Destination": "/data", "RW": True}],
        "NetworkSettings": {"Networks": {"engine_net": {"Aliases": ["engine-u001", CID[:12]], "IPAddress": "1.2.3.4"}}},
    }
    body, connect = create_request(attrs, IMAGE_230, "engine:2.3.1", {PREVIOUS_IMAGE_LABEL: "engine:2.3.0"})
    assert body["Image"] == "engine:2.3.1"
    assert body["Env"] == ["ENGINE_API_KEY=s3cret-key", "TENANT=acme"]
    assert body["Labels"] == {
        "io.september.engine_id": "u001",
        "com.example.tenant": "acme",
        PREVIOUS_IMAGE_LABEL: "engine:2.3.0",
    }
    assert "Cmd" not in body and "WorkingDir" not in body and "Hostname" not in body
    assert body["HostConfig"]["PortBindings"] == HOST_CONFIG["PortBindings"]
    assert body["HostConfig"]["RestartPolicy"] == {"Name": "unless-stopped", "MaximumRetryCount": 0}
    assert body["HostConfig"]["Binds"] == ["engine-data-u001:/data:rw"]
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"engine_net": {"Aliases": ["engine-u001"]}}}
    assert connect == {}
    # the old container's inspect data is not modified
    assert CONFIG_230["Labels"]["org.opencontainers.image.version"] == "2.3.0"


@pytest.mark.parametrize(
    ("ref", "parts"),
    [
        ("engine:2.3.1", ("engine", "2.3.1", None)),
        ("engine", ("engine", None, None)),
        ("registry.example.com:5000/sept/engine:2.3.1", ("registry.example.com:5000/sept/engine", "2.3.1", None)),
        ("registry.example.com:5000/sept/engine", ("registry.example.com:5000/sept/engine", None, None)),
        ("engine@sha256:" + "a" * 64, ("engine", None, "sha256:" + "a" * 64)),
        ("engine:2.3.1@sha256:" + "b" * 64, ("engine", "2.3.1", "sha256:" + "b" * 64)),
    ],
)
def test_split_reference(ref, parts):
    assert split_reference(ref) == parts


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("manifest for engine:9.9.9 not found: manifest unknown: manifest unknown", "tag does not exist"),
        ("pull access denied for engine, repository does not exist or may require 'docker login'", "refused access"),
        ("unauthorized: authentication required", "refused access"),
        ('Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io: no such host', "unreachable"),
        ("net/http: request canceled (Client.Timeout exceeded)", "unreachable"),
        ("something else entirely", "could not pull"),
    ],
)
def test_pull_failure_kind(message, kind):
    assert kind in pull_failure_kind(message)


IMAGE_COMMAND = {"Entrypoint": ["/entrypoint.sh"], "Cmd": ["serve"]}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"Entrypoint": ["/entrypoint.sh"], "Cmd": ["serve"]}, {}),  # both the image's
        ({"Entrypoint": ["/entrypoint.sh"], "Cmd": None}, {}),
        ({"Entrypoint": ["/entrypoint.sh"], "Cmd": ["serve", "--debug"]}, {"Cmd": ["serve", "--debug"]}),
        ({"Entrypoint": ["/bin/sh"], "Cmd": ["serve"]}, {"Entrypoint": ["/bin/sh"], "Cmd": ["serve"]}),
        ({"Entrypoint": ["/bin/sh"], "Cmd": None}, {"Entrypoint": ["/bin/sh"]}),
        ({"Entrypoint": None, "Cmd": ["sleep", "1"]}, {"Entrypoint": [""], "Cmd": ["sleep", "1"]}),  # --entrypoint ""
    ],
)
def test_command_from_container(config, expected):
    assert command_from_container(config, IMAGE_COMMAND) == expected


def test_image_settings_from_container_keeps_the_creators_values_only():
    image = {"WorkingDir": "/app", "User": "engine", "ExposedPorts": {"8000/tcp": {}}, "Volumes": {"/data": {}}}
    config = {"WorkingDir": "/app", "User": "root", "StopSignal": "", "ExposedPorts": {"8000/tcp": {}, "9000/tcp": {}},
              "Volumes": {"/data": {}}}
    assert image_settings_from_container(config, image) == {"User": "root", "ExposedPorts": {"9000/tcp": {}}}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"Hostname": CID[:12]}, {}),  # Docker's generated hostname
        ({"Hostname": "engine-u001", "Domainname": "example.org"},
         {"Hostname": "engine-u001", "Domainname": "example.org"}),
        ({"Tty": True, "OpenStdin": False, "StopTimeout": 0}, {"Tty": True, "StopTimeout": 0}),
        ({"StopTimeout": None, "AttachStdout": True}, {"AttachStdout": True}),
    ],
)
def test_runtime_settings_from_container(config, expected):
    assert runtime_settings_from_container(config, CID) == expected
