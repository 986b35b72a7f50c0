"""Presets in config groups + Hydra-style `key=value` overrides, merged into the typed schema with OmegaConf.

Resolution order (later wins): schema defaults -> one preset per group (defaults below, or the user's `group=name`)
-> the user's `key=value` overrides. Group presets apply in the fixed order of GROUPS whatever their order on the
command line. A preset file is a partial config at the root (it may set keys outside its own group, e.g. a schedule
preset may set `train.weight_decay`); its first comment line is its description in `--help`.
"""

from __future__ import annotations

import math

import difflib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sleeptrain.config import Config, iter_keys
from sleeptrain.errors import ConfigError

GROUPS = ("data", "model", "schedule")
DEFAULT_PRESETS = {"data": "demo", "model": "tiny", "schedule": "sleep"}
PATH_KEYS = ("run.dir", "data.cache_dir", "tokenizer.path", "eval.blimp_path", "model.init_from", "eval.suite_data")


@dataclass
class LoadedConfig:
    config: Config
    presets: dict[str, str]
    overrides: list[str]


def preset_dir(group: str) -> Path:
    return Path(str(resources.files("sleeptrain") / "conf" / group))


def list_presets(group: str) -> dict[str, str]:
    """Preset name -> description (first comment line of the file)."""
    out = {}
    for path in sorted(preset_dir(group).glob("*.yaml")):
        first = path.read_text().splitlines()[0] if path.stat().st_size else ""
        out[path.stem] = first.lstrip("# ").strip() if first.startswith("#") else ""
    return out


def preset_path(group: str, name: str, key: str | None = None) -> Path:
    """The file of preset `name` in `group` (or `name` itself, a path to a .yaml file); errors name `key`
    (default: the group)."""
    key = key or group
    if name.endswith((".yaml", ".yml")):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ConfigError(f"{key}: preset file {name!r} does not exist")
        return path
    path = preset_dir(group) / f"{name}.yaml"
    if not path.is_file():
        allowed = ", ".join(list_presets(group))
        raise ConfigError(f"{key}: unknown preset {name!r}; available: {allowed} (or a path to a .yaml file)")
    return path


def all_keys(schema: type = Config) -> list[str]:
    return [key for key, *_ in iter_keys(schema)]


def _unknown_key_message(key: str, schema: type = Config) -> str:
    close = difflib.get_close_matches(key, all_keys(schema), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    command = "train" if schema is Config else ("eval" if schema.__name__ == "EvalCommandConfig" else "continual")
    return f"{key}: unknown key{hint} (sleeptrain {command} --help lists every key)"


def _type_of(key: str, schema: type = Config) -> str:
    for k, type_name, _, _ in iter_keys(schema):
        if k == key:
            return type_name
    return "another type"


def merge_config(base: DictConfig, update: Any, origin: str, user_key: str | None = None,
           schema: type = Config) -> DictConfig:
    """Merge `update` into `base`, turning OmegaConf's multi-line errors into one line naming the key."""
    try:
        return OmegaConf.merge(base, update)
    except OmegaConfBaseException as exc:
        key = user_key or getattr(exc, "full_key", None) or "?"
        name = type(exc).__name__
        if name in ("ConfigKeyError", "ConfigAttributeError", "KeyValidationError"):
            raise ConfigError(f"{_unknown_key_message(key, schema)} [{origin}]") from None
        value = getattr(exc, "value", None)
        if value is None and key != "?":
            # the offending value is the one being merged in; find it in the update
            try:
                value = OmegaConf.select(OmegaConf.create(update), key)
            except OmegaConfBaseException:
                value = None
        raise ConfigError(f"{key}: expected {_type_of(key, schema)}, got {value!r} [{origin}]") from None


def load_yaml(path: Path, origin: str) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{origin}: {path} is not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: {path} must hold a mapping of keys, not {type(data).__name__}")
    return data


def split_args(args: list[str]) -> tuple[dict[str, str], list[str]]:
    """Split command-line words into group choices (`model=tiny`) and dotted overrides (`train.lr=1e-3`)."""
    groups: dict[str, str] = {}
    overrides: list[str] = []
    for arg in args:
        if "=" not in arg:
            raise ConfigError(f"{arg!r}: expected group=preset or key=value (sleeptrain train --help)")
        key, value = arg.split("=", 1)
        if not key:
            raise ConfigError(f"{arg!r}: empty key before '='")
        if key in GROUPS:
            groups[key] = value
        else:
            overrides.append(arg)
    return groups, overrides


def load_config(args: list[str] | None = None, defaults: dict[str, str] | None = None) -> LoadedConfig:
    """Build a validated `Config` from preset choices and overrides, as the CLI does."""
    groups, overrides = split_args(list(args or []))
    presets = {**(defaults or DEFAULT_PRESETS), **groups}
    cfg = OmegaConf.structured(Config)
    for group in GROUPS:
        path = preset_path(group, presets[group])
        cfg = merge_config(cfg, load_yaml(path, f"{group}={presets[group]}"), f"{group}={presets[group]}")
    cfg = apply_overrides(cfg, overrides, Config)
    for key in PATH_KEYS:
        value = OmegaConf.select(cfg, key)
        if value:
            OmegaConf.update(cfg, key, str(Path(value).expanduser().resolve()))
    if cfg.data.path and cfg.data.source != "hf":
        cfg.data.path = str(Path(cfg.data.path).expanduser().resolve())
    elif cfg.data.path and Path(cfg.data.path).expanduser().exists():
        cfg.data.path = str(Path(cfg.data.path).expanduser().resolve())
    return LoadedConfig(config=to_config(cfg), presets=presets, overrides=overrides)


def apply_overrides(cfg: DictConfig, overrides: list[str], schema: type) -> DictConfig:
    """Merge dotted `key=value` overrides one by one (so an error names the override that caused it)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{item!r}: expected key=value")
        key, value = item.split("=", 1)
        try:
            update = OmegaConf.from_dotlist([item])
        except OmegaConfBaseException:
            raise ConfigError(f"{key}: cannot parse value {value!r}") from None
        if value.strip() in ("", "null", "~") and key in all_keys(schema):
            update = OmegaConf.create({})
            OmegaConf.update(update, key, None)
        cfg = merge_config(cfg, update, item, user_key=key, schema=schema)
    return cfg


def load_overrides(schema: type, overrides: list[str], preset: Path | None = None, origin: str = "preset",
                   path_keys: tuple[str, ...] = (), extra: tuple[tuple[dict, str], ...] = ()):
    """A validated instance of `schema` (any config dataclass): schema defaults, then the optional `preset` YAML
    file, then the `extra` (mapping, origin) layers, then `key=value` overrides; the values of `path_keys` are made
    absolute."""
    cfg = OmegaConf.structured(schema)
    if preset is not None:
        cfg = merge_config(cfg, load_yaml(preset, origin), origin, schema=schema)
    for layer, layer_origin in extra:
        cfg = merge_config(cfg, layer, layer_origin, schema=schema)
    cfg = apply_overrides(cfg, overrides, schema)
    for key in path_keys:
        value = OmegaConf.select(cfg, key)
        if value:
            OmegaConf.update(cfg, key, str(Path(value).expanduser().resolve()))
    return to_config(cfg, schema)


def reject_non_finite(value, key: str = "") -> None:
    """No option takes NaN or infinity: `train.lr=nan` would pass every `> 0` check and fail deep in training."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: must be a finite number, got {value}")
    if isinstance(value, dict):
        for k, v in value.items():
            reject_non_finite(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            reject_non_finite(v, f"{key}[{i}]")


def to_config(cfg: DictConfig | dict, schema: type = Config):
    """Instantiate the dataclasses (running every `__post_init__` check; for a training `Config` also the checks
    that ask the sleep registries, `sleeptrain.sleep.registry.check_config`)."""
    config = _instantiate(cfg, schema)
    if schema is Config:
        from sleeptrain.sleep.registry import check_config  # the registries sit above the schema

        check_config(config)
    return config


def _instantiate(cfg: DictConfig | dict, schema: type):
    if not isinstance(cfg, DictConfig) or OmegaConf.get_type(cfg) is not schema:
        cfg = merge_config(OmegaConf.structured(schema), cfg, "config", schema=schema)
    try:
        reject_non_finite(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))
    except OmegaConfBaseException:
        pass  # unresolvable values are reported by to_object below
    try:
        return OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except OmegaConfBaseException as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ConfigError):
            raise ConfigError(str(cause)) from None
        msg = str(exc).splitlines()[0]
        raise ConfigError(msg) from None


def config_to_yaml(config: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def config_from_yaml(text: str) -> Config:
    return to_config(OmegaConf.create(text))


def flat_config(config: Config) -> dict[str, Any]:
    """Dotted key -> value, for trackers and run records."""
    container = OmegaConf.to_container(OmegaConf.structured(config))

    def walk(node: Any, prefix: str):
        if isinstance(node, dict):
            for k, v in node.items():
                yield from walk(v, f"{prefix}{k}.")
        else:
            yield prefix[:-1], node

    return dict(walk(container, ""))


def help_text(schema: type = Config) -> str:
    """The `--help` epilog: groups with presets (for `train`), then every key of the schema."""
    lines = []
    if schema is Config:
        lines.append("config groups (group=preset; a path to a .yaml file also works):")
        for group in GROUPS:
            lines.append(f"  {group}=  (default: {DEFAULT_PRESETS[group]})")
            for name, desc in list_presets(group).items():
                lines.append(f"      {name:<16} {desc}")
        lines.append("")
    effective = {}
    if schema is Config:  # what a bare `sleeptrain train` runs: the schema under the default presets
        effective = flat_config(load_config([]).config)
        chosen = " ".join(f"{g}={DEFAULT_PRESETS[g]}" for g in GROUPS)
        lines.append(f"keys (key=value, dotted; lists as key=[a,b]; null clears an optional value); defaults are "
                     f"what a bare `sleeptrain train` uses ({chosen}), '*' where a preset sets them:")
    else:
        lines.append("keys (key=value, dotted; lists as key=[a,b]; null clears an optional value):")
    for key, type_name, default, help_, registry in iter_keys(schema, registries=True):
        if registry:  # names registered by now (plugins included), not at the schema's import
            from sleeptrain.sleep.registry import registered

            help_ = f"{help_}; registered: {', '.join(registered(registry))}"
        type_name = type_name.replace("Optional[", "").rstrip("]") if "Optional" in type_name else type_name
        value, mark = default, ""
        if key in effective and effective[key] != default:
            value, mark = effective[key], "*"
        lines.append(f"  {key:<30} {type_name:<10} default {value!r}{mark}: {help_}")
    return "\n".join(lines)
