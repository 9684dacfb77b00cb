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
    """Store every schema (idempotent: storing again replaces the same node)."""
    store = ConfigStore.instance()
    for (group, name), schema in SCHEMAS.items():
        store.store(group="schema" + (f"/{group}" if group else ""), name=name, node=schema)


def schema_path(group: str, name: str) -> str:
    """The defaults-list entry naming a schema, e.g. ``/schema/optimizer/muon@_here_``."""
    return f"/schema/{group + '/' if group else ''}{name}@_here_"
