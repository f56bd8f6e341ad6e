"""Operator configuration: what lives outside the specs, on purpose.

Specs name scripts; only the operator decides what code a name runs. Scripts are
registered in the ``reconciler.scripts`` entry point group of an installed package,
or in ``reconciler.toml`` in the working directory::

    [scripts]
    score-lead = "acme_crm.scoring:score_lead"

This module only reads names and targets; nothing is imported until the dispatcher
runs a script.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from reconciler.errors import ConfigError, Location

CONFIG_FILE = "reconciler.toml"
ENTRY_POINT_GROUP = "reconciler.scripts"
_TARGET_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass(frozen=True, order=True)
class ScriptRegistration:
    name: str
    target: str
    origin: str  # "entry point <dist>" or the config file


def read_config(directory: Path) -> dict[str, object]:
    path = directory / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", Location(str(path))) from None
    except UnicodeDecodeError:
        raise ConfigError("file is not valid UTF-8", Location(str(path))) from None


def registered_scripts(directory: Path | None = None) -> dict[str, ScriptRegistration]:
    """Every script an operator registered, by name. The config file wins over an
    entry point of the same name, so an operator can override a package."""
    scripts: dict[str, ScriptRegistration] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "unknown package"
        scripts[ep.name] = ScriptRegistration(ep.name, ep.value, f"entry point ({dist})")
    directory = directory or Path.cwd()
    table = read_config(directory).get("scripts", {})
    origin = str(directory / CONFIG_FILE)
    if not isinstance(table, dict):
        raise ConfigError('[scripts] must be a table of name = "module:function"', Location(origin))
    for name, target in table.items():
        if not isinstance(target, str) or not _TARGET_RE.match(target):
            raise ConfigError(f'script {name!r}: target must be "module:function", got {target!r}', Location(origin))
        scripts[name] = ScriptRegistration(name, target, origin)
    return scripts


def drift_ignore_rules(directory: Path | None = None) -> list[str]:
    """``[drift] ignore = ["flow-glob:kind", ...]`` from reconciler.toml."""
    directory = directory or Path.cwd()
    table = read_config(directory).get("drift", {})
    origin = str(directory / CONFIG_FILE)
    rules = table.get("ignore", []) if isinstance(table, dict) else None
    if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
        raise ConfigError('[drift] ignore must be a list of "flow-glob:kind" strings', Location(origin))
    return rules
