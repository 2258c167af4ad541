#!/usr/bin/env python3
"""The crate's public API, one line an item, from rustdoc's JSON output.

    python3 scripts/public_api.py                # writes public-api.txt
    python3 scripts/public_api.py --check        # exit 1, with the diff, when public-api.txt differs

Builds the JSON with `cargo rustdoc` (all features, rustdoc's JSON output behind
RUSTC_BOOTSTRAP=1), then walks the public modules from the crate root: every public item
users can name by a path (modules, types, traits, functions, constants, statics, macros), the
variants of public enums, the public fields of public structs, the public methods of their
inherent impls, the items of public traits, and the traits each public type implements.
"""
import difflib
import json
import os
import subprocess
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
snapshot = root / "public-api.txt"
CRATE = "mcp_gatekeeper"


def build() -> dict:
    target = Path(os.environ.get("CARGO_TARGET_DIR", root / "target")) / "public-api"
    env = dict(os.environ, RUSTC_BOOTSTRAP="1", CARGO_INCREMENTAL="0")
    subprocess.run(
        ["cargo", "rustdoc", "-q", "--lib", "--all-features", "--locked",
         "--target-dir", str(target), "--", "-Z", "unstable-options", "--output-format", "json"],
        cwd=root, env=env, check=True,
    )
    return json.loads((target / "doc" / f"{CRATE}.json").read_text())


def kind(item: dict) -> str:
    return next(iter(item["inner"]))


def type_name(t) -> str:
    """A short rendering of a type of an impl: its path's last segment, or its kind."""
    if not isinstance(t, dict):
        return "?"
    if "resolved_path" in t:
        return t["resolved_path"]["path"].split("::")[-1]
    if "generic" in t:
        return t["generic"]
    if "borrowed_ref" in t:
        return "&" + type_name(t["borrowed_ref"]["type"])
    return next(iter(t))


def lines(doc: dict) -> list:
    index = doc["index"]
    out = set()
    seen = set()

    def public(item) -> bool:
        return item.get("visibility") == "public"

    def impls_of(item, path):
        for impl_id in item["inner"][kind(item)].get("impls", []):
            impl = index.get(str(impl_id))
            if not impl:
                continue
            body = impl["inner"]["impl"]
            if body.get("is_synthetic") or body.get("blanket_impl") is not None:
                continue
            trait = body.get("trait")
            if trait:
                out.add(f"impl {trait['path']} for {path}")
                continue
            for member in body.get("items", []):
                m = index.get(str(member))
                if m and public(m):
                    out.add(f"{path}::{m['name']} ({kind(m)})")

    def visit(item_id, path):
        item = index.get(str(item_id))
        if item is None or (item_id, path) in seen:
            return
        seen.add((item_id, path))
        k = kind(item)
        if k == "module":
            out.add(f"{path} (module)")
            for child in item["inner"]["module"]["items"]:
                c = index.get(str(child))
                if c is None or not public(c):
                    continue
                if kind(c) == "use":
                    use = c["inner"]["use"]
                    if use.get("is_glob"):
                        target = index.get(str(use.get("id")))
                        if target and kind(target) == "module":
                            for grandchild in target["inner"]["module"]["items"]:
                                g = index.get(str(grandchild))
                                if g and public(g) and g.get("name"):
                                    visit(grandchild, f"{path}::{g['name']}")
                        continue
                    if use.get("id") is not None and str(use["id"]) in index:
                        visit(use["id"], f"{path}::{use['name']}")
                    else:
                        out.add(f"{path}::{use['name']} (re-export of {use['source']})")
                    continue
                visit(child, f"{path}::{c['name']}")
            return
        out.add(f"{path} ({k})")
        if k == "struct":
            shape = item["inner"]["struct"]["kind"]
            fields = shape.get("plain", {}).get("fields", []) if isinstance(shape, dict) else []
            for f in fields:
                fi = index.get(str(f))
                if fi and public(fi):
                    out.add(f"{path}::{fi['name']} (field)")
            impls_of(item, path)
        elif k == "enum":
            for v in item["inner"]["enum"]["variants"]:
                vi = index.get(str(v))
                if vi:
                    out.add(f"{path}::{vi['name']} (variant)")
            impls_of(item, path)
        elif k == "trait":
            for member in item["inner"]["trait"]["items"]:
                m = index.get(str(member))
                if m:
                    out.add(f"{path}::{m['name']} ({kind(m)})")

    visit(doc["root"], CRATE)
    return sorted(out)


def main() -> int:
    current = "\n".join(lines(build())) + "\n"
    if "--check" in sys.argv:
        committed = snapshot.read_text() if snapshot.exists() else ""
        if committed != current:
            sys.stdout.writelines(difflib.unified_diff(
                committed.splitlines(True), current.splitlines(True),
                "public-api.txt (committed)", "public-api.txt (this tree)"))
            print("the public API changed: run `python3 scripts/public_api.py` and commit the diff")
            return 1
        print(f"public API unchanged: {current.count(chr(10))} lines")
        return 0
    snapshot.write_text(current)
    print(f"public-api.txt: {current.count(chr(10))} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
