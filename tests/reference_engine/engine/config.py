# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Configuration from the environment (the only way the Engine is configured)."""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass

FLAWS = ("none", "health_503", "degraded_quality", "crash_after_migrate")

_HEX_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ConfigError(Exception):
    """The environment does not describe a runnable Engine (exit status 2)."""


def _int_env(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if value < 0:
        raise ConfigError(f"{name} must be >= 0, got {value}")
    return value


@dataclass(frozen=True)
class Config:
    """Everything the Engine reads from its environment."""

    db_path: str
    key_sha256: str  # hex SHA-256 of the API key; the key itself is never kept
    port: int
    migrations_dir: str
    turn_latency_ms: int
    drain_timeout: float
    llm_outage_file: str
    version: str
    flaw: str
    seed: int

    @classmethod
    def from_env(cls) -> Config:
        api_key = os.environ.get("ENGINE_API_KEY", "")
        key_hash = os.environ.get("ENGINE_KEY_HASH", "").strip().lower()
        if api_key:
            key_sha256 = hashlib.sha256(api_key.encode("utf-8")).hexdigest()
        elif key_hash:
            if not _HEX_SHA256.match(key_hash):
                raise ConfigError("ENGINE_KEY_HASH must be the hex SHA-256 of the key (64 hex digits)")
            key_sha256 = key_hash
        else:
            raise ConfigError("no API key configured: set ENGINE_API_KEY or ENGINE_KEY_HASH")

        flaw = os.environ.get("ENGINE_FLAW", "none").strip() or "none"
        if flaw not in FLAWS:
            raise ConfigError(f"ENGINE_FLAW must be one of {', '.join(FLAWS)}, got {flaw!r}")

        seed_raw = os.environ.get("ENGINE_SEED", "").strip()
        if seed_raw:
            try:
                seed = int(seed_raw)
            except ValueError as exc:
                raise ConfigError(f"ENGINE_SEED must be an integer, got {seed_raw!r}") from exc
        else:
            seed = time.time_ns()

        return cls(
            db_path=os.environ.get("SQLITE_DB_PATH", "").strip() or "/data/brain.sqlite",
            key_sha256=key_sha256,
            port=_int_env("ENGINE_PORT", 8000, minimum=1),
            migrations_dir=os.environ.get("ENGINE_MIGRATIONS_DIR", "").strip() or "/app/migrations",
            turn_latency_ms=_int_env("ENGINE_TURN_LATENCY_MS", 250),
            drain_timeout=_float_env("ENGINE_DRAIN_TIMEOUT", 25.0),
            llm_outage_file=os.environ.get("ENGINE_LLM_OUTAGE_FILE", "").strip() or "/tmp/llm-provider-outage",
            version=os.environ.get("ENGINE_VERSION", "").strip() or "dev",
            flaw=flaw,
            seed=seed,
        )
