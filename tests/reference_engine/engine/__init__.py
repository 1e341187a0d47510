# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The reference Engine: a small, honest stand-in for the private September Engine image.

Standard library only. Run it with ``python3 -m engine.server`` from the directory that holds this
package (``/app`` in the image). See ``tests/reference_engine/README.md`` for the contract.
"""

from __future__ import annotations
