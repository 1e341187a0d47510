# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""docs/faults.md stays true: every test a row names exists, the matrix holds at least 25 faults and 30 bad inputs,
and every test of the fault suite is in a row. No Docker needed: pytest collects the named files in a subprocess.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
MATRIX = ROOT / "docs" / "faults.md"
SUITE = [ROOT / "tests" / "system" / "faults", ROOT / "tests" / "system" / "lab" / "test_faults_lab.py"]
NODE = re.compile(r"`(tests/[\w/]+\.py::[^`]+)`")

pytestmark = pytest.mark.timeout(300)


def rows(kind: str) -> list[str]:
    return [line for line in MATRIX.read_text(encoding="utf-8").splitlines() if re.match(rf"^\| {kind}\d+ \|", line)]


def collected(paths: list[str]) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests" / "harness"),
           "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "build" / "collections")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *paths],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return {line.strip() for line in proc.stdout.splitlines() if "::" in line}


def test_the_matrix_has_enough_rows_each_with_a_test() -> None:
    faults, bad = rows("F"), rows("B")
    print(f"{len(faults)} faults, {len(bad)} bad inputs")
    assert len(faults) >= 25 and len(bad) >= 30
    numbers = [line.split("|")[1].strip() for line in faults + bad]
    assert len(numbers) == len(set(numbers)), "two rows share a number"
    for line in faults + bad:
        assert NODE.search(line), f"a row without a test: {line[:120]}"


def test_every_named_test_exists_and_every_fault_test_is_named() -> None:
    named = set(NODE.findall(MATRIX.read_text(encoding="utf-8")))
    files = sorted({node.split("::", 1)[0] for node in named})
    found = collected(files)
    missing = sorted(named - found)
    assert not missing, f"docs/faults.md names tests that do not exist: {missing}"
    ours = {node for node in collected([str(p.relative_to(ROOT)) for p in SUITE]) if "test_matrix.py" not in node}
    unnamed = sorted(ours - named)
    assert not unnamed, f"fault tests that no row of docs/faults.md names: {unnamed}"
