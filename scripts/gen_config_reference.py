"""Write docs/configuration.md: every config group, option and key with its default.

Usage: .venv/bin/python scripts/gen_config_reference.py [--check]

The reference is generated from configs/ (values from the YAML, descriptions
from each key's trailing or preceding comment) so it cannot drift from the
configs; tests/test_config_reference.py runs it with --check.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
OUT = ROOT / "docs" / "configuration.md"
KEY_LINE = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_][\w.\-]*):(?P<rest>.*)$")


def _comment_of(rest: str) -> str:
    # A '#' inside a quoted string is not a comment; our configs do not quote '#'.
    return rest.split("#", 1)[1].strip() if "#" in rest else ""


def describe_file(path: Path) -> list[tuple[str, str, str]]:
    """(dotted key, default, description) for every leaf key, in file order."""
    data = yaml.safe_load(path.read_text()) or {}
    rows: list[tuple[str, str, str]] = []
    stack: list[tuple[int, str]] = []
    pending_comment: list[str] = []
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if stripped.startswith("#"):
            pending_comment.append(stripped.lstrip("#").strip())
            continue
        match = KEY_LINE.match(raw)
        if not match or stripped.startswith("- "):
            if not stripped:
                pending_comment = []
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = match["key"]
        dotted = ".".join([k for _, k in stack] + [key])
        stack.append((indent, key))
        if dotted == "defaults":
            pending_comment = []
            continue
        value = _lookup(data, dotted)
        comment = _comment_of(match["rest"]) or " ".join(pending_comment)
        pending_comment = []
        if isinstance(value, dict) and value:
            continue  # a section: its leaves get their own rows
        rows.append((dotted, _format(value), comment))
    return rows


def _lookup(data: object, dotted: str) -> object:
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _format(value: object) -> str:
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, dict):
        return "`{}`"
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    text = text.removesuffix("...").strip()
    return f"`{text}`".replace("|", "\\|")


def render() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from `configs/` by `scripts/gen_config_reference.py`; do not edit by hand.",
        "Override any key on the command line as `key=value` (Hydra syntax); choose a group",
        "option as `group=option` (e.g. `model=olmo/3m`).",
        "",
    ]
    roots = sorted(p for p in CONFIGS.glob("*.yaml"))
    groups = sorted({p.parent for p in CONFIGS.rglob("*.yaml")} - {CONFIGS})
    for path in roots:
        lines += _table(f"Root config `{path.stem}`", path)
    for group_dir in groups:
        rel = group_dir.relative_to(CONFIGS)
        for path in sorted(group_dir.glob("*.yaml")):
            lines += _table(f"`{rel}={path.relative_to(CONFIGS / rel.parts[0]).with_suffix('')}`", path)
    return "\n".join(lines).rstrip() + "\n"


def _table(title: str, path: Path) -> list[str]:
    rows = describe_file(path)
    out = [f"## {title}", "", f"File: `configs/{path.relative_to(CONFIGS)}`", ""]
    if not rows:
        return out + ["(no keys)", ""]
    out += ["| key | default | meaning |", "| --- | --- | --- |"]
    out += [f"| `{k}` | {v} | {c.replace('|', '/')} |" for k, v, c in rows]
    return out + [""]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            print("docs/configuration.md is stale: run scripts/gen_config_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
