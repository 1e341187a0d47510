# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests import the collection as ansible_collections.september.engine (through build/collections)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "harness"))

from engine_testkit.ansible import COLLECTIONS_PATH, ensure_collection_link  # noqa: E402

ensure_collection_link()
sys.path.insert(0, str(COLLECTIONS_PATH))
