# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Keeping secrets (the Engine key, webhook URLs, registry passwords) out of what a module returns.

Ansible masks a module's ``no_log`` options in its results; what a module reads from elsewhere (an eval command's
output, an Engine's log lines) can still quote a secret: it goes through ``redact`` first.
"""

from __future__ import annotations

MASK = "********"


def redact(value, secrets):
    """``value`` (a string, or lists and dicts of them, nested) with every non-empty secret replaced by the mask."""
    secrets = [s for s in secrets or () if s]
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        return {key: redact(item, secrets) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(item, secrets) for item in value]
    return value


#: The container environment variables that hold an Engine's secrets (the contract's key variable).
SECRET_ENV = ("ENGINE_API_KEY",)


def container_secrets(attrs: dict, names=SECRET_ENV) -> list[str]:
    """The values of a container's secret environment variables (``attrs``: Docker's inspect data), to redact from
    what is read of the container (its logs) also when the inventory does not know the key (set only in the
    container's env or a Compose .env file, as probes and evals are optional)."""
    found = []
    for item in (attrs.get("Config") or {}).get("Env") or []:
        name, sep, value = str(item).partition("=")
        if sep and name in names and value:
            found.append(value)
    return found
