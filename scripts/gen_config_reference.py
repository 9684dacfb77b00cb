"""Write docs/configuration.md: every config key with its type, default and meaning.

Usage: .venv/bin/python scripts/gen_config_reference.py [--check]

Generated from the schemas (the dataclasses in src/optlaw/config/: types, defaults and
each field's docstring) and from configs/ (which schema each file names, and the values
it sets on top of the schema's defaults), so the reference cannot drift from either;
tests/test_config_reference.py runs it with --check. A schema field without a
docstring is an error here.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from enum import Enum
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from optlaw.config import field_docs
from optlaw.config.model import ModelConfig
from optlaw.config.optim import OptimizerConfig, RoutingConfig
from optlaw.config.store import SCHEMAS

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
OUT = ROOT / "docs" / "configuration.md"
SCHEMA_PREFIX = "/schema/"


class UndocumentedField(Exception):
    pass


# ----- schemas -> rows -------------------------------------------------------------------------

def type_name(hint: typing.Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        names = [a for a in args if a is not type(None)]
        if set(names) == {int, float}:
            text = "number"
        else:
            text = " or ".join(type_name(a) for a in names)
        return f"{text} or null" if type(None) in args else text
    if origin in (list, typing.List):
        if args and dataclasses.is_dataclass(args[0]):
            return "list of rows (keys below)"
        return f"list of {type_name(args[0])}" if args else "list"
    if origin in (dict, typing.Dict):
        return f"mapping to {type_name(args[1])}" if args and args[1] is not typing.Any else "mapping"
    if isinstance(hint, type) and issubclass(hint, Enum):
        return " \\| ".join(m.value for m in hint)
    if dataclasses.is_dataclass(hint):
        return "section"
    if hint is typing.Any:
        return "any"
    return getattr(hint, "__name__", str(hint))


def schema_rows(schema: type, defaults: typing.Any, prefix: str = "", skip: tuple[str, ...] = ()) -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, meaning) for every leaf field of ``schema`` (sections expanded)."""
    hints = typing.get_type_hints(schema)
    docs = field_docs(schema)
    rows = []
    for f in dataclasses.fields(schema):
        if f.name in skip:
            continue
        key, hint = prefix + f.name, hints[f.name]
        if f.name not in docs:
            raise UndocumentedField(f"{schema.__module__}.{schema.__qualname__}.{f.name} has no docstring")
        value = defaults.get(f.name) if isinstance(defaults, dict) else None
        if dataclasses.is_dataclass(hint):  # a section: its leaves (required sections: the schema's own defaults)
            rows += schema_rows(hint, value if isinstance(value, dict) else schema_defaults(hint), key + ".")
            continue
        rows.append((key, type_name(hint), _format(value), docs[f.name]))
        item = _list_item(hint)
        if item is not None:
            rows += [(f"{key}[].{k}", t, "", m) for k, t, _, m in schema_rows(item, {}, "")]
    return rows


def _list_item(hint: typing.Any) -> type | None:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    for candidate in [hint, *args]:
        if typing.get_origin(candidate) in (list, typing.List):
            item = typing.get_args(candidate)[0]
            return item if dataclasses.is_dataclass(item) else None
    return None


def schema_defaults(schema: type) -> dict:
    node = OmegaConf.structured(schema)
    return OmegaConf.to_container(node, resolve=False, enum_to_str=True)  # type: ignore[return-value]


def _format(value: typing.Any) -> str:
    if value == "???":
        return "required"
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    text = text.removesuffix("...").strip()
    return f"`{text}`".replace("|", "\\|")


def _table(rows: list[tuple[str, str, str, str]], with_default: bool = True) -> list[str]:
    if with_default:
        out = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
        out += [f"| `{k}` | {t} | {d} | {m.replace('|', '/')} |" for k, t, d, m in rows]
    else:
        out = ["| key | type | meaning |", "| --- | --- | --- |"]
        out += [f"| `{k}` | {t} | {m.replace('|', '/')} |" for k, t, _, m in rows]
    return out + [""]


# ----- files -> values ---------------------------------------------------------------------------

def file_schema(path: Path) -> type | None:
    """The schema a config file names first in its defaults list, if any."""
    data = yaml.safe_load(path.read_text()) or {}
    for entry in data.get("defaults") or []:
        if isinstance(entry, str) and entry.startswith(SCHEMA_PREFIX):
            group, _, name = entry[len(SCHEMA_PREFIX):].split("@")[0].rpartition("/")
            return SCHEMAS[(group, name)]
    return None


def file_values(path: Path) -> dict[str, typing.Any]:
    """Dotted key -> value for what the file sets (its defaults list left out)."""
    data = yaml.safe_load(path.read_text()) or {}
    data.pop("defaults", None)
    return _flatten(data)


def file_choices(path: Path) -> list[str]:
    data = yaml.safe_load(path.read_text()) or {}
    return [f"{k}={v}" for entry in data.get("defaults") or [] if isinstance(entry, dict) for k, v in entry.items()]


def _flatten(obj: typing.Any, prefix: str = "") -> dict[str, typing.Any]:
    if isinstance(obj, dict) and (obj or not prefix):
        out: dict[str, typing.Any] = {}
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: obj}


def _rel(path: Path) -> str:
    return f"configs/{path.relative_to(CONFIGS)}"


def _values_block(path: Path) -> list[str]:
    values = file_values(path)
    choices = file_choices(path)
    out = []
    if choices:
        out += [f"Group choices: {', '.join(f'`{c}`' for c in choices)}.", ""]
    if not values:
        return out + ["Sets no values: every key has its schema default.", ""]
    out += ["| key | value |", "| --- | --- |"]
    out += [f"| `{k}` | {_format(v)} |" for k, v in values.items()]
    return out + [""]


def _schema_name(schema: type) -> str:
    return f"`{schema.__module__}.{schema.__qualname__}`"


def _doc(schema: type) -> str:
    return " ".join((schema.__doc__ or "").split())


# ----- the document -----------------------------------------------------------------------------

def render() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated by `scripts/gen_config_reference.py` from the schemas in `src/optlaw/config/`",
        "(types, defaults, meanings) and the files in `configs/` (the values each sets); do not",
        "edit by hand. Override any key on the command line as `key=value` (Hydra syntax); choose",
        "a group option as `group=option` (e.g. `model=olmo/3m`). A value of the wrong type, an",
        "unknown choice or an unknown key is a one-line error before anything runs.",
        "",
    ]
    lines += _root("train", CONFIGS / "train.yaml", skip=("model", "optimizer", "data"))
    lines += _model_group()
    lines += _optimizer_group()
    lines += _options("data", "Group `data`")
    lines += _options("launcher", "Group `launcher` (optlaw sweep)")
    lines += _options("sweep", "Sweep definitions (`sweep=NAME` of `optlaw sweep`)", shared_schema=True)
    for path in sorted(CONFIGS.glob("task_*.yaml")):
        lines += _root(path.stem, path)
    for path in sorted((CONFIGS / "proxy").glob("*.yaml")):
        lines += _root(f"proxy/{path.stem}", path)
    return "\n".join(lines).rstrip() + "\n"


def _root(name: str, path: Path, skip: tuple[str, ...] = ()) -> list[str]:
    schema = file_schema(path)
    assert schema is not None, f"{path} names no schema"
    out = [f"## Root config `{name}`", "", _doc(schema), "", f"Schema: {_schema_name(schema)}; file: `{_rel(path)}`.", ""]
    out += _table(schema_rows(schema, schema_defaults(schema), skip=skip))
    out += _values_block(path)
    return out


def _model_group() -> list[str]:
    out = ["## Group `model`", "", _doc(ModelConfig), "", f"Schema: {_schema_name(ModelConfig)}.", ""]
    out += _table(schema_rows(ModelConfig, schema_defaults(ModelConfig)))
    presets = sorted((CONFIGS / "model").rglob("*.yaml"))
    keys = list(dict.fromkeys(k for p in presets for k in file_values(p)))
    out += ["Presets (generated by `python -m optlaw.models.ladder`; blank = the schema default):", ""]
    out += ["| file | " + " | ".join(keys) + " |", "|" + " --- |" * (len(keys) + 1)]
    for p in presets:
        values = file_values(p)
        out.append(f"| `{_rel(p)}` | " + " | ".join(str(values[k]) if k in values else "" for k in keys) + " |")
    return out + [""]


def _optimizer_group() -> list[str]:
    out = ["## Group `optimizer`", "", _doc(OptimizerConfig), "",
           f"Keys of every optimizer (schema {_schema_name(OptimizerConfig)}):", ""]
    out += _table(schema_rows(OptimizerConfig, schema_defaults(OptimizerConfig)))
    for path in sorted((CONFIGS / "optimizer").glob("*.yaml")):
        schema = file_schema(path)
        assert schema is not None, f"{path} names no schema"
        base = {f.name for f in dataclasses.fields(OptimizerConfig)}
        out += [f"### `optimizer={path.stem}`", "", _doc(schema), "", f"Schema: {_schema_name(schema)}; file: `{_rel(path)}`.", ""]
        extra = schema_rows(schema, schema_defaults(schema), skip=tuple(base))
        if extra:
            out += _table(extra)
        out += _values_block(path)
    for path in sorted((CONFIGS / "optimizer" / "routing").glob("*.yaml")):
        out += [f"### `optimizer/routing={path.stem}`", "", _doc(RoutingConfig), "",
                f"Schema: {_schema_name(RoutingConfig)}; file: `{_rel(path)}`.", ""]
        out += _values_block(path)
    return out


def _options(group: str, title: str, shared_schema: bool = False) -> list[str]:
    out = [f"## {title}", ""]
    paths = sorted((CONFIGS / group).glob("*.yaml"))
    shown: set[type] = set()
    for path in paths:
        schema = file_schema(path)
        assert schema is not None, f"{path} names no schema"
        if schema not in shown:
            label = f"Schema {_schema_name(schema)}" if shared_schema else f"### `{group}={path.stem}`: schema {_schema_name(schema)}"
            out += [label, "", _doc(schema), ""]
            out += _table(schema_rows(schema, schema_defaults(schema)))
            shown.add(schema)
        elif not shared_schema:
            out += [f"### `{group}={path.stem}`: schema {_schema_name(schema)} (as above)", ""]
        if shared_schema:
            out += [f"### `{group}={path.stem}`", "", f"File: `{_rel(path)}`.", ""]
        else:
            out += [f"File: `{_rel(path)}`.", ""]
        out += _values_block(path)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is stale")
    args = parser.parse_args()
    try:
        text = render()
    except UndocumentedField as exc:
        print(f"every schema field needs a docstring: {exc}", file=sys.stderr)
        return 1
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
