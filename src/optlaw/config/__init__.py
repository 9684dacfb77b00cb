"""Typed configs: one dataclass schema per config group, composed by Hydra from ``configs/``.

- ``compose(name, overrides)``: the composed config (types, choices and key names checked);
- ``validate(cfg)``: the same as schema instances after every rule across fields
  (one pass, before compute); ``as_config(Schema, value, where)`` does it for one section
  given as a node, a plain dict or an instance;
- ``to_plain(cfg)``: the resolved config as plain containers (records, run ids).

Schemas by area: ``train`` (root of an LLM point and its sections), ``model``, ``optim``,
``data``, ``sweep`` (sweep definitions and launchers), ``proxy`` (proxy points and studies);
``store`` registers them in Hydra's ConfigStore. The generated reference is
docs/configuration.md (scripts/gen_config_reference.py).
"""

from optlaw.config.compose import compose, config_dir, explain_compose_error
from optlaw.config.core import Choice, Number, as_config, field_docs, to_plain, validate
from optlaw.errors import ConfigError

__all__ = [
    "Choice", "ConfigError", "Number", "as_config", "compose", "config_dir", "explain_compose_error",
    "field_docs", "to_plain", "validate",
]
