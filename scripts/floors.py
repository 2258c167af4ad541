#!/usr/bin/env python3
"""The house rule of src/: modules stand on floors and import only from lower floors.

    python3 scripts/floors.py            # checks; exit 1 on an upward or sideways import or a circle
    python3 scripts/floors.py --edges    # also prints every import between modules
    python3 scripts/floors.py --map      # also prints each module's floor and first doc line

A module is a top-level module of the crate (`engine`, `permission`, ...) or, inside `gateway`,
one of its files (`gateway/pool`, ...). Imports are read from `crate::...` and `super::...` paths
outside `#[cfg(test)]` modules. FLOORS below is the plan; the check holds the code against it.
"""
import re
import sys
from pathlib import Path

# Floor 1 is the ground. A module imports only from floors below its own; the five layers
# (floor 4) share a floor so that none of them can import another.
FLOORS = {
    1: ["protocol", "engine", "body", "future", "inner"],
    2: ["rejection", "list_memo", "counters", "audit"],
    3: ["gatekeeper", "trace"],
    4: ["context", "limit_hold"],
    5: ["identity", "namespace", "permission", "params", "limit", "cost"],
    6: ["stack", "config", "openai", "pin_file"],
    7: ["fuzzing", "tls", "source", "redis_limits"],
    8: ["oauth", "postgres"],
    9: ["gateway", "litellm_db"],
}
# Inside the gateway: the caller and small state tables on the ground; then the upstream
# connection, the session pool, the state all callers share (`shared`), the aggregating
# handler and its parts, the endpoint's own answers, and the HTTP surface with the public face
# (`gateway/mod`) on top.
GATEWAY_FLOORS = {
    1: ["gateway/caller", "gateway/task_ids", "gateway/listeners",
        "gateway/list_cache", "gateway/input_state", "gateway/endpoint_reply"],
    2: ["gateway/sse_client", "gateway/upstream_session", "gateway/upstream_listen"],
    3: ["gateway/upstream_lists", "gateway/upstream_client"],
    4: ["gateway/upstream", "gateway/tool_call"],
    5: ["gateway/pool", "gateway/parked"],
    6: ["gateway/shared"],
    7: ["gateway/aggregate"],
    8: ["gateway/handler"],
    9: ["gateway/tool_rounds", "gateway/input_rounds", "gateway/listen", "gateway/tasks"],
    10: ["gateway/endpoint_sessions"],
    11: ["gateway/endpoint"],
    12: ["gateway/endpoint_call", "gateway/endpoint_lists"],
    13: ["gateway/inner_call"],
    14: ["gateway/sse_bridge", "gateway/pins_admin"],
    15: ["gateway/router", "gateway/mod"],
}

root = Path(__file__).resolve().parent.parent / "src"


def unit(path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "gateway":
        return "gateway/" + (parts[1] if len(parts) > 1 else "mod")
    return parts[0]


def source(path: Path) -> str:
    text = path.read_text()
    cut = re.search(r"#\[cfg\(test\)\]\s*mod tests", text)
    text = text[: cut.start()] if cut else text
    # Comments and doc comments name modules without importing them.
    return re.sub(r"//[^\n]*", "", text)


def imports(path: Path, me: str) -> set:
    text = source(path)
    found = set()
    for m in re.finditer(r"crate::(\w+)(?:::(\w+))?", text):
        top, sub = m.group(1), m.group(2)
        found.add(f"gateway/{sub}" if top == "gateway" and sub else top)
    if me.startswith("gateway/") and me != "gateway/mod":
        # `super::name` is a sibling module when a file of that name exists; any other name
        # (`super::Shared`, `super::{Gateway, legacy}`) is an item of `gateway/mod`.
        names = re.findall(r"\bsuper::(\w+)", text)
        for group in re.findall(r"\bsuper::\{([^}]*)\}", text):
            names += re.findall(r"\b(\w+)\b", group)
        for name in names:
            if (root / "gateway" / f"{name}.rs").exists():
                found.add(f"gateway/{name}")
            elif name not in ("self", "super"):
                found.add("gateway/mod")
    elif me == "gateway/mod":
        for m in re.finditer(r"\b(?:self::)?(\w+)::", text):
            if (root / "gateway" / f"{m.group(1)}.rs").exists():
                found.add(f"gateway/{m.group(1)}")
    found.discard(me)
    if me.startswith("gateway/"):
        found.discard("gateway")
    return found


def first_doc_line(name: str) -> str:
    if name.startswith("gateway/"):
        leaf = name.split("/")[1]
        path = root / "gateway" / ("mod.rs" if leaf == "mod" else f"{leaf}.rs")
    else:
        path = root / f"{name}.rs"
        if not path.exists():
            path = root / name / "mod.rs"
    for line in path.read_text().splitlines():
        if line.startswith("//!"):
            return line[3:].strip()
    return ""


def floor_of(name: str):
    table = GATEWAY_FLOORS if name.startswith("gateway/") else FLOORS
    for floor, names in table.items():
        if name in names:
            return floor
    return None


def main() -> int:
    edges = {}
    for path in sorted(root.rglob("*.rs")):
        if path.name == "lib.rs" and path.parent == root:
            continue
        me = unit(path)
        edges.setdefault(me, set()).update(imports(path, me))
    bad = []
    for me, targets in sorted(edges.items()):
        if floor_of(me) is None:
            bad.append(f"{me}: on no floor (add it to FLOORS)")
        for t in sorted(targets):
            if t not in edges:
                continue
            if me.startswith("gateway/") and not t.startswith("gateway/"):
                continue  # the whole gateway stands above the rest
            fm, ft = floor_of(me), floor_of(t)
            if fm is None or ft is None:
                continue
            if ft >= fm:
                how = "sideways" if ft == fm else "upward"
                bad.append(f"{me} (floor {fm}) -> {t} (floor {ft}): {how}")
    if "--map" in sys.argv:
        for table in (FLOORS, GATEWAY_FLOORS):
            for floor, names in sorted(table.items(), reverse=True):
                for name in names:
                    print(f"{floor:>2}  {name:<24} {first_doc_line(name)}")
    if "--edges" in sys.argv:
        for me, targets in sorted(edges.items()):
            print(f"{me} -> {', '.join(sorted(t for t in targets if t in edges))}")
    # Circles: strongly connected components of more than one module.
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(edges):
        if v not in index:
            visit(v)
    for c in comps:
        bad.append("circle: " + " <-> ".join(c))
    for line in bad:
        print(line)
    print(f"{len(edges)} modules, {sum(len(t) for t in edges.values())} imports, {len(bad)} problem(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
