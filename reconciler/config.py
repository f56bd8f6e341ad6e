"""Operator configuration: what lives outside the specs, on purpose.

Specs name scripts; only the operator decides what code a name runs. Scripts are
registered in the ``reconciler.scripts`` entry point group of an installed package,
or in ``reconciler.toml``::

    paths = ["flows/"]            # the default spec paths, relative to this file

    [scripts]
    score-lead = "acme_crm.scoring:score_lead"

    [drift]
    ignore = ["legacy-*:status"]

The file is found the way the tools of this ecosystem find theirs: ``--config FILE``
or ``RECONCILER_CONFIG`` if given (a given file that is missing or does not parse is
an error naming it); else walking up from the spec paths to the repository root (the
directory holding ``.git``); else walking up from the working directory the same way.

This module only reads names and targets; nothing is imported until the dispatcher
runs a script.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

from reconciler.errors import ConfigError, Location

CONFIG_FILE = "reconciler.toml"
CONFIG_ENV = "RECONCILER_CONFIG"
ENTRY_POINT_GROUP = "reconciler.scripts"
_TARGET_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass(frozen=True, order=True)
class ScriptRegistration:
    name: str
    target: str
    origin: str  # "entry point <dist>" or the config file


@dataclass(frozen=True)
class OperatorConfig:
    """One ``reconciler.toml`` as read (``path`` None: none was found, all defaults)."""

    path: Path | None = None
    data: Mapping[str, object] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        return str(self.path) if self.path is not None else CONFIG_FILE

    def spec_paths(self) -> list[Path]:
        """``paths = [...]``, relative to the config file; empty when not set."""
        paths = self.data.get("paths", [])
        if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
            raise ConfigError('paths must be a list of spec paths, e.g. paths = ["flows/"]', Location(self.origin))
        base = self.path.parent if self.path is not None else Path()
        return [base / p for p in paths]

    def scripts(self) -> dict[str, ScriptRegistration]:
        """Every script an operator registered, by name. The config file wins over an
        entry point of the same name, so an operator can override a package."""
        scripts: dict[str, ScriptRegistration] = {}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else "unknown package"
            scripts[ep.name] = ScriptRegistration(ep.name, ep.value, f"entry point ({dist})")
        table = self.data.get("scripts", {})
        if not isinstance(table, dict):
            raise ConfigError('[scripts] must be a table of name = "module:function"', Location(self.origin))
        for name, target in table.items():
            if not isinstance(target, str) or not _TARGET_RE.match(target):
                raise ConfigError(
                    f'script {name!r}: target must be "module:function", got {target!r}', Location(self.origin)
                )
            scripts[name] = ScriptRegistration(name, target, self.origin)
        return scripts

    def drift_ignore(self) -> list[str]:
        """``[drift] ignore = ["flow-glob:kind", ...]``."""
        table = self.data.get("drift", {})
        rules = table.get("ignore", []) if isinstance(table, dict) else None
        if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
            raise ConfigError('[drift] ignore must be a list of "flow-glob:kind" strings', Location(self.origin))
        return rules


# The file this process was told to use (--config), set by the command line for every
# invocation, so code without the spec paths at hand (the runtime) reads the same file.
_selected: dict[str, tuple[str, str]] = {}


def select_config_file(path: Path | None, setting: str = "--config") -> None:
    """Use ``path`` (named by ``setting`` in errors) instead of searching; None: search."""
    _selected.clear()
    if path is not None:
        _selected["file"] = (str(path), setting)


def find_config(spec_paths: Iterable[Path] = (), *, cwd: Path | None = None) -> OperatorConfig:
    """The operator configuration for commands on ``spec_paths`` (see the module docstring)."""
    given = _selected.get("file")
    if given is None and CONFIG_ENV in os.environ:
        given = (os.environ[CONFIG_ENV], CONFIG_ENV)
    if given is not None:
        name, setting = given
        if not name.strip():
            raise ConfigError(f"{setting} is set but empty; name a {CONFIG_FILE} file or unset it")
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"config file {path} (from {setting}) does not exist")
        return OperatorConfig(path, _read(path))
    starts = [p if p.is_dir() else p.parent for p in (Path(p).absolute() for p in spec_paths)]
    for start in [*starts, (cwd or Path.cwd()).absolute()]:
        found = _search_up(start)
        if found is not None:
            return OperatorConfig(found, _read(found))
    return OperatorConfig()


def _search_up(start: Path) -> Path | None:
    """The nearest ``reconciler.toml`` from ``start`` up to the repository root (the
    directory holding ``.git``), or up to the filesystem root outside a repository."""
    for directory in (start, *start.parents):
        candidate = directory / CONFIG_FILE
        if candidate.is_file():
            return candidate
        if (directory / ".git").exists():
            return None
    return None


def _read(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", Location(str(path))) from None
    except UnicodeDecodeError:
        raise ConfigError("file is not valid UTF-8", Location(str(path))) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", Location(str(path))) from None


def _config_in(directory: Path | None) -> OperatorConfig:
    if directory is None:
        return find_config()
    path = directory / CONFIG_FILE
    return OperatorConfig(path, _read(path)) if path.is_file() else OperatorConfig(path)


def registered_scripts(directory: Path | None = None) -> dict[str, ScriptRegistration]:
    """The registered scripts: of the config in ``directory``, or of the one found."""
    return _config_in(directory).scripts()


def drift_ignore_rules(directory: Path | None = None) -> list[str]:
    """``[drift] ignore`` of the config in ``directory``, or of the one found."""
    return _config_in(directory).drift_ignore()
