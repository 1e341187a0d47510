# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A team's own eval command, `make eval` style, for the engine_eval tests: standard library only.

Reads the Engine from ENGINE_URL and ENGINE_API_KEY, sends `what is 17 + 25` to /execute and
expects the answer given by --expect (42 by default). Exit 0 when it matches, 1 when not, 2 when the
environment is incomplete. --leak prints the key, to show that engine_eval redacts it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--expect", default="42")
    parser.add_argument("--leak", action="store_true")
    args = parser.parse_args()
    url, key = os.environ.get("ENGINE_URL"), os.environ.get("ENGINE_API_KEY")
    if not url or not key:
        print("ENGINE_URL and ENGINE_API_KEY must be set", file=sys.stderr)
        return 2
    if args.leak:
        print(f"debug: using key {key}")
    request = urllib.request.Request(
        f"{url}/execute",
        data=json.dumps({"message": "what is 17 + 25"}).encode(),
        headers={"X-Engine-Key": key, "Content-Type": "application/json"},
        method="POST",
    )
    answer, event = None, None
    with urllib.request.urlopen(request, timeout=30) as response:
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event in ("done", "error"):
                data = json.loads(line[6:])
                answer = data.get("answer") if event == "done" else f"error {data.get('error')}"
    ok = answer == args.expect
    print(f"eval add-17-25: {'PASS' if ok else 'FAIL'} (answered {answer}, expected {args.expect})")
    print(f"1 eval, {int(ok)} passed, {int(not ok)} failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
