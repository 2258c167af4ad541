#!/usr/bin/env python3
"""The house rule of src/: modules stand on floors and import only from lower floors.

    python3 scripts/floors.py            # checks; exit 1 on an upward or sideways import or a circle
    python3 scripts/floors.py --edges    # also prints every import between modules
    python3 scripts/floors.py --map      # also prints each module's floor and first doc line

A module is a top-level module of the crate (`engine`, `permission`, ...) or, inside `gateway`,
one of its wings (`gateway/upstream`, ...) or its two files (`gateway/shared`, `gateway/mod`).
Inside a wing, the files import one another without a circle. Imports are read from
`crate::...` and `super::...` paths outside `#[cfg(test)]` modules. FLOORS below is the plan;
the check holds the code against it.
"""
import re
import sys
from pathlib import Path

# Floor 1 is the ground. A module imports only from floors below its own; the five layers
# (floor 4) share a floor so that none of them can import another.
FLOORS = {
    1: ["protocol", "engine", "body", "future", "inner_service", "metrics"],
    2: ["rejection", "list_memo", "counters", "audit"],
    3: ["gatekeeper", "decision_events"],
    4: ["context", "reservation"],
    5: ["identity", "namespace", "permission", "params", "limit", "cost", "metered"],
    6: ["stack", "config", "openai", "pin_file"],
    7: ["fuzzing", "tls", "source", "redis_limits"],
    8: ["oauth", "postgres", "otel"],
    9: ["gateway", "litellm_db"],
}
# Inside the gateway, its wings: what is kept per caller, then the upstream side, the state all
# callers share, the aggregating handler, the MCP endpoint, the HTTP surface, and the public
# face (`gateway/mod`) on top.
GATEWAY_FLOORS = {
    1: ["gateway/caller"],
    2: ["gateway/upstream"],
    3: ["gateway/shared"],
    4: ["gateway/handler"],
    5: ["gateway/endpoint"],
    6: ["gateway/surface"],
    7: ["gateway/mod"],
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
    if me == "gateway/mod":
        for m in re.finditer(r"\b(?:self::)?(\w+)::", text):
            name = m.group(1)
            if (root / "gateway" / name).is_dir() or (root / "gateway" / f"{name}.rs").exists():
                found.add(f"gateway/{name}")
    found.discard(me)
    if me.startswith("gateway/"):
        found.discard("gateway")
    return found


def wing_files(path: Path):
    """(wing, file, files it imports in its own wing) for a file inside a gateway wing."""
    rel = path.relative_to(root).with_suffix("")
    if len(rel.parts) != 3 or rel.parts[0] != "gateway":
        return None
    wing, me = rel.parts[1], rel.parts[2]
    text = source(path)
    found = set(re.findall(rf"crate::gateway::{wing}::(\w+)", text))
    if me != "mod":
        found |= set(re.findall(r"\bsuper::(\w+)", text))
        for group in re.findall(r"\bsuper::\{([^}]*)\}", text):
            found |= set(re.findall(r"\b(\w+)\b", group))
    else:
        found |= {n for n in re.findall(r"\b(\w+)::", text)}
    siblings = {p.stem for p in (root / "gateway" / wing).glob("*.rs")}
    # An item of the wing's `mod.rs` (`super::Name`) is an import of `mod`.
    named = {n if n in siblings else "mod" for n in found if n not in ("self", "super", "crate")}
    if me != "mod":
        named = {n for n in named if n in siblings or n == "mod"}
    else:
        named = {n for n in named if n in siblings}
    named.discard(me)
    return wing, me, named


def first_doc_line(name: str) -> str:
    if name.startswith("gateway/"):
        leaf = name.split("/")[1]
        path = root / "gateway" / ("mod.rs" if leaf == "mod" else f"{leaf}.rs")
        if not path.exists():
            path = root / "gateway" / leaf / "mod.rs"
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


def circles(edges: dict) -> list:
    """Strongly connected components of more than one node: the circles of `edges`."""
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
    return comps


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
    wings = {}
    for path in sorted((root / "gateway").rglob("*.rs")):
        found = wing_files(path)
        if found:
            wing, me, named = found
            wings.setdefault(wing, {})[me] = named
    if "--edges" in sys.argv:
        for wing, files in sorted(wings.items()):
            for me, named in sorted(files.items()):
                print(f"  gateway/{wing}/{me} -> {', '.join(sorted(named))}")
    comps = circles(edges)
    for wing, files in sorted(wings.items()):
        comps += [[f"gateway/{wing}/{f}" for f in c] for c in circles(files)]
    for c in comps:
        bad.append("circle: " + " <-> ".join(c))
    for line in bad:
        print(line)
    print(f"{len(edges)} modules, {sum(len(t) for t in edges.values())} imports, {len(bad)} problem(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
