"""Register every schema in Hydra's ConfigStore, under ``schema/``.

A YAML file names its schema first in its defaults list, e.g. configs/optimizer/muon.yaml:

    defaults:
      - /schema/optimizer/muon@_here_
      - routing: default
      - _self_

so composing it starts from the schema's typed defaults and the file only adds its own
values; a wrong type or an unknown key fails at compose time, naming the key. Groups
without a per-option schema (model, optimizer/routing) are typed by the field that holds
them in the root schema.
"""

from hydra.core.config_store import ConfigStore

from optlaw.config.data import FactsDataConfig, SyntheticDataConfig, TextDataConfig, TokensDataConfig
from optlaw.config.model import ModelConfig
from optlaw.config.optim import (AdamWOptimizerConfig, GenericOptimizerConfig, MuonOptimizerConfig,
                                 ShampooOptimizerConfig, SoapOptimizerConfig)
from optlaw.config.proxy import (QuadraticPointConfig, QuadraticStudyConfig, RandomFeaturesPointConfig,
                                 RandomFeaturesStudyConfig)
from optlaw.config.sweep import LocalLauncherConfig, SlurmLauncherConfig, SweepConfig
from optlaw.config.train import TrainConfig

# (group under schema/, name) -> schema
SCHEMAS: dict[tuple[str, str], type] = {
    ("", "train"): TrainConfig,
    ("", "model"): ModelConfig,
    ("", "sweep"): SweepConfig,
    ("optimizer", "adamw"): AdamWOptimizerConfig,
    ("optimizer", "muon"): MuonOptimizerConfig,
    ("optimizer", "shampoo"): ShampooOptimizerConfig,
    ("optimizer", "soap"): SoapOptimizerConfig,
    ("optimizer", "generic"): GenericOptimizerConfig,
    ("data", "synthetic"): SyntheticDataConfig,
    ("data", "facts"): FactsDataConfig,
    ("data", "text"): TextDataConfig,
    ("data", "tokens"): TokensDataConfig,
    ("launcher", "local"): LocalLauncherConfig,
    ("launcher", "slurm"): SlurmLauncherConfig,
    ("task", "quadratic"): QuadraticPointConfig,
    ("task", "random_features"): RandomFeaturesPointConfig,
    ("proxy", "quadratic"): QuadraticStudyConfig,
    ("proxy", "random_features"): RandomFeaturesStudyConfig,
}


def register() -> None:
    """Store every schema (idempotent). Every compose calls this; a schema whose node we stored is
    still in the store is not stored again: converting the dataclasses to configs took a third of
    a compose (measured on the demo's planning, issue 13)."""
    store = ConfigStore.instance()
    for (group, name), schema in SCHEMAS.items():
        full_group = "schema" + (f"/{group}" if group else "")
        if _stored_node(store, full_group, name) is _STORED.get((group, name), _MISSING):
            continue
        store.store(group=full_group, name=name, node=schema)
        _STORED[(group, name)] = _stored_node(store, full_group, name)


_STORED: dict[tuple[str, str], object] = {}  # (group, name) -> the ConfigNode register() stored
_MISSING = object()


def _stored_node(store: ConfigStore, group: str, name: str) -> object:
    node = store.repo
    for part in group.split("/"):
        node = node.get(part) if isinstance(node, dict) else None
    return node.get(f"{name}.yaml") if isinstance(node, dict) else None


def schema_path(group: str, name: str) -> str:
    """The defaults-list entry naming a schema, e.g. ``/schema/optimizer/muon@_here_``."""
    return f"/schema/{group + '/' if group else ''}{name}@_here_"
