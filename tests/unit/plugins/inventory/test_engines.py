# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The inventory plugin september.engine.engines on fake Docker daemons (tests/unit/plugins/inventory/conftest.py).

The plugin runs as ansible-inventory runs it (its documented options registered with Ansible's configuration, its
YAML file read by Ansible's loader, a real InventoryData, the real jsonfile cache plugin); only the Docker daemons
are fakes. The real thing, against real Engines: tests/system/test_inventory_plugin.py and the lab's.
"""

from __future__ import annotations

import textwrap

import docker.errors
import pytest
import yaml
from ansible import constants as C
from ansible.errors import AnsibleError, AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.doc_fragments import constructed, inventory_cache
from ansible.template import Templar, is_trusted_as_template

from ansible_collections.september.engine.plugins.inventory import engines as engines_mod

NAME = "september.engine.engines"
SECRET = "sk-unit-secret"


class Recorder:
    """The plugin's display: warnings kept for the test, the rest passed on."""

    def __init__(self, real):
        self.real = real
        self.warnings: list = []

    def warning(self, msg, *args, **kwargs):
        self.warnings.append(str(msg))

    def __getattr__(self, name):
        return getattr(self.real, name)


@pytest.fixture(scope="module", autouse=True)
def _registered():
    """Register the plugin's options with Ansible's configuration, as the plugin loader does (docs + fragments)."""
    options: dict = {}
    for fragment in (constructed, inventory_cache):
        options.update(yaml.safe_load(fragment.ModuleDocFragment.DOCUMENTATION)["options"])
    options.update(yaml.safe_load(engines_mod.DOCUMENTATION)["options"])
    C.config.initialize_plugin_configuration_definitions("inventory", NAME, options)


@pytest.fixture
def daemons(monkeypatch, fake):
    """name -> a FakeApi, or an exception its connection raises; the plugin's Docker hosts by entry name."""
    apis: dict = {}

    def connect(self, entry):
        def opened(timeout):
            api = apis[entry["name"]]
            if isinstance(api, BaseException):
                raise api
            return api

        return opened

    monkeypatch.setattr(engines_mod.InventoryModule, "_connect", connect)
    monkeypatch.setattr(engines_mod, "NotFound", fake.FakeNotFound)
    return apis


@pytest.fixture
def inventory_of(tmp_path):
    """``inventory_of(config_text, cache=True)``: (InventoryData, plugin) after a parse of that configuration."""

    def run(text: str, *, cache: bool = True, filename: str = "fleet.engines.yml"):
        path = tmp_path / filename
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        plugin = engines_mod.InventoryModule()
        plugin._load_name = plugin.ansible_name = NAME
        plugin.display = Recorder(plugin.display)
        inventory = InventoryData()
        assert plugin.verify_file(str(path))
        plugin.parse(inventory, DataLoader(), str(path), cache=cache)
        plugin.update_cache_if_changed() if plugin.get_option("cache") else None
        return inventory, plugin

    return run


def hostvars(inventory: InventoryData, name: str) -> dict:
    return dict(inventory.get_host(name).vars)


def members(inventory: InventoryData, group: str) -> list:
    return sorted(h.name for h in inventory.groups[group].get_hosts()) if group in inventory.groups else []


def fleet(fake):
    """h1: a per-user Engine and a Compose project; h2: a per-user Engine of the same id; local: a Compose v1 one."""
    images = [fake.image(f"engine:{v}", v) for v in ("2.3.0", "2.4.0")]
    return {
        "h1": fake.FakeApi([fake.engine_container("u001", "2.3.0", 9001),
                            fake.compose_engine("shop", "2.4.0", 9002, extra_labels={"tier": "canary"})], images),
        "h2": fake.FakeApi([fake.engine_container("u001", "2.3.0", 9001, labels={"tier": "gold"})], images),
        "local": fake.FakeApi([fake.compose_engine("c1", "2.3.0", 9105, v2=False, workdir="/tmp/fleet")], images),
    }  # fmt: skip


CONFIG = """
    plugin: september.engine.engines
    docker_hosts:
      - name: h1
        docker_host: tcp://10.0.0.1:2376
        ansible_host: 10.0.0.1
        ansible_port: 2222
        ansible_user: deploy
        ansible_ssh_private_key_file: /keys/deploy
        vars:
          ansible_python_interpreter: /usr/bin/python3
          engine_state_dir: /srv/september-engine
      - name: h2
        docker_host: ssh://deploy@10.0.0.2
        ansible_host: 10.0.0.2
        ansible_user: deploy
      - name: local
"""


def test_verify_file(tmp_path):
    plugin = engines_mod.InventoryModule()
    for name, ok in (("engines.yml", True), ("prod.engines.yaml", True), ("engines.json", False),
                     ("inventory.yml", False), ("docker.yml", False)):  # fmt: skip
        (tmp_path / name).write_text("plugin: september.engine.engines\n", encoding="utf-8")
        assert plugin.verify_file(str(tmp_path / name)) is ok, name
    assert not plugin.verify_file(str(tmp_path / "missing.engines.yml"))


def test_one_host_per_engine_with_what_the_roles_need(fake, daemons, inventory_of):
    daemons.update(fleet(fake))
    inventory, plugin = inventory_of(CONFIG)
    assert plugin.display.warnings == []
    assert sorted(inventory.hosts) == ["h1-shop", "h1-u001", "h2-u001", "local-c1"]

    single = hostvars(inventory, "h1-u001")
    assert single == {
        "inventory_file": single["inventory_file"], "inventory_dir": single["inventory_dir"],
        "engine_id": "u001", "engine_deployment": "container", "engine_container_name": "u001",
        "engine_docker_host": "h1", "engine_image": "engine:2.3.0", "engine_version": "2.3.0",
        "engine_url": "http://127.0.0.1:9001", "engine_volume": "engine-data-u001",
        "engine_container_state": "running",
        "ansible_host": "10.0.0.1", "ansible_port": 2222, "ansible_user": "deploy",
        "ansible_ssh_private_key_file": "/keys/deploy",
        "ansible_python_interpreter": "/usr/bin/python3", "engine_state_dir": "/srv/september-engine",
    }  # fmt: skip
    project = hostvars(inventory, "h1-shop")
    assert {k: v for k, v in project.items() if k.startswith("engine_compose")} == {
        "engine_compose_dir": "/srv/september/shop",
        "engine_compose_service": "engine",
        "engine_compose_project": "shop",
        "engine_compose_files": ["/srv/september/shop/docker-compose.yml"],
        "engine_compose_env_file": "/srv/september/shop/.env",
    }
    assert (project["engine_deployment"], project["engine_version"]) == ("compose", "2.4.0")
    assert "engine_container_name" not in project
    # the same Engine id on another Docker host is another Engine, reached through that host
    other = hostvars(inventory, "h2-u001")
    assert (other["ansible_host"], other["engine_docker_host"], other["ansible_user"]) == ("10.0.0.2", "h2", "deploy")
    assert "ansible_port" not in other and "engine_state_dir" not in other
    # this machine's Docker: a local connection with the controller's Python; Compose v1 (no env file label)
    local = hostvars(inventory, "local-c1")
    assert local["ansible_connection"] == "local"
    assert local["ansible_python_interpreter"] == "{{ ansible_playbook_python }}"
    assert is_trusted_as_template(local["ansible_python_interpreter"])
    assert "ansible_host" not in local and "engine_compose_env_file" not in local
    assert local["engine_compose_files"] == ["/tmp/fleet/c1/docker-compose.yml"]

    assert members(inventory, "engines") == ["h1-shop", "h1-u001", "h2-u001", "local-c1"]
    assert members(inventory, "engines_container") == ["h1-u001", "h2-u001"]
    assert members(inventory, "engines_compose") == ["h1-shop", "local-c1"]
    assert members(inventory, "docker_host_h1") == ["h1-shop", "h1-u001"]
    assert members(inventory, "docker_host_local") == ["local-c1"]
    assert members(inventory, "engine_version_2_3_0") == ["h1-u001", "h2-u001", "local-c1"]
    assert members(inventory, "engine_version_2_4_0") == ["h1-shop"]
    # nothing secret, and no key unless the configuration gives one
    everything = repr({h: hostvars(inventory, h) for h in inventory.hosts})
    assert SECRET not in everything and "engine_api_key" not in everything


def test_the_key_only_as_configured_and_never_rendered_here(fake, daemons, inventory_of, monkeypatch):
    monkeypatch.setenv("UNIT_ENGINE_KEY", "from-the-environment")
    daemons["h1"] = fake.FakeApi([fake.engine_container("u001")])
    inventory, _plugin = inventory_of(
        """
        plugin: september.engine.engines
        docker_hosts:
          - name: h1
            docker_host: unix:///var/run/docker.sock
            ansible_host: 10.0.0.1
            vars:
              engine_api_key: "{{ lookup('env', 'UNIT_ENGINE_KEY') }}"
        """
    )
    key = hostvars(inventory, "h1-u001")["engine_api_key"]
    assert key == "{{ lookup('env', 'UNIT_ENGINE_KEY') }}"  # a template of the user's, left as such
    assert Templar(loader=DataLoader(), variables={}).template(key) == "from-the-environment"


def test_discovered_values_are_never_templates(fake, daemons, inventory_of):
    """A label or image label is data from the Docker host: whatever it holds, Ansible never renders it."""
    evil = "{{ lookup('pipe', 'id') }}"
    box = fake.engine_container("u001", labels={"tier": evil})
    daemons["h1"] = fake.FakeApi([box], [fake.image("engine:2.3.0", evil)])
    inventory, _plugin = inventory_of(
        """
        plugin: september.engine.engines
        docker_hosts: [{name: h1, docker_host: "tcp://h1:2375", ansible_host: h1}]
        compose:
          engine_tier: engine_labels.tier
        """
    )
    hv = hostvars(inventory, "h1-u001")
    assert hv["engine_version"] == evil and not is_trusted_as_template(hv["engine_version"])
    assert not is_trusted_as_template(hv["engine_tier"])
    assert Templar(loader=DataLoader(), variables={}).template(hv["engine_version"]) == evil
    # a value that cannot render anything stays a plain string: ansible-inventory and AWX show it as such
    assert is_trusted_as_template(hv["engine_url"]) and is_trusted_as_template(hv["engine_id"])
    assert members(inventory, "engine_version_" + engines_mod.group_part(evil)) == ["h1-u001"]  # the text, as such


def test_hostname_template(fake, daemons, inventory_of):
    daemons.update(fleet(fake))
    template = '    hostname_template: "{{ engine_id }}.{{ engine_docker_host }}.engines"\n'
    inventory, _plugin = inventory_of(CONFIG + template)
    assert sorted(inventory.hosts) == ["c1.local.engines", "shop.h1.engines", "u001.h1.engines", "u001.h2.engines"]


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("{{ engine_id }}", "two Engines the inventory name u001: u001 on h1 and u001 on h2"),
        ("{{ no_such_variable }}", "failed for Engine"),
        ("{{ engine_id }} {{ engine_docker_host }}", "without spaces"),
    ],
)
def test_hostname_template_errors(fake, daemons, inventory_of, template, error):
    """Two Engines are never merged into one inventory host; a name that cannot be made stops the inventory."""
    daemons.update(fleet(fake))
    with pytest.raises(AnsibleParserError, match=error):
        inventory_of(CONFIG + f'    hostname_template: "{template}"\n')


def test_keyed_groups_groups_and_compose(fake, daemons, inventory_of):
    daemons.update(fleet(fake))
    inventory, _plugin = inventory_of(
        CONFIG
        + """
    keyed_groups:
      - key: engine_labels.tier | default('standard')
        prefix: tier
      - key: engine_deployment ~ '_' ~ engine_docker_host
        prefix: ""
        separator: ""
    groups:
      engine_canary: "engine_labels.tier | default('') == 'canary'"
      ssh_engines: ansible_connection | default('ssh') != 'local'
    compose:
      engine_upgrade_bake_seconds: 120 if engine_deployment == 'compose' else 0
      engine_where: engine_container ~ '@' ~ engine_docker_host
    """
    )
    assert members(inventory, "tier_canary") == ["h1-shop"]
    assert members(inventory, "tier_gold") == ["h2-u001"]
    assert members(inventory, "tier_standard") == ["h1-u001", "local-c1"]
    assert members(inventory, "compose_h1") == ["h1-shop"]
    assert members(inventory, "container_h2") == ["h2-u001"]
    assert members(inventory, "engine_canary") == ["h1-shop"]
    assert members(inventory, "ssh_engines") == ["h1-shop", "h1-u001", "h2-u001"]
    assert hostvars(inventory, "h1-shop")["engine_upgrade_bake_seconds"] == 120
    assert hostvars(inventory, "h1-u001")["engine_upgrade_bake_seconds"] == 0
    assert hostvars(inventory, "local-c1")["engine_where"] == "c1_engine_1@local"
    assert "engine_labels" not in hostvars(inventory, "h1-shop")  # for constructing, not a host variable


def test_strict_makes_a_bad_expression_an_error(fake, daemons, inventory_of):
    daemons.update(fleet(fake))
    loose = CONFIG + "    compose:\n      broken: no_such_variable + 1\n"
    inventory, _plugin = inventory_of(loose)
    assert "broken" not in hostvars(inventory, "h1-u001")
    with pytest.raises(AnsibleError, match="Could not set broken"):
        inventory_of(loose + "    strict: true\n")


def test_a_dead_host_is_a_warning_and_its_engines_are_absent(fake, daemons, inventory_of):
    daemons.update(fleet(fake))
    daemons["h2"] = docker.errors.DockerException(
        "Error while fetching server API version: ('Connection aborted.', ConnectionRefusedError(111, 'refused'))"
    )
    inventory, plugin = inventory_of(CONFIG)
    assert sorted(inventory.hosts) == ["h1-shop", "h1-u001", "local-c1"]
    assert members(inventory, "docker_host_h2") == []
    (warning,) = plugin.display.warnings
    assert warning.startswith("Docker host h2 (ssh://deploy@10.0.0.2): DockerException: Error while fetching")
    assert "its Engines are not in the inventory" in warning
    with pytest.raises(AnsibleError, match=r"Docker host h2 \(ssh://deploy@10.0.0.2\): DockerException"):
        inventory_of(CONFIG + "    strict: true\n")


def test_a_host_that_does_not_answer_in_time(fake, daemons, inventory_of):
    daemons.update(fleet(fake))
    daemons["h2"] = hanging = fake.HangingApi()
    try:
        slow = "ansible_user: deploy\n        timeout: 0.3\n      - name: local"
        inventory, plugin = inventory_of(CONFIG.replace("ansible_user: deploy\n      - name: local", slow))
    finally:
        hanging.release.set()
    assert sorted(inventory.hosts) == ["h1-shop", "h1-u001", "local-c1"]
    assert plugin.display.warnings == [
        "Docker host h2 (ssh://deploy@10.0.0.2): no answer within 0.3s; its Engines are not in the inventory"
    ]


def test_an_unfinished_upgrade_is_said(fake, daemons, inventory_of):
    daemons["h1"] = fake.FakeApi([fake.engine_container("u003", name="u003--previous", state="exited", port=9003)])
    inventory, plugin = inventory_of("plugin: september.engine.engines\ndocker_hosts: [{name: h1}]\n")
    assert hostvars(inventory, "h1-u003")["engine_container_name"] == "u003"
    assert hostvars(inventory, "h1-u003")["engine_container_state"] == "exited"
    assert plugin.display.warnings == [
        "Docker host h1 (local Docker): Engine h1-u003: only u003--previous exists (an upgrade or rollback did not "
        "finish)"
    ]


CACHED = """
    plugin: september.engine.engines
    docker_hosts:
      - {name: h1, docker_host: "tcp://10.0.0.1:2376", ansible_host: 10.0.0.1}
      - {name: h2, docker_host: "ssh://deploy@10.0.0.2", ansible_host: 10.0.0.2}
    cache: true
    cache_plugin: jsonfile
    cache_connection: {cache_dir}
    cache_timeout: 600
"""


def test_the_inventory_cache(fake, daemons, inventory_of, tmp_path):
    daemons.update(fleet(fake))
    config = CACHED.replace("{cache_dir}", str(tmp_path / "cache"))

    def list_calls() -> int:
        return sum(1 for name in ("h1", "h2") for call in daemons[name].calls if call[0] == "containers")

    first, _plugin = inventory_of(config)
    assert list_calls() == 2
    assert list((tmp_path / "cache").iterdir()), "the jsonfile cache holds the discovery"
    assert SECRET not in "".join(p.read_text() for p in (tmp_path / "cache").iterdir())

    # a new run (a new plugin, as a new ansible-playbook): from the cache, no Docker host asked
    second, _plugin = inventory_of(config + "    keyed_groups: [{key: engine_deployment, prefix: model}]\n")
    assert list_calls() == 2
    assert sorted(second.hosts) == sorted(first.hosts) == ["h1-shop", "h1-u001", "h2-u001"]
    assert hostvars(second, "h1-shop") == hostvars(first, "h1-shop")
    assert members(second, "model_compose") == ["h1-shop"]  # groups are made again from the cached discovery

    # --flush-cache (cache=False) asks again; so does another list of hosts or rules of discovery
    inventory_of(config, cache=False)
    assert list_calls() == 4
    inventory_of(config + "    required_labels: [tier]\n")
    assert list_calls() == 6

    # a discovery with a dead host is not cached: the next run asks again
    daemons["h2"] = OSError("No route to host")
    config = config.replace("cache_timeout: 600", "cache_timeout: 601")
    (tmp_path / "cache2").mkdir()
    config = config.replace(str(tmp_path / "cache"), str(tmp_path / "cache2"))
    _inventory, plugin = inventory_of(config)
    assert any("not caching this discovery: h2 did not answer" in w for w in plugin.display.warnings)
    assert list((tmp_path / "cache2").iterdir()) == []


BAD = """
    plugin: september.engine.engines
    docker_hosts:
      - name: h1
        docker_host: tcp://10.0.0.1:2376
        ansible_host: 10.0.0.1
        engine_state_dir: /srv/x
      - name: h1
        ansible_host: 10.0.0.2
      - docker_host: tcp://10.0.0.1:2376
      - name: "bad name"
        vars: [engine_state_dir]
        required_labels: ["=prod"]
      - just-a-string
    container_labels: ["", "io.september.engine_id"]
    deployments: []
    engine_port: 80000
"""


def test_a_bad_configuration_is_one_clear_error(daemons, inventory_of):
    with pytest.raises(AnsibleParserError) as info:
        inventory_of(BAD)
    message = str(info.value)
    assert "the september.engine.engines configuration has 12 problem(s)" in message
    for expected in (
        "docker_hosts[0] (h1): unknown key(s) engine_state_dir (variables for its Engines go under 'vars')",
        "docker_hosts[1] (h1): the name h1 is given twice",
        "docker_hosts[1] (h1): docker_host is required when ansible_host is set",
        "docker_hosts[2]: 'name' must be given",
        "docker_hosts[2]: docker_host tcp://10.0.0.1:2376 is listed twice",
        "docker_hosts[3] (bad name): 'name' must be given, of letters, digits",
        "docker_hosts[3] (bad name): 'vars' must be a mapping",
        "docker_hosts[3] (bad name): required_labels: a label selector is 'key' or 'key=value', not '=prod'",
        "docker_hosts[4]: each Docker host is a mapping",
        "container_labels: a label selector is 'key' or 'key=value', not ''",
        "deployments: name at least one of container, compose",
        "engine_port: 80000 is not a TCP port",
    ):
        assert expected in message, expected
    assert daemons == {}  # nothing was asked of any Docker host


def test_option_types_are_checked_by_ansible(inventory_of):
    with pytest.raises(AnsibleError, match="deployments"):
        inventory_of("plugin: september.engine.engines\ndocker_hosts: [{name: h1}]\ndeployments: [swarm]\n")
    with pytest.raises(AnsibleError, match="docker_hosts"):
        inventory_of("plugin: september.engine.engines\n")


def test_without_the_docker_sdk(monkeypatch, inventory_of):
    monkeypatch.setattr(engines_mod, "HAS_DOCKER", False)
    with pytest.raises(AnsibleError, match=r"needs the Docker SDK for Python on the controller: pip install"):
        inventory_of("plugin: september.engine.engines\ndocker_hosts: [{name: local}]\n")


def test_the_docker_clients_the_plugin_makes(monkeypatch, tmp_path):
    """How an entry becomes a Docker client: URL, TLS, ssh client, API version, the time left; DOCKER_HOST locally."""
    made: list = []
    monkeypatch.setattr(engines_mod.docker, "APIClient", lambda **kwargs: made.append(kwargs) or kwargs)
    plugin = engines_mod.InventoryModule()
    monkeypatch.setattr(engines_mod, "HAS_PARAMIKO", False)
    with pytest.raises(docker.errors.DockerException, match=r"need paramiko on the controller.*docker\[ssh\]"):
        plugin._connect({"name": "a", "docker_host": "ssh://deploy@h"})(4.5)
    monkeypatch.setattr(engines_mod, "HAS_PARAMIKO", True)
    plugin._connect({"name": "a", "docker_host": "ssh://deploy@h", "api_version": "1.43"})(4.5)
    assert made[-1] == {"version": "1.43", "timeout": 4.5, "base_url": "ssh://deploy@h", "use_ssh_client": True}
    ca, cert, key = (tmp_path / n for n in ("ca.pem", "c.pem", "k.pem"))
    for path in (ca, cert, key):
        path.write_text("-----BEGIN-----\n", encoding="utf-8")
    plugin._connect({"name": "b", "docker_host": "tcp://h:2376", "tls_verify": True, "ca_path": str(ca),
                     "client_cert": str(cert), "client_key": str(key)})(3)  # fmt: skip
    tls = made[-1]["tls"]
    assert (made[-1]["base_url"], tls.verify, tls.cert) == ("tcp://h:2376", str(ca), (str(cert), str(key)))
    monkeypatch.setenv("UNIT_TLS_DIR", str(tmp_path))  # an AWX credential's files, named by its variables
    plugin._connect({"name": "c", "docker_host": "tcp://h:2376", "tls_verify": True, "ca_path": "$UNIT_TLS_DIR/ca.pem",
                     "client_cert": "${UNIT_TLS_DIR}/c.pem", "client_key": "$UNIT_TLS_DIR/k.pem"})(3)  # fmt: skip
    assert (made[-1]["tls"].verify, made[-1]["tls"].cert) == (str(ca), (str(cert), str(key)))
    plugin._connect({"name": "d", "docker_host": "tcp://h:2376", "tls": True})(3)
    assert (made[-1]["tls"].verify, made[-1]["tls"].cert) == (False, None)
    monkeypatch.setenv("DOCKER_HOST", "tcp://from-env:2375")
    plugin._connect({"name": "local"})(2)
    assert made[-1] == {"version": "auto", "timeout": 2, "base_url": "tcp://from-env:2375"}


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"name": "h1", "docker_host": "tcp://h1:2376"}, []),
        ({"name": "h1"}, []),  # the local Docker
        ({"name": "h1", "docker_host": "h1:2376"}, ["docker_host 'h1:2376' is not a URL"]),
        ({"name": "h1", "docker_host": 2376}, ["docker_host 2376 is not a URL"]),
        ({"name": "h1", "docker_host": "tcp://seen:2376"}, ["docker_host tcp://seen:2376 is listed twice"]),
        ({"name": "h1", "ansible_host": "10.0.0.1"}, ["docker_host is required when ansible_host is set"]),
        ({"name": "h1", "ansible_host": "10.0.0.1", "ansible_connection": "local"}, []),
    ],
)
def test_entry_url_problems(entry, expected):
    urls = {"tcp://seen:2376"}
    problems = engines_mod.entry_url_problems(entry, urls)
    assert len(problems) == len(expected)
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start)
    if not expected and entry.get("docker_host"):
        assert entry["docker_host"] in urls  # a later entry with the same URL is then told


def test_entry_name_problems_remember_the_names():
    names: set = set()
    assert engines_mod.entry_name_problems("h1", names) == []
    assert engines_mod.entry_name_problems("h1", names) == ["the name h1 is given twice"]
    assert engines_mod.entry_name_problems("bad name", names)[0].startswith("'name' must be given")
    assert engines_mod.entry_name_problems(None, names)[0].startswith("'name' must be given")


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"vars": {"a": 1}, "required_labels": ["tier=prod"], "timeout": 2.5}, []),
        ({"vars": ["a"]}, ["'vars' must be a mapping"]),
        ({"required_labels": "tier=prod"}, ["required_labels must be a list"]),
        ({"required_labels": "=prod"}, ["required_labels: a label selector", "required_labels must be a list"]),
        ({"timeout": 0}, ["timeout must be a number of seconds above 0"]),
        ({"timeout": "5"}, ["timeout must be a number of seconds above 0"]),
    ],
)
def test_entry_option_problems(entry, expected):
    problems = engines_mod.entry_option_problems(entry)
    assert len(problems) == len(expected)
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start)
