"""The machinery every config schema shares: choice enums, numbers, field docs, checks.

A schema is a dataclass; a field's documentation is the string literal written right
below it (an attribute docstring, PEP 257), so the code and the generated reference
(docs/configuration.md) read the same text. A section with rules across its fields
defines ``check(self)``; ``validate`` runs every ``check`` of a composed config at
once, before any compute.
"""

import ast
import dataclasses
import functools
import inspect
import re
import textwrap
import typing
from collections.abc import Iterator, Mapping
from enum import Enum
from typing import Any, TypeVar, Union

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from optlaw.errors import ConfigError
from optlaw.jsonio import plain

T = TypeVar("T")

# A count or ratio a user may write as 2000000 or 2e6. Kept as given (not coerced to
# float) because the run id hashes the resolved values: 20 and 20.0 hash differently.
Number = Union[int, float]


class Choice(str, Enum):
    """A closed set of string values: compose rejects anything else, naming the choices.

    Members compare equal to their strings and print as them, so code reads
    ``cfg.precision == "bf16"`` and messages show ``bf16``.
    """

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    @classmethod
    def values(cls) -> list[str]:
        return [member.value for member in cls]


def choices(enum: type[Choice]) -> str:
    return " | ".join(enum.values())


# ----- field documentation ---------------------------------------------------------------------

def field_docs(schema: type) -> dict[str, str]:
    """Field name -> its attribute docstring, inherited from base schemas unless restated."""
    docs: dict[str, str] = {}
    for klass in reversed(schema.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        docs.update(_own_field_docs(klass))  # copied into a new dict: the cached one is never handed out
    return docs


@functools.lru_cache(maxsize=None)
def _own_field_docs(klass: type) -> dict[str, str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, following in zip(body, body[1:] + [None]):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant) and isinstance(following.value.value, str):
            docs[node.target.id] = " ".join(inspect.cleandoc(following.value.value).split())
    return docs


# ----- typed views and checks ------------------------------------------------------------------

def as_config(schema: type[T], value: Any, where: str) -> T:
    """``value`` (a composed node, a plain dict or an instance) as a checked ``schema`` instance.

    Stages call this on the section they read, so a notebook or a test may pass a plain
    dict and still get the schema's defaults, types and checks. ``where`` is the section's
    key in the root config (e.g. ``"model"``), used to name keys in errors.
    """
    if isinstance(value, schema):
        obj = value
    else:
        try:
            if isinstance(value, DictConfig) and _is_schema_node(value, schema):
                obj = OmegaConf.to_object(value)
            else:
                obj = OmegaConf.to_object(_from_plain(schema, value))
        except OmegaConfBaseException as exc:
            raise ConfigError(describe_error(exc, where)) from None
    check_tree(obj)
    return obj  # type: ignore[return-value]


def _from_plain(schema: type, value: Any) -> DictConfig:
    """The schema's defaults with ``value``'s keys merged in, except that a free-form mapping
    (a ``Dict`` field) replaces its default whole: ``mixture={topic: 1.0}`` means only that
    component, as the dict says, not that one weight changed."""
    node = OmegaConf.structured(schema)
    if value is None:
        return node
    free_form = {name for name, hint in typing.get_type_hints(schema).items() if _is_dict_hint(hint)}
    items = value.items() if isinstance(value, Mapping) else dataclasses.asdict(value).items()
    for key, item in items:
        if key in free_form:
            node[key] = item
        else:
            node.merge_with({key: item})
    return node


def _is_dict_hint(hint: Any) -> bool:
    args = [a for a in typing.get_args(hint) if a is not type(None)]  # Optional[Dict[...]]
    return typing.get_origin(hint) is dict or any(typing.get_origin(a) is dict for a in args)


def _is_schema_node(node: DictConfig, schema: type) -> bool:
    node_type = OmegaConf.get_type(node)
    return isinstance(node_type, type) and issubclass(node_type, schema)


def validate(cfg: DictConfig) -> Any:
    """The composed config as schema instances, after every section's ``check``.

    The one validation pass before compute: types and choices were checked when the
    config was composed; this resolves interpolations, fills nothing (compose did), and
    runs the rules across fields. Raises ``ConfigError`` with a one-line message.
    """
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        raise ConfigError(describe_error(exc, "")) from None
    check_tree(obj)
    return obj


def check_tree(obj: Any) -> None:
    """Call ``check()`` on every schema instance in ``obj``, inner sections first."""
    for section in _sections(obj):
        check = getattr(section, "check", None)
        if check is not None:
            check()


def _sections(obj: Any) -> Iterator[Any]:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from _sections(getattr(obj, f.name))
        yield obj
    elif isinstance(obj, Mapping):
        for value in obj.values():
            yield from _sections(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _sections(value)


def to_plain(cfg: Any) -> Any:
    """Resolved config as plain Python containers (for JSON records and run ids); a schema
    instance goes through the package's one plainer (optlaw.jsonio.plain)."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    return plain(cfg)


# ----- one-line errors -------------------------------------------------------------------------

_EXPECTED = {
    "Integer": "an integer (such as 4096)",
    "Float": "a float (a number such as 0.5)",
    "Boolean": "true or false",
    "String": "a string",
    "Bytes": "bytes",
    "Path": "a path",
}


def _expected_from_hint(hint: str) -> str:
    if "Union[int, float]" in hint:
        return "a number (such as 20 or 2e6)"
    if "List" in hint or "list" in hint:
        return "a list (such as [a,b])"
    if "Dict" in hint or "dict" in hint:
        return "a mapping (such as {a:1})"
    return f"a value of type {hint}"


def describe_error(exc: BaseException, where: str = "") -> str:
    """One line for an OmegaConf error: the key, what it got, and what it expects."""
    text = "\n".join(str(e) for e in _chain(exc))
    full_key = re.search(r"full_key: (\S+)", text)
    key = _join(where, full_key.group(1)) if full_key else where or "a config key"
    enum = re.search(r"Invalid value '(.*?)', expected one of \[(.*?)\]", text)
    if enum:
        return f"{key}={enum.group(1)!r} is not one of: {enum.group(2)}"
    converted = re.search(r"Value '(.*?)' of type '(\w+)' could not be converted to (\w+)", text)
    if converted:
        value, target = converted.group(1), converted.group(3)
        return f"{key}={value!r} is not valid: expected {_EXPECTED.get(target, target.lower())}"
    boolean = re.search(r"Value '(.*?)' is not a valid bool", text)
    if boolean:
        return f"{key}={boolean.group(1)!r} is not valid: expected true or false"
    hinted = re.search(r"Value '(.*?)' of type '(\w+)' is incompatible with type hint '(.+?)'", text)
    if hinted:
        return f"{key}={hinted.group(1)!r} is not valid: expected {_expected_from_hint(hinted.group(3))}"
    if re.search(r"is not a ListConfig, list or tuple", text):
        return f"{key} expects a list (such as {key}=[a,b])"
    if re.search(r"Invalid type assigned|is not a subclass of", text):
        return f"{key} is a section, not a value; set its keys ({key}.KEY=VALUE)"
    missing = re.search(r"[Mm]issing mandatory value:? (\S+)", text)
    if missing:
        name = missing.group(1) if not full_key else full_key.group(1)
        return f"{_join(where, name)} is missing; set it ({_join(where, name)}=...)"
    unknown = re.search(r"Key '([^']+)' (?:is )?not in", text)
    if unknown:
        return f"config key '{key if full_key else _join(where, unknown.group(1))}' does not exist; check the spelling (every key: docs/configuration.md)"
    if "InterpolationResolutionError" in text or "Interpolation key" in text:
        return f"{key}: an interpolation cannot be resolved here; give the value itself"
    first = next((line for line in text.splitlines() if line.strip()), type(exc).__name__)
    return f"{key}: {first.strip()}" if where else first.strip()


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]


def _join(where: str, key: str) -> str:
    if not where or key == where or key.startswith(where + "."):
        return key
    return f"{where}.{key}"
