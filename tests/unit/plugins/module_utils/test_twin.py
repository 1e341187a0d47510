# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The pure parts of the drill's staging twins: what a twin takes of its Engine's configuration and what it does not,
names and ports, which rows of the pre-drill reference a brain misses (real SQLite), what a sweep removes, and the
drill's judgement of a twin (steps, RTO, what dominated, what the upgrade role does not record)."""

from __future__ import annotations

import copy
import json
import socket
import sqlite3

import pytest

from ansible_collections.september.engine.plugins.module_utils._errors import ContainerError, OptionsError
from ansible_collections.september.engine.plugins.module_utils._twin import (
    DRILL_LABEL,
    MARKER,
    MISSING_FIELDS,
    OF_LABEL,
    STEPS,
    TWIN_LABEL,
    check_run_id,
    drill_entry,
    drill_labels,
    drill_steps,
    free_port,
    host_ports_in_use,
    is_marked,
    is_port_clash,
    key_columns,
    missing_rows_sql,
    rollback_timings,
    rows_missing,
    select_swept,
    twin_name_of,
    twin_request,
    volume_name_of,
)

LABELS = drill_labels("drill-1", "sept-c001-engine-1--drill", "sept-c001-engine-1")

# What _container.create_request makes of a Compose-hosted Engine's container (compose v2: Mounts, project network).
COMPOSE_BODY = {
    "Env": ["ENGINE_API_KEY=secret"],
    "Labels": {
        "com.docker.compose.project": "sept-c001",
        "com.docker.compose.service": "engine",
        "com.docker.compose.project.config_files": "/srv/c001/docker-compose.yml",
        "io.september.fleet": "sept",
    },
    "Image": "engine:2.3.0",
    "HostConfig": {
        "Binds": None,
        "Mounts": [{"Type": "volume", "Source": "sept-c001_engine_data", "Target": "/data", "VolumeOptions": {}}],
        "PortBindings": {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "9002"}]},
        "NetworkMode": "sept-c001_default",
        "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
    },
    "NetworkingConfig": {"EndpointsConfig": {"sept-c001_default": {
        "Aliases": ["sept-c001-engine-1", "engine"], "IPAMConfig": {"IPv4Address": "172.23.0.9"}}}},
}

# A per-user container with a bind mount of its own, a second published port and VolumesFrom.
USER_BODY = {
    "Env": ["ENGINE_API_KEY=secret"],
    "Labels": {"io.september.fleet": "sept"},
    "Image": "engine:2.3.0",
    "HostConfig": {
        "Binds": ["engine-data-u001:/data:rw", "/srv/assets:/assets", "/srv/ro:/ro:ro", "cache:/cache:rw,z"],
        "PortBindings": {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "9001"}],
                         "9100/tcp": [{"HostIp": "", "HostPort": "9100"}]},
        "NetworkMode": "engine_net",
        "VolumesFrom": ["sidecar"],
        "RestartPolicy": {"Name": "always", "MaximumRetryCount": 0},
    },
    "NetworkingConfig": {"EndpointsConfig": {"engine_net": {"Aliases": ["u001"]}}},
}


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("run_id", ["drill-20260504T020000Z", "d1", "A.b_c-9"])
def test_run_ids_that_name_folders_and_labels(run_id: str) -> None:
    assert check_run_id(run_id) == run_id


@pytest.mark.parametrize("run_id", [None, "", "-x", "../x", "a/b", "a b", "x" * 101])
def test_run_ids_refused(run_id) -> None:
    with pytest.raises(OptionsError, match="not a drill run id"):
        check_run_id(run_id)


def test_twin_and_volume_names() -> None:
    assert twin_name_of("sept-u001") == "sept-u001--drill"
    assert twin_name_of("x", "-twin") == "x-twin"
    assert volume_name_of("sept-c001-engine-1") == "engine-drill-sept-c001-engine-1"
    assert volume_name_of("a b/c:d") == "engine-drill-a-b-c-d"
    assert volume_name_of("//") == "engine-drill-engine"


def test_drill_labels() -> None:
    assert LABELS == {DRILL_LABEL: "drill-1", TWIN_LABEL: "sept-c001-engine-1--drill", OF_LABEL: "sept-c001-engine-1"}


# --------------------------------------------------------------------------- what a twin takes of its Engine


def test_a_compose_twin_is_a_per_user_container_of_its_own() -> None:
    before = copy.deepcopy(COMPOSE_BODY)
    connect = {"other_net": {"Aliases": ["engine"], "Links": ["db:db"]}}
    body, networks, notes = twin_request(COMPOSE_BODY, connect, volume="engine-drill-x", port=41000, labels=LABELS)
    assert COMPOSE_BODY == before  # pure
    # Compose never sees it; the drill's labels are on it; the creator's other labels stay.
    assert not [k for k in body["Labels"] if k.startswith("com.docker.compose.")]
    assert body["Labels"][DRILL_LABEL] == "drill-1" and body["Labels"]["io.september.fleet"] == "sept"
    # Its own volume at /data (the Engine's is gone from the request), the same restart policy, network, env.
    assert body["HostConfig"]["Binds"] == ["engine-drill-x:/data"]
    assert "Mounts" not in body["HostConfig"]
    assert body["HostConfig"]["RestartPolicy"] == {"Name": "unless-stopped", "MaximumRetryCount": 0}
    assert body["HostConfig"]["NetworkMode"] == "sept-c001_default"
    assert body["Env"] == ["ENGINE_API_KEY=secret"]
    # One port, on loopback, its own; no alias, no fixed address (nothing resolves the Engine's names to it).
    assert body["HostConfig"]["PortBindings"] == {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "41000"}]}
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"sept-c001_default": {}}}
    assert networks == {"other_net": {"Links": ["db:db"]}}
    assert notes == []


def test_the_engines_other_mounts_are_read_only_and_its_other_ports_not_published() -> None:
    body, _networks, notes = twin_request(USER_BODY, {}, volume="engine-drill-u001", port=41001, labels=LABELS,
                                          bind_address="127.0.0.2")
    assert body["HostConfig"]["Binds"] == ["/srv/assets:/assets:ro", "/srv/ro:/ro:ro", "cache:/cache:z,ro",
                                           "engine-drill-u001:/data"]
    assert "VolumesFrom" not in body["HostConfig"]
    assert body["HostConfig"]["PortBindings"] == {"8000/tcp": [{"HostIp": "127.0.0.2", "HostPort": "41001"}]}
    assert body["HostConfig"]["PublishAllPorts"] is False
    assert body["ExposedPorts"] == {"8000/tcp": {}}
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"engine_net": {}}}
    text = " ".join(notes)
    assert "read-only in the twin: /assets, /cache" in text
    assert "VolumesFrom sidecar dropped" in text
    assert "other published ports are not published by the twin: 9100/tcp" in text


def test_mounts_of_the_mounts_api_other_than_data_become_read_only() -> None:
    body = copy.deepcopy(COMPOSE_BODY)
    body["HostConfig"]["Mounts"].append({"Type": "bind", "Source": "/srv/x", "Target": "/x"})
    body["HostConfig"]["Mounts"].append({"Type": "tmpfs", "Target": "/tmp"})
    made, _networks, notes = twin_request(body, {}, volume="v", port=1, labels=LABELS, data_dir="/data/")
    assert made["HostConfig"]["Mounts"] == [{"Type": "bind", "Source": "/srv/x", "Target": "/x", "ReadOnly": True},
                                            {"Type": "tmpfs", "Target": "/tmp"}]
    assert made["HostConfig"]["Binds"] == ["v:/data"]
    assert "read-only in the twin: /x" in notes[0]


@pytest.mark.parametrize("mode", ["host", "container:abc123"])
def test_a_shared_network_stack_is_refused(mode: str) -> None:
    body = copy.deepcopy(USER_BODY)
    body["HostConfig"]["NetworkMode"] = mode
    with pytest.raises(OptionsError, match="network mode"):
        twin_request(body, {}, volume="v", port=1, labels=LABELS)


# --------------------------------------------------------------------------- ports


def test_host_ports_in_use_running_or_not() -> None:
    attrs = [
        {"HostConfig": {"PortBindings": {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "9001"}]}},
         "NetworkSettings": {"Ports": {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "9001"}]}}},
        {"HostConfig": {"PortBindings": {"8000/tcp": [{"HostIp": "", "HostPort": "9002"}],
                                         "53/udp": [{"HostPort": ""}]}}, "NetworkSettings": {"Ports": {}}},
        {"HostConfig": {}, "NetworkSettings": {"Ports": {"8000/tcp": None}}},
    ]
    assert host_ports_in_use(attrs) == {9001, 9002}


def test_a_free_port_is_not_published_and_nothing_listens_on_it() -> None:
    first = free_port(set())
    port = free_port({first})
    assert port != first
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # free: binds


def test_no_free_port_is_an_error() -> None:
    every = set(range(65536))
    with pytest.raises(ContainerError, match="No free port"):
        free_port(every, tries=3)


@pytest.mark.parametrize(("message", "clash"), [
    ("driver failed programming external connectivity: Bind for 127.0.0.1:9001 failed: port is already allocated",
     True),
    ("listen tcp4 127.0.0.1:9001: bind: address already in use", True),
    ("No such image: engine:9.9.9", False),
])
def test_port_clashes(message: str, clash: bool) -> None:
    assert is_port_clash(message) is clash


# --------------------------------------------------------------------------- rows of the reference


def test_key_columns() -> None:
    info = [(0, "id", "TEXT", 0, None, 1), (1, "body", "TEXT", 0, None, 0)]
    assert key_columns(info, False) == ["id"]
    composite = [(0, "a", "INT", 0, None, 2), (1, "b", "INT", 0, None, 1), (2, "c", "TEXT", 0, None, 0)]
    assert key_columns(composite, True) == ["b", "a"]
    assert key_columns([(0, "x", "TEXT", 0, None, 0)], False) is None


def test_missing_rows_sql_quotes_names() -> None:
    sql = missing_rows_sql('we"ird', ["k 1"], limit=3)
    assert '"we""ird"' in sql and 'm."k 1" IS r."k 1"' in sql and sql.endswith("LIMIT 3")
    assert "m.rowid = r.rowid" in missing_rows_sql("t", None)


def _brains(tmp_path) -> sqlite3.Connection:
    """A live brain (main) and its reference (ref) of the same schema, with the reference's rows."""
    ref = tmp_path / "ref.sqlite"
    live = tmp_path / "live.sqlite"
    for path in (ref, live):
        conn = sqlite3.connect(path)
        conn.executescript(
            "CREATE TABLE tasks (id TEXT PRIMARY KEY, body TEXT);"
            "CREATE TABLE edges (a INT, b INT, w REAL, PRIMARY KEY (a, b)) WITHOUT ROWID;"
            "CREATE TABLE log (line TEXT);"
            "CREATE TABLE gone (id INTEGER PRIMARY KEY);"
            "CREATE TABLE empty (id INTEGER PRIMARY KEY);"
        )
        conn.commit()
        conn.close()
    conn = sqlite3.connect(ref)
    conn.executemany("INSERT INTO tasks VALUES (?, ?)", [(f"t{i}", "x") for i in range(5)])
    conn.executemany("INSERT INTO edges VALUES (?, ?, 1.0)", [(1, 2), (2, 3), (3, 4)])
    conn.executemany("INSERT INTO log VALUES (?)", [("a",), ("b",), ("c",)])
    conn.executemany("INSERT INTO gone VALUES (?)", [(1,), (2,)])
    conn.commit()
    conn.close()
    joined = sqlite3.connect(live)
    joined.execute("ATTACH DATABASE ? AS ref", (str(ref),))
    return joined


def test_every_reference_row_present_means_nothing_missing(tmp_path) -> None:
    conn = _brains(tmp_path)
    for table in ("tasks", "edges", "log", "gone"):
        conn.execute(f"INSERT INTO main.{table} SELECT * FROM ref.{table}")
    conn.execute("INSERT INTO main.tasks VALUES ('new', 'written by the drill')")  # more is fine
    assert rows_missing(conn) == {}


def test_missing_rows_are_named_per_table_by_key_or_rowid(tmp_path) -> None:
    conn = _brains(tmp_path)
    conn.execute("INSERT INTO main.tasks SELECT * FROM ref.tasks WHERE id NOT IN ('t1', 't3')")
    conn.execute("INSERT INTO main.tasks VALUES ('t3', 'changed body: same key, present')")
    conn.execute("INSERT INTO main.edges SELECT * FROM ref.edges WHERE a != 2")
    conn.execute("INSERT INTO main.log (rowid, line) SELECT rowid, line FROM ref.log WHERE rowid != 2")
    conn.execute("DROP TABLE main.gone")
    missing = rows_missing(conn)
    assert missing["tasks"] == {"count": 1, "by": "primary key (id)", "sample": ["t1"]}
    assert missing["edges"] == {"count": 1, "by": "primary key (a, b)", "sample": [[2, 3]]}
    assert missing["log"] == {"count": 1, "by": "rowid", "sample": [2]}
    assert missing["gone"]["count"] == 2 and missing["gone"]["reason"] == "the table is gone"
    assert "empty" not in missing


def test_a_key_column_that_is_gone_counts_every_row(tmp_path) -> None:
    conn = _brains(tmp_path)
    conn.execute("DROP TABLE main.tasks")
    conn.execute("CREATE TABLE main.tasks (uid TEXT PRIMARY KEY, body TEXT)")
    assert rows_missing(conn)["tasks"]["reason"] == "key column(s) gone: id"


# --------------------------------------------------------------------------- sweeping


def test_a_sweep_takes_only_drill_labelled_things_of_the_runs_asked() -> None:
    items = [
        {"name": "prod-u001", "labels": {"io.september.fleet": "prod"}},
        {"name": "u001--drill", "labels": {DRILL_LABEL: "old"}},
        {"name": "u001--drill--failed", "labels": {DRILL_LABEL: "old"}},
        {"name": "u002--drill", "labels": {DRILL_LABEL: "now"}},
        {"name": "empty-label", "labels": {DRILL_LABEL: ""}},
    ]
    names = [c["name"] for c in select_swept(items, [], keep_run="now")[0]]
    assert names == ["u001--drill", "u001--drill--failed"]
    assert [c["name"] for c in select_swept(items, [], run_id="now")[0]] == ["u002--drill"]
    assert len(select_swept(items, items)[1]) == 3


def test_only_marked_folders_are_drill_folders(tmp_path) -> None:
    assert is_marked(str(tmp_path)) is None
    (tmp_path / MARKER).write_text(json.dumps({"run_id": "d1"}))
    assert is_marked(str(tmp_path)) == {"run_id": "d1"}
    link = tmp_path.parent / f"{tmp_path.name}-link"
    link.symlink_to(tmp_path)
    assert is_marked(str(link)) is None  # never follow a link out of the drill folder
    (tmp_path / MARKER).write_text("not json")
    assert is_marked(str(tmp_path)) is None


# --------------------------------------------------------------------------- the drill's judgement of a twin

ROLLBACK_TIMINGS = {"stage_seconds": 0.2, "stop_seconds": 0.5, "restore_seconds": 0.1, "switch_seconds": 0.6,
                    "healthy_seconds": 1.5, "total_seconds": 3.4}
VERIFIED = {"is_verified": True, "is_healthy": True, "version": "2.3.0", "expected_version": "2.3.0",
            "on_version": True, "rows_kept": True, "missing": {}, "missing_rows": 0, "reference": {"rows": 120}}


def upgrade_241(**rollback) -> dict:
    """engine_upgrade_result of a twin whose 2.4.1 never became healthy, rolled back with its brain."""
    return {
        "status": "rolled_back", "decision": "rollback", "evidence": "health", "step": "verify",
        "reason": "verify: health: ... HTTP 503", "from_version": "2.3.0", "rollback_kind": "image+brain",
        "snapshot": {"name": "pre-upgrade-x", "path": "/s/pre-upgrade-x.sqlite"},
        "timings": {"drain_seconds": 0.4, "switch_seconds": 1.2, "healthy_seconds": None, "bake_seconds": 1.0},
        "rollback": {"rolled_back": True, "brain_restored": True, "timings": dict(ROLLBACK_TIMINGS), **rollback},
    }


def upgrade_242() -> dict:
    """A twin that was healthy on 2.4.2 and failed its verdict on probe turns."""
    upgrade = upgrade_241()
    upgrade.update(evidence="fail", verdict={"rule": "new_error_kind", "symptom": "new ERROR kind ..."},
                   timings={"drain_seconds": 0.4, "switch_seconds": 1.2, "healthy_seconds": 12.5,
                            "bake_seconds": 3.5})
    return upgrade


def test_the_steps_of_a_241_drill() -> None:
    steps = drill_steps(upgrade_241(), {"timings": {"copy_s": 0.05, "verify_hash_fsync_s": 0.02}}, True, 30)
    assert list(steps) == [name for name, _text in STEPS]
    seconds = {k: v["seconds"] for k, v in steps.items()}
    assert seconds == {"snapshot": 0.07, "pull": 0.0, "drain": 0.4, "switch": 0.8, "detection": 31.0,
                       "image_rollback": 1.1, "brain_restore": 0.3, "time_to_healthy": 1.5}
    assert steps["detection"]["estimated"] and not steps["detection"]["recorded"]
    assert steps["drain"]["recorded"] and not steps["snapshot"]["recorded"]


def test_a_healthy_broken_release_is_detected_by_the_health_wait_and_the_bake() -> None:
    steps = drill_steps(upgrade_242(), None, None)
    assert steps["detection"] == {"seconds": 16.0, "source": "timings.healthy_seconds + timings.bake_seconds",
                                  "estimated": False, "recorded": True}
    assert steps["snapshot"]["seconds"] is None and steps["pull"]["seconds"] is None


def test_an_image_only_rollback_restores_no_brain() -> None:
    steps = drill_steps(upgrade_241(brain_restored=False))
    assert steps["brain_restore"]["seconds"] == 0.0


def test_a_241_drill_passes_with_its_rto_and_what_dominated() -> None:
    entry = drill_entry(upgrade_241(), VERIFIED, broken_version="2.4.1", target_rto=60, image_present=True,
                        health_timeout=30, snapshot_manifest={"timings": {"copy_s": 0.05}})
    assert entry["passed"] and entry["problems"] == []
    assert entry["caught"] and entry["rolled_back"]
    assert entry["rto_seconds"] == 3.4 and entry["rto_pass"] is True
    assert entry["dominant_step"] == "detection"
    assert entry["rto_breakdown"] == {"image_rollback": 1.1, "brain_restore": 0.3, "time_to_healthy": 1.5,
                                      "rollback_checks": 0.5}
    assert entry["rto_dominant_step"] == "time_to_healthy"
    fields = [m["field"] for m in entry["missing_fields"]]
    assert fields == [MISSING_FIELDS[k][0] for k in ("snapshot", "pull", "detection", "rto")]


def test_over_the_target_rto_fails() -> None:
    entry = drill_entry(upgrade_242(), VERIFIED, broken_version="2.4.2", target_rto=2.0)
    assert not entry["passed"] and entry["rto_pass"] is False
    assert entry["problems"] == ["RTO 3.4 s is over the target 2 s (most of it: time_to_healthy)"]
    assert MISSING_FIELDS["detection"][0] not in [m["field"] for m in entry["missing_fields"]]


@pytest.mark.parametrize(("status", "problem"), [
    ("verified", "the upgrade's gates did not catch 2.4.2: the twin was verified on it"),
    ("rollback_failed", "the rollback failed: verify: health: ... HTTP 503"),
    ("held", "the twin was not rolled back (held: verify: health: ... HTTP 503)"),
])
def test_a_release_not_caught_or_not_rolled_back_fails(status: str, problem: str) -> None:
    upgrade = upgrade_241()
    upgrade["status"] = status
    entry = drill_entry(upgrade, VERIFIED, broken_version="2.4.2", target_rto=60)
    assert not entry["passed"] and entry["problems"][0] == problem
    assert entry["rto_seconds"] is None and entry["rto_pass"] is None


def test_missing_rows_or_health_after_the_rollback_fail() -> None:
    verification = dict(VERIFIED, is_verified=False, is_healthy=False, health_detail="HTTP 503", rows_kept=False,
                        missing={"tasks": {"count": 2}, "feedback": {"count": 1}}, missing_rows=3)
    entry = drill_entry(upgrade_241(), verification, broken_version="2.4.1", target_rto=60)
    assert entry["problems"] == ["the twin is not healthy after the rollback: HTTP 503",
                                 "3 pre-drill rows are missing (feedback: 1, tasks: 2)"]
    assert entry["verified"]["rows_kept"] is False


def test_rollback_timings_from_the_modules_own_result_when_the_record_holds_none() -> None:
    upgrade = upgrade_241(timings={})
    assert rollback_timings(upgrade, None) == ({}, False)
    assert rollback_timings(upgrade, ROLLBACK_TIMINGS) == (ROLLBACK_TIMINGS, True)
    assert rollback_timings(upgrade_241(), {"total_seconds": 99}) == (ROLLBACK_TIMINGS, False)
    entry = drill_entry(upgrade, VERIFIED, broken_version="2.4.1", target_rto=60,
                        fallback_rollback_timings=ROLLBACK_TIMINGS)
    assert entry["passed"] and entry["rto_seconds"] == 3.4
    assert entry["rto_source"].startswith("the rollback module's result: ")
    assert MISSING_FIELDS["rollback"][0] in [m["field"] for m in entry["missing_fields"]]
    bare = drill_entry(upgrade, VERIFIED, broken_version="2.4.1", target_rto=60)
    assert not bare["passed"] and bare["problems"] == ["the rollback's timings are recorded nowhere: no RTO"]


def test_no_upgrade_result_is_no_pass() -> None:
    entry = drill_entry(None, {}, broken_version="2.4.1", target_rto=60)
    assert not entry["passed"] and entry["upgrade"] is None and entry["missing_fields"] == []
    assert entry["problems"][0] == "the upgrade recorded no result for the twin"
