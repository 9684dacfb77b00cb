"""Compose Hydra configs from ``configs/`` with ``key=value`` overrides.

We use Hydra's compose API rather than ``@hydra.main`` so one console script can
host several subcommands, and so Hydra does not change the working directory or
write ``outputs/`` folders a user did not ask for. Every file names its schema
(optlaw.config.store), so compose checks types, choices and key names; the rules
across fields run in ``optlaw.config.validate``.
"""

import os
import re
from pathlib import Path

from omegaconf import DictConfig

from optlaw.config.core import describe_error
from optlaw.config.store import register
from optlaw.errors import ConfigError

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def config_dir() -> Path:
    """The folder holding the Hydra configs.

    Order: ``$OPTLAW_CONFIG_DIR``; the copy shipped inside a wheel
    (``optlaw/_configs``); the repository's ``configs/`` for an editable install.
    """
    env = os.environ.get("OPTLAW_CONFIG_DIR")
    candidates = [Path(env)] if env else []
    candidates += [_PACKAGE_DIR / "_configs", _PACKAGE_DIR.parent.parent / "configs"]
    for path in candidates:
        if path.is_dir():
            return path
    raise ConfigError(
        "cannot find optlaw's configs/ folder; set OPTLAW_CONFIG_DIR to the repository's configs/ directory"
    )


def compose(config_name: str | None, overrides: list[str] | None = None, extra_search_path: str | None = None) -> DictConfig:
    """Compose ``configs/<config_name>.yaml`` with Hydra overrides.

    ``extra_search_path`` (or ``$OPTLAW_EXTRA_CONFIGS``) adds a user's own config
    folder, so a researcher can keep sweep and model files outside the package.
    Raises ``ConfigError`` with a one-line message for any composition problem,
    a value of the wrong type included.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register()
    overrides = list(overrides or [])
    extra = extra_search_path or os.environ.get("OPTLAW_EXTRA_CONFIGS")
    if extra:
        overrides.append(f"hydra.searchpath=[file://{Path(extra).resolve()}]")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = hydra_compose(config_name=config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise ConfigError(explain_compose_error(exc)) from None
    finally:
        GlobalHydra.instance().clear()
    return cfg


def explain_compose_error(exc: Exception) -> str:
    """Turn Hydra's multi-line errors into one line that names the key and the fix."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    missing_option = re.search(r"Could not find '([^']+)/([^'/]+)'", text)
    if missing_option:
        group, name = missing_option.groups()
        top = group.split("/")[0]
        choice = f"{group}/{name}".split("/", 1)[1]
        options = _list_options(top)
        hint = f"; available: {', '.join(options)}" if options else ""
        return f"unknown {top} '{choice}' ({top}={choice}){hint}"
    not_in_struct = re.search(r"Could not override '([^']+)'", text) or re.search(r"Key '([^']+)' is not in struct", text)
    if not_in_struct:
        key = not_in_struct.group(1)
        return (
            f"config key '{key}' does not exist; check the spelling (every key: docs/configuration.md), "
            f"or, in a free-form section such as optimizer.kwargs, add it with '+' (+{key}=...)"
        )
    if _is_value_error(exc):
        return describe_error(exc)
    return first


def _is_value_error(exc: BaseException) -> bool:
    # Hydra wraps OmegaConf's ValidationError ("Error merging override ...") or quotes it
    # ("In 'x': ValidationError raised while composing config").
    from omegaconf.errors import OmegaConfBaseException

    cause = exc.__cause__ or exc.__context__
    return isinstance(exc, OmegaConfBaseException) or isinstance(cause, OmegaConfBaseException) or "full_key:" in str(exc)


def _list_options(group: str) -> list[str]:
    try:
        root = config_dir() / group
    except ConfigError:
        return []
    if not root.is_dir():
        return []
    top_level = sorted(p.stem for p in root.glob("*.yaml"))
    if top_level:
        # Folders beside top-level options are sub-groups (e.g. optimizer/routing), not choices.
        return top_level
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))
