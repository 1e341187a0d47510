# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Build every reference Engine release tag listed in releases.json with the docker CLI.

    python3 tests/reference_engine/build.py [--repository engine] [--base-image IMAGE] [--only TAG ...]

One line per tag on stdout; on a failed build the docker output goes to stderr and the exit
status is 1. Re-runs are fast: docker's layer cache does the work (see the Dockerfile's order).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_BASE_IMAGE = "localhost/september-engine-base:bookworm"


def load_releases(path: str) -> dict[str, dict[str, object]]:
    with open(path, encoding="utf-8") as handle:
        releases = json.load(handle)
    for tag, release in releases.items():
        if not isinstance(release.get("max_migration"), int) or not isinstance(release.get("flaw"), str):
            raise ValueError(f"releases.json: {tag} needs an integer max_migration and a string flaw")
    return releases


def build(tag: str, release: dict[str, object], repository: str, base_image: str) -> tuple[bool, str]:
    """Build one tag; returns (ok, docker's combined output)."""
    command = [
        "docker", "build",
        "--build-arg", f"BASE_IMAGE={base_image}",
        "--build-arg", f"ENGINE_VERSION={tag}",
        "--build-arg", f"ENGINE_MAX_MIGRATION={release['max_migration']}",
        "--build-arg", f"ENGINE_FLAW={release['flaw']}",
        "--tag", f"{repository}:{tag}",
        HERE,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    return result.returncode == 0, result.stdout + result.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", default="engine", help="image repository (default: engine)")
    parser.add_argument(
        "--base-image",
        default=os.environ.get("ENGINE_BASE_IMAGE") or DEFAULT_BASE_IMAGE,
        help=f"base image with python3 and sqlite3 (default: $ENGINE_BASE_IMAGE or {DEFAULT_BASE_IMAGE})",
    )
    parser.add_argument("--only", action="append", metavar="TAG", help="build only this tag (repeatable)")
    args = parser.parse_args(argv)

    releases = load_releases(os.path.join(HERE, "releases.json"))
    tags = list(releases)
    if args.only:
        unknown = sorted(set(args.only) - set(releases))
        if unknown:
            parser.error(f"unknown tag(s) {', '.join(unknown)}; releases.json has {', '.join(tags)}")
        tags = [tag for tag in tags if tag in args.only]

    for tag in tags:
        release = releases[tag]
        started = time.monotonic()
        ok, output = build(tag, release, args.repository, args.base_image)
        elapsed = time.monotonic() - started
        if not ok:
            sys.stderr.write(output)
            print(f"{args.repository}:{tag} FAILED after {elapsed:.1f}s", flush=True)
            return 1
        print(f"{args.repository}:{tag} built in {elapsed:.1f}s (migrations up to "
              f"{int(release['max_migration']):04d}, flaw {release['flaw']})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
