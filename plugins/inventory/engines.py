# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: engines
short_description: One inventory host per Engine, discovered on a list of Docker hosts
version_added: 0.3.0
author:
  - September Engine maintainers (@september-engine)
description:
  - Reads the Docker daemons of a list of Docker hosts (in parallel, each within O(timeout)) and adds one inventory
    host per Engine found there, with every variable the roles of this collection read (C(engine_deployment), the
    container or the Compose folder, files, project and env file, C(engine_url), C(engine_version),
    C(engine_docker_host)) and how Ansible reaches its Docker host (C(ansible_host), C(ansible_port),
    C(ansible_user), ...), where the modules run.
  - "Per-user Engines (the orchestrator's model: one container per user) are containers that are not part of a
    Compose project and carry one of O(container_labels), or run an image of O(container_images), or mount a named
    volume C(<container_volume_prefix><engine id>) at O(data_dir) (the contract's C(engine-data-<engine_id>) at
    C(/data), on by default). The containers C(engine_container) keeps beside an Engine (C(<name>--previous),
    C(<name>--failed)) are not Engines of their own."
  - Compose-hosted Engines are the projects that run service O(compose_service), found by the
    C(com.docker.compose.*) labels Compose v1 (1.25 or newer) and v2 set; the folder, files and env file the
    project was started from are read from the same labels.
  - Every Engine, of either model, must carry all of O(required_labels) (and those of its Docker host's entry).
  - "Groups: C(engines) (all), C(docker_host_<name>), C(engines_container) or C(engines_compose),
    C(engine_version_<version with . as _>); plus what O(groups) and O(keyed_groups) make."
  - A Docker host that does not answer within O(timeout) is a warning and its Engines are left out (with
    O(strict=true), an error). With O(cache=true), discovery results are kept in Ansible's inventory cache (never
    when a host failed); the host variables, names and groups are made from them again at every run, so a change
    to this file's variables or groups takes effect at once, a change to the Docker hosts or the rules of discovery
    makes the cache miss.
  - Values read from Docker (labels, names, image references) are data, never templates; one that holds C({) or
    C(}) is marked unsafe.
  - Nothing secret is read from Docker (not the containers' environment, where the Engine key lives). Give
    C(engine_api_key) in a Docker host's O(docker_hosts[].vars) only if you must (from a vault or a lookup), better
    as a credential or extra variable (see C(docs/awx.md)).
  - The configuration is a YAML file whose name ends in C(engines.yml) or C(engines.yaml).
requirements:
  - Docker SDK for Python 7.0 or newer on the controller (in the execution environment; C(requirements.txt)).
  - For V(ssh://) Docker URLs, C(paramiko) on the controller too (C(pip install 'docker[ssh]')).
extends_documentation_fragment:
  - ansible.builtin.constructed
  - ansible.builtin.inventory_cache
options:
  plugin:
    description: The name of this plugin; always V(september.engine.engines).
    type: str
    required: true
    choices: [september.engine.engines]
  docker_hosts:
    description:
      - The Docker hosts to read, each with how the plugin reaches its Docker API and how Ansible reaches the host.
      - "An entry without C(ansible_host), or with C(ansible_connection=local), is this machine (the controller or
        the execution environment itself): its Engines get C(ansible_connection=local) and
        C(ansible_python_interpreter={{ ansible_playbook_python }}) unless its C(vars) say otherwise."
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - The Docker host's name (letters, digits, C(.), C(_), C(-)); unique. It is C(engine_docker_host) of its
            Engines (rollouts spread canaries over it) and the group C(docker_host_<name>).
        type: str
        required: true
      docker_host:
        description:
          - The Docker API URL the plugin reads, from the controller, e.g. V(unix:///var/run/docker.sock),
            V(tcp://docker1.example.com:2376) (with C(tls)), V(ssh://deploy@docker1.example.com) (the C(ssh)
            client of the controller, its C(~/.ssh/config) and agent; the remote user must be able to run
            C(docker system dial-stdio); needs C(paramiko) installed, see the requirements).
          - Required when C(ansible_host) is set; a local entry without it uses C(DOCKER_HOST) or the local socket.
        type: str
      ansible_host:
        description: The address Ansible connects to (SSH); the modules run there and reach the Engines on its loopback.
        type: str
      ansible_port:
        description: The SSH port.
        type: int
      ansible_user:
        description: The SSH user (one who may use Docker, and write C(engine_state_dir)).
        type: str
      ansible_ssh_private_key_file:
        description: The SSH key on the controller.
        type: path
      ansible_connection:
        description: V(local) for this machine; anything else is set as given (V(ssh) when unset).
        type: str
      vars:
        description:
          - Variables given to every Engine of this Docker host (they win over discovered ones), e.g.
            C(ansible_ssh_common_args), C(ansible_python_interpreter), C(engine_state_dir).
        type: dict
      required_labels:
        description: More labels every Engine of this host must carry (added to O(required_labels)).
        type: list
        elements: str
      timeout:
        description: This host's own time limit (seconds), instead of O(timeout).
        type: float
      api_version:
        description: The Docker API version to use; V(auto) asks the daemon.
        type: str
        default: auto
      tls:
        description: Use TLS without verifying the daemon's certificate (C(tcp://) only).
        type: bool
        default: false
      tls_verify:
        description: Use TLS and verify the daemon's certificate against C(ca_path).
        type: bool
        default: false
      ca_path:
        description:
          - CA certificate on the controller, for C(tls_verify). C(~) and C($VARIABLES) are expanded, so that a
            credential's files can be named, e.g. V($DOCKER_TLS_CA) (see C(docs/inventory.md), AWX).
        type: path
      client_cert:
        description: Client certificate on the controller (expanded as C(ca_path)).
        type: path
      client_key:
        description: Client key on the controller (expanded as C(ca_path)).
        type: path
      use_ssh_client:
        description: For V(ssh://) URLs, run the controller's C(ssh) client (V(true)) or use C(paramiko) (V(false)).
        type: bool
        default: true
  timeout:
    description:
      - Seconds a Docker host has to answer every call of its discovery (connect, list, inspect); one that has not
        answered by then is left out with a warning (an error with O(strict=true)).
    type: float
    default: 10
  max_workers:
    description: How many Docker hosts are read at once.
    type: int
    default: 8
  deployments:
    description: The hosting models to discover.
    type: list
    elements: str
    choices: [container, compose]
    default: [container, compose]
  required_labels:
    description:
      - Labels (V(key) or V(key=value)) every Engine of every host must carry, e.g. V(io.september.fleet=prod).
        Given to Docker as a filter.
    type: list
    elements: str
    default: []
  container_labels:
    description: A container that carries any of these labels (V(key) or V(key=value)) is a per-user Engine.
    type: list
    elements: str
    default: []
  container_images:
    description:
      - A container that runs an image of any of these repositories (V(engine),
        V(registry.example.com/september-engine); tags ignored) is a per-user Engine.
    type: list
    elements: str
    default: []
  container_volume_prefix:
    description:
      - A container that mounts a named volume C(<prefix><engine id>) at O(data_dir) is a per-user Engine, and the rest
        of the volume's name is its C(engine_id). The empty string turns this rule off.
    type: str
    default: engine-data-
  compose_service:
    description: The Compose service that is the Engine.
    type: str
    default: engine
  data_dir:
    description: Where the brain's volume is mounted in the Engine's container.
    type: str
    default: /data
  engine_port:
    description: The Engine's port in its container; C(engine_url) is where the Docker host publishes it.
    type: int
    default: 8000
  engine_id_label:
    description:
      - A label that holds the Engine's id. Without it (or when a container lacks it), the id is the rest of the volume
        name after O(container_volume_prefix), else the container's name (per-user), or the Compose project's name.
    type: str
  version_label:
    description: The image label that holds the release; without it, the image's tag is the version.
    type: str
    default: org.opencontainers.image.version
  include_stopped:
    description: Whether Engines whose container is not running are listed (so that a health run reports them).
    type: bool
    default: true
  hostname_template:
    description:
      - The inventory name of an Engine, a Jinja2 template over its variables (C(engine_id), C(engine_docker_host),
        C(engine_deployment), C(engine_container_name), C(engine_compose_project), ... and C(engine_labels)).
      - "When not set: C({{ engine_docker_host }}-{{ engine_id }}), e.g. C(docker1-u042) (the Docker host's name
        first, so that Engines of one id on two hosts stay apart)."
      - Names must be unique; two Engines given one name are an error (never merged).
    type: str
  previous_suffix:
    description: The suffix of the container C(engine_container) keeps an Engine's previous release in.
    type: str
    default: "--previous"
  failed_suffix:
    description: The suffix of the container C(engine_container) keeps a rolled-back release in.
    type: str
    default: "--failed"
notes:
  - "Every Engine gets: C(engine_id), C(engine_deployment), C(engine_docker_host), C(engine_image), C(engine_version)
    (when known), C(engine_url) (when the port is published), C(engine_volume) (a named volume at O(data_dir)),
    C(engine_container_state); C(engine_container_name) (per-user) or C(engine_compose_dir),
    C(engine_compose_service), C(engine_compose_project), C(engine_compose_files) and C(engine_compose_env_file)
    (Compose, from the labels); the connection variables of its Docker host and that host's C(vars).
    O(compose), O(groups) and O(keyed_groups) see C(engine_labels) (the container's labels) and C(engine_container)
    (the container read) too."
  - "C(engine_url) is on the Docker host's loopback (V(http://127.0.0.1:<port>)) when the port is published there or
    on every address: the modules run on the Docker host and reach the Engine from there."
seealso:
  - module: september.engine.engine_info
  - plugin: ansible.builtin.constructed
    plugin_type: inventory
"""

EXAMPLES = r"""
---
# engines.yml: two Docker hosts reached over SSH, their Docker APIs over TLS, and this machine's own Docker.
plugin: september.engine.engines
docker_hosts:
  - name: docker1
    docker_host: tcp://docker1.example.com:2376
    tls_verify: true
    ca_path: /etc/september/docker-ca.pem
    client_cert: /etc/september/docker-client.pem
    client_key: /etc/september/docker-client-key.pem
    ansible_host: docker1.example.com
    ansible_user: deploy
  - name: docker2
    docker_host: ssh://deploy@docker2.example.com
    ansible_host: docker2.example.com
    ansible_user: deploy
    vars:
      engine_state_dir: /srv/september-engine
  - name: local
    docker_host: unix:///var/run/docker.sock

---
# prod.engines.yml: only the production fleet's containers, recognised by image as well as by volume name,
# named by Engine id alone, grouped by the orchestrator's tier label, the discovery cached for ten minutes.
plugin: september.engine.engines
docker_hosts:
  - {name: eu1, docker_host: "tcp://10.0.0.11:2375", ansible_host: 10.0.0.11, ansible_user: deploy}
  - {name: eu2, docker_host: "tcp://10.0.0.12:2375", ansible_host: 10.0.0.12, ansible_user: deploy}
required_labels:
  - io.september.fleet=prod
container_images:
  - registry.example.com/september-engine
deployments: [container]
hostname_template: "{{ engine_id }}"
keyed_groups:
  - key: engine_labels['io.september.tier'] | default('standard')
    prefix: tier
groups:
  engine_canary: "'canary' in (engine_labels['io.september.tier'] | default(''))"
compose:
  engine_upgrade_bake_seconds: 120 if engine_deployment == 'compose' else 0
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/september-engine-inventory
cache_timeout: 600
strict: true
"""

import importlib.util
import os
import re

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.unsafe_proxy import wrap_var

from ansible_collections.september.engine.plugins.module_utils._discovery import (
    DEPLOYMENTS,
    Rules,
    Target,
    discover_hosts,
    parse_selector,
)

try:
    from ansible.template import trust_as_template
except ImportError:  # ansible-core < 2.19: every string from this file is a template already

    def trust_as_template(value):
        return value


try:
    import docker
    from docker.errors import DockerException, NotFound
    from requests.exceptions import RequestException

    HAS_DOCKER = True
except ImportError:
    HAS_DOCKER = False

#: Whether paramiko is there (not imported: the Docker SDK imports it for every ssh:// URL).
HAS_PARAMIKO = importlib.util.find_spec("paramiko") is not None

CACHE_FORMAT = 1
#: The default of hostname_template (not a documented default: Ansible would render that one without variables).
DEFAULT_HOSTNAME_TEMPLATE = "{{ engine_docker_host }}-{{ engine_id }}"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_GROUP_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
_TEMPLATE_CHARS = re.compile(r"[{}]")
_ENTRY_KEYS = {
    "name", "docker_host", "ansible_host", "ansible_port", "ansible_user", "ansible_ssh_private_key_file",
    "ansible_connection", "vars", "required_labels", "timeout", "api_version", "tls", "tls_verify", "ca_path",
    "client_cert", "client_key", "use_ssh_client",
}  # fmt: skip
TLS_FILES = ("ca_path", "client_cert", "client_key")
_SSH_KEYS = ("ansible_host", "ansible_port", "ansible_user", "ansible_ssh_private_key_file")


def as_data(value):
    """A value read from Docker, as an inventory value that is never rendered as a template.

    A string that holds ``{`` or ``}`` is marked unsafe. Any other string cannot render anything; it stays a plain
    (trusted) string, so that ``ansible-inventory`` shows it as such and AWX imports it as a string, not as an
    ``{"__ansible_unsafe": ...}`` mapping (the way community.docker's inventory marks data, for the same reason).
    """
    if isinstance(value, dict):
        return {k: as_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_data(v) for v in value]
    if isinstance(value, str):
        return wrap_var(value) if _TEMPLATE_CHARS.search(value) else trust_as_template(value)
    return value


def local_path(path):
    """A path on the controller as given: ``~`` and ``$VARIABLES`` expanded (an AWX credential's files)."""
    return os.path.expanduser(os.path.expandvars(path)) if path else None


def group_part(text) -> str:
    """A group name's part: every character but letters, digits and ``_`` becomes ``_``."""
    return _GROUP_UNSAFE.sub("_", str(text))


def is_local(entry: dict) -> bool:
    return entry.get("ansible_connection") == "local" or not entry.get("ansible_host")


# The problems of one docker_hosts entry (a mapping), each said without the entry it is of.

def entry_key_problems(entry: dict) -> list:
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if not unknown:
        return []
    return [f"unknown key(s) {', '.join(map(str, unknown))} (variables for its Engines go under 'vars')"]


def entry_name_problems(name, names: set) -> list:
    """A name that is not one, or that an earlier entry has; `names` (the names so far) gets this one."""
    known = name in names
    names.add(name)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        return ["'name' must be given, of letters, digits, '.', '_' and '-'"]
    return [f"the name {name} is given twice"] if known else []


def entry_url_problems(entry: dict, urls: set) -> list:
    """A docker_host that is no URL or that an earlier entry has (`urls` gets this one), or none for a remote host."""
    url = entry.get("docker_host")
    problems = []
    if url is not None and (not isinstance(url, str) or "://" not in url):
        problems.append(f"docker_host {url!r} is not a URL (unix://, tcp://host:port, ssh://user@host)")
    elif url and url in urls:
        problems.append(f"docker_host {url} is listed twice (its Engines would be found twice)")
    elif url:
        urls.add(url)
    if not url and not is_local(entry):
        problems.append(
            "docker_host is required when ansible_host is set (the URL of that host's Docker API, "
            "e.g. tcp://host:2376 or ssh://user@host)"
        )
    return problems


def entry_option_problems(entry: dict) -> list:
    """The entry's vars, required_labels and timeout, when they are not what they should be."""
    problems = []
    if entry.get("vars") is not None and not isinstance(entry.get("vars"), dict):
        problems.append("'vars' must be a mapping of variable names to values")
    labels = entry.get("required_labels") or []
    for selector in labels if isinstance(labels, list) else [labels]:
        try:
            parse_selector(selector)
        except ValueError as exc:
            problems.append(f"required_labels: {exc}")
    if not isinstance(labels, list):
        problems.append("required_labels must be a list")
    timeout = entry.get("timeout")
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        problems.append("timeout must be a number of seconds above 0")
    return problems


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    """One inventory host per Engine found on the Docker hosts of the configuration."""

    NAME = "september.engine.engines"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("engines.yml", "engines.yaml"))

    # ------------------------------------------------------------------ configuration

    def _rules(self, problems: list) -> Rules:
        for option in ("required_labels", "container_labels"):
            for selector in self.get_option(option) or []:
                try:
                    parse_selector(selector)
                except ValueError as exc:
                    problems.append(f"{option}: {exc}")
        deployments = tuple(self.get_option("deployments") or ())
        if not deployments:
            problems.append(f"deployments: name at least one of {', '.join(DEPLOYMENTS)}")
        port = self.get_option("engine_port")
        if not 1 <= port <= 65535:
            problems.append(f"engine_port: {port} is not a TCP port")
        suffixes = (self.get_option("previous_suffix"), self.get_option("failed_suffix"))
        if not all(suffixes) or suffixes[0] == suffixes[1]:
            problems.append("previous_suffix and failed_suffix must be set and differ")
        template = self.get_option("hostname_template")
        if template is not None and not str(template).strip():
            problems.append("hostname_template must not be empty (leave it out for the default)")
        if self.get_option("timeout") <= 0 or self.get_option("max_workers") < 1:
            problems.append("timeout must be above 0 and max_workers at least 1")
        return Rules(
            deployments=deployments,
            required_labels=tuple(self.get_option("required_labels") or ()),
            container_labels=tuple(self.get_option("container_labels") or ()),
            container_images=tuple(self.get_option("container_images") or ()),
            volume_prefix=self.get_option("container_volume_prefix") or "",
            compose_service=self.get_option("compose_service"),
            data_dir=self.get_option("data_dir"),
            engine_port=port,
            engine_id_label=self.get_option("engine_id_label") or None,
            version_label=self.get_option("version_label"),
            include_stopped=self.get_option("include_stopped"),
            suffixes=suffixes,
        )

    @staticmethod
    def _check_entry(index: int, entry, names: set, urls: set, problems: list) -> None:
        where = f"docker_hosts[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: each Docker host is a mapping with at least 'name', not {entry!r}")
            return
        name = entry.get("name")
        where = f"docker_hosts[{index}] ({name})" if name else where
        found = [*entry_key_problems(entry), *entry_name_problems(name, names), *entry_url_problems(entry, urls),
                 *entry_option_problems(entry)]
        problems.extend(f"{where}: {problem}" for problem in found)

    def _settings(self, path: str) -> tuple[list, Rules]:
        problems: list = []
        rules = self._rules(problems)
        entries = self.get_option("docker_hosts") or []
        if not entries:
            problems.append("docker_hosts: list at least one Docker host")
        names: set = set()
        urls: set = set()
        for index, entry in enumerate(entries):
            self._check_entry(index, entry, names, urls, problems)
        if problems:
            raise AnsibleParserError(
                f"{path}: the september.engine.engines configuration has {len(problems)} problem(s): "
                + "; ".join(problems)
            )
        return list(entries), rules

    # ------------------------------------------------------------------ discovery

    def _connect(self, entry: dict):
        """A function of the time left that returns the low-level API client of this entry's Docker daemon."""

        def connect(timeout: float):
            kwargs: dict = {"version": entry.get("api_version") or "auto", "timeout": timeout}
            url = entry.get("docker_host")
            if url:
                kwargs["base_url"] = url
                if url.startswith("ssh://"):
                    if not HAS_PARAMIKO:  # the SDK imports it for every ssh:// URL, even to run the ssh client
                        raise DockerException(
                            "ssh:// Docker URLs need paramiko on the controller, even with use_ssh_client: "
                            "pip install 'docker[ssh]' (or use tcp:// with TLS)"
                        )
                    kwargs["use_ssh_client"] = entry.get("use_ssh_client", True)
                if entry.get("tls") or entry.get("tls_verify"):
                    ca_path, client_cert, client_key = (local_path(entry.get(k)) for k in TLS_FILES)
                    cert = (client_cert, client_key) if client_cert or client_key else None
                    kwargs["tls"] = docker.tls.TLSConfig(
                        client_cert=cert,
                        ca_cert=ca_path,
                        verify=(ca_path or True) if entry.get("tls_verify") else False,
                    )
            else:
                env = docker.utils.kwargs_from_env()
                kwargs.update({k: v for k, v in env.items() if k in ("base_url", "tls")})
            return docker.APIClient(**kwargs)

        return connect

    def _fingerprint(self, entries: list, rules: Rules) -> list:
        """What the discovery depends on: a cached answer for another list of hosts or other rules is a miss."""
        hosts = [
            [e["name"], e.get("docker_host") or "", sorted(e.get("required_labels") or []), bool(is_local(e))]
            for e in entries
        ]
        return [hosts, {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(rules.__dict__.items())}]

    def _discover(self, entries: list, rules: Rules) -> dict:
        if not HAS_DOCKER:
            raise AnsibleError(
                "The september.engine.engines inventory needs the Docker SDK for Python on the controller: "
                "pip install 'docker>=7.0' (the execution environment of docs/awx.md has it)."
            )
        timeout = float(self.get_option("timeout"))
        targets = [
            Target(
                name=e["name"],
                connect=self._connect(e),
                rules=rules.with_required(e.get("required_labels")),
                timeout=float(e.get("timeout") or timeout),
            )
            for e in entries
        ]
        results = discover_hosts(
            targets,
            errors=(DockerException, RequestException, OSError),
            missing=(NotFound,),
            max_workers=self.get_option("max_workers"),
        )
        return {
            name: {"engines": r.engines, "problems": r.problems, "error": r.error, "seconds": r.seconds}
            for name, r in results.items()
        }

    def _load(self, path: str, cache: bool, entries: list, rules: Rules) -> dict:
        """Discovery results per Docker host, from the inventory cache when allowed and still valid."""
        fingerprint = self._fingerprint(entries, rules)
        use_cache = bool(self.get_option("cache"))
        key = self.get_cache_key(path)
        if use_cache and cache:
            try:
                cached = self._cache[key]
            except KeyError:
                cached = None
            if (
                isinstance(cached, dict)
                and cached.get("format") == CACHE_FORMAT
                and cached.get("fingerprint") == fingerprint
            ):
                self.display.vvv(f"september.engine.engines: {path}: discovery from the inventory cache")
                return cached["hosts"]
        hosts = self._discover(entries, rules)
        if use_cache:
            failed = sorted(n for n, h in hosts.items() if h["error"])
            if failed:
                self.display.warning(
                    f"september.engine.engines: not caching this discovery: {', '.join(failed)} did not answer"
                )
            else:
                self._cache[key] = {"format": CACHE_FORMAT, "fingerprint": fingerprint, "hosts": hosts}
        return hosts

    # ------------------------------------------------------------------ inventory

    @staticmethod
    def _engine_vars(entry: dict, record: dict) -> dict:
        """The host variables of one Engine: discovered (data, never templates), then its Docker host's."""
        found = {
            "engine_id": record["engine_id"],
            "engine_deployment": record["deployment"],
            "engine_docker_host": entry["name"],
            "engine_image": record.get("image"),
            "engine_version": record.get("version"),
            "engine_url": record.get("url"),
            "engine_volume": record.get("volume"),
            "engine_container_state": record.get("state"),
        }
        if record["deployment"] == "container":
            found["engine_container_name"] = record["container_name"]
        else:
            found.update(
                engine_compose_dir=record["compose_dir"],
                engine_compose_service=record["compose_service"],
                engine_compose_project=record["compose_project"],
                engine_compose_files=record.get("compose_files") or None,
                engine_compose_env_file=record.get("compose_env_file"),
            )
        hostvars = {k: as_data(v) for k, v in found.items() if v is not None}
        if is_local(entry):
            hostvars["ansible_connection"] = trust_as_template("local")
            hostvars["ansible_python_interpreter"] = trust_as_template("{{ ansible_playbook_python }}")
        else:
            hostvars.update({k: entry[k] for k in _SSH_KEYS if entry.get(k) is not None})
            if entry.get("ansible_connection"):
                hostvars["ansible_connection"] = entry["ansible_connection"]
        hostvars.update(entry.get("vars") or {})
        return hostvars

    def _host_name(self, template: str, context: dict) -> str:
        self.templar.available_variables = context
        try:
            name = self.templar.template(trust_as_template(template))
        except AnsibleError as exc:  # a template error of the user's: said with the Engine it was rendered for
            raise AnsibleParserError(
                f"hostname_template {template!r} failed for Engine {context.get('engine_id')} on "
                f"{context.get('engine_docker_host')}: {to_native(exc)}"
            ) from exc
        name = str(name).strip() if name is not None else ""
        if not name or any(c.isspace() for c in name):
            raise AnsibleParserError(
                f"hostname_template {template!r} gave {name!r} for Engine {context.get('engine_id')} on "
                f"{context.get('engine_docker_host')}: an inventory name must be non-empty, without spaces"
            )
        return name

    def _fail_or_warn(self, strict: bool, message: str) -> None:
        if strict:
            raise AnsibleError(message)
        self.display.warning(message)

    def _populate(self, entries: list, hosts: dict) -> None:
        strict = self.get_option("strict")
        template = self.get_option("hostname_template") or DEFAULT_HOSTNAME_TEMPLATE
        planned: dict = {}
        for entry in entries:
            found = hosts.get(entry["name"]) or {"engines": [], "problems": [], "error": "not read"}
            self._plan_host(entry, found, template, strict, planned)
        for group in ("engines", "engines_container", "engines_compose"):
            self.inventory.add_group(group)
        for name in sorted(planned):
            self._add_engine(name, *planned[name], strict=strict)

    def _plan_host(self, entry: dict, found: dict, template: str, strict: bool, planned: dict) -> None:
        """Name the Engines `found` on one Docker host into `planned` (name -> (hostvars, context, record)); its
        error and problems are warnings, or errors when strict."""
        where = f"Docker host {entry['name']} ({entry.get('docker_host') or 'local Docker'})"
        if found.get("error"):
            self._fail_or_warn(strict, f"{where}: {found['error']}; its Engines are not in the inventory")
            return
        for problem in found.get("problems") or []:
            self._fail_or_warn(strict, f"{where}: {problem}")
        for record in found.get("engines") or []:
            hostvars = self._engine_vars(entry, record)
            context = {
                **hostvars,
                "engine_labels": as_data(record.get("labels") or {}),
                "engine_container": as_data(record.get("container")),
            }
            name = self._host_name(template, context)
            if name in planned:
                other = planned[name][1]
                raise AnsibleParserError(
                    f"hostname_template gives two Engines the inventory name {name}: "
                    f"{other['engine_id']} on {other['engine_docker_host']} and {record['engine_id']} on "
                    f"{entry['name']}; make it unique (e.g. include engine_docker_host)"
                )
            planned[name] = (hostvars, context, record)
            if record.get("note"):
                self.display.warning(f"{where}: Engine {name}: {record['note']}")

    def _add_engine(self, name: str, hostvars: dict, context: dict, record: dict, strict: bool) -> None:
        """One Engine's inventory host: its variables, built-in groups, and the constructed compose/groups/keys."""
        self.inventory.add_host(name, group="engines")
        for key, value in hostvars.items():
            self.inventory.set_variable(name, key, value)
        for group in self._builtin_groups(record, hostvars):
            self.inventory.add_group(group)
            self.inventory.add_host(name, group=group)
        self._set_composite_vars(self.get_option("compose"), context, name, strict=strict)
        self._add_host_to_composed_groups(self.get_option("groups"), context, name, strict=strict)
        self._add_host_to_keyed_groups(self.get_option("keyed_groups"), context, name, strict=strict)

    @staticmethod
    def _builtin_groups(record: dict, hostvars: dict) -> list:
        groups = [f"docker_host_{group_part(hostvars['engine_docker_host'])}", f"engines_{record['deployment']}"]
        if record.get("version"):
            groups.append(f"engine_version_{group_part(record['version'])}")
        return groups

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        entries, rules = self._settings(path)
        hosts = self._load(path, cache, entries, rules)
        self._populate(entries, hosts)
