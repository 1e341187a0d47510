# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A helper file beside the tests, imported by its path: :func:`import_path`.

The suites run in pytest's importlib mode (tests/unit and tests/system hold files of the same names), so a test
folder is not on ``sys.path`` and a helper beside the tests (``labrollout.py``, ``_docker_fault.py``, another
folder's ``conftest.py``) is imported by its path, once, under a name of its own. Pure standard library.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["import_path"]


def import_path(name: str, path: Path) -> ModuleType:
    """The module in the file ``path``, imported once as ``name`` (``sys.modules[name]`` on every later call)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None, f"no Python module at {path}"
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
