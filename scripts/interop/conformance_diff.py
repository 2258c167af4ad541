#!/usr/bin/env python3
"""Compares two runs of the conformance server suite, check by check.

    conformance_diff.py DIRECT_DIR VIA_DIR [--label TEXT] [--allow FILE]

Each DIR is an output folder of `conformance server -o DIR`: one sub-folder per scenario
(`server-<scenario>-<time>`), each with a `checks.json` listing its checks and their status.
Prints the scenario and check totals of both runs, then every scenario or check that passes in
DIRECT_DIR and does not pass in VIA_DIR. Exits 1 if there is any such loss, unless it is named in
the --allow file (one `scenario` or `scenario/check-id` a line, `#` comments, each with a reason:
losses the gateway cannot avoid, recorded as a baseline), and 1 as well if an allowed loss no
longer happens (a stale allowance), so the file always says exactly what is lost.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

PASS = {"SUCCESS", "INFO", "SKIPPED"}


def read_run(folder: Path) -> dict[str, list[tuple[str, str]]]:
    """scenario -> [(check id with its occurrence number, status)]."""
    runs: dict[str, list[tuple[str, str]]] = {}
    for checks in sorted(folder.glob("server-*/checks.json")):
        scenario = re.sub(r"-\d{4}-\d\d-\d\dT[\d-]+Z$", "", checks.parent.name)[len("server-"):]
        seen: Counter[str] = Counter()
        rows = []
        for c in json.loads(checks.read_text()):
            seen[c["id"]] += 1
            cid = c["id"] if seen[c["id"]] == 1 else f"{c['id']}#{seen[c['id']]}"
            rows.append((cid, c.get("status", "?")))
        runs[scenario] = rows
    return runs


def scenario_passes(rows: list[tuple[str, str]]) -> bool:
    return all(s in PASS or s == "WARNING" for _, s in rows)


def totals(run: dict[str, list[tuple[str, str]]]) -> str:
    scenarios = sum(scenario_passes(r) for r in run.values())
    checks = sum(s == "SUCCESS" for r in run.values() for _, s in r)
    failed = sum(s == "FAILURE" for r in run.values() for _, s in r)
    return f"{scenarios}/{len(run)} scenarios, {checks} checks passed, {failed} failed"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("direct", type=Path)
    p.add_argument("via", type=Path)
    p.add_argument("--label", default="through the gateway")
    p.add_argument("--allow", type=Path)
    a = p.parse_args()
    direct, via = read_run(a.direct), read_run(a.via)
    if not direct:
        print(f"no scenarios in {a.direct}")
        return 1
    allowed = set()
    if a.allow and a.allow.exists():
        for line in a.allow.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                allowed.add(line)
    losses = []
    for scenario, rows in direct.items():
        got = dict(via.get(scenario, []))
        if scenario_passes(rows) and not (scenario in via and scenario_passes(via[scenario])):
            losses.append(scenario)
        for cid, status in rows:
            if status == "SUCCESS" and got.get(cid) != "SUCCESS":
                losses.append(f"{scenario}/{cid}")
    unexpected = [x for x in losses if x not in allowed and x.split("/")[0] not in allowed]
    stale = sorted(x for x in allowed if x not in losses and not any(y.startswith(x + "/") for y in losses))
    print(f"  directly: {totals(direct)}")
    print(f"  {a.label}: {totals(via)}")
    for x in unexpected:
        print(f"  LOST {x}")
    for x in stale:
        print(f"  STALE allowance {x} (it passes now: remove it)")
    allowed_losses = len(losses) - len(unexpected)
    if allowed_losses:
        print(f"  {allowed_losses} loss(es) as recorded in {a.allow}")
    return 1 if unexpected or stale else 0


if __name__ == "__main__":
    sys.exit(main())
