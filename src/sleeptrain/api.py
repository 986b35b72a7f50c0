"""sleeptrain from Python (docs/PYTHON_API.md): the CLI's `train` as functions, with keyword options.

    import sleeptrain
    cfg = sleeptrain.load_config("schedule=homeostasis", train={"max_steps": 200, "lr": 3e-3}, seed=1)
    result = sleeptrain.train("schedule=homeostasis", train={"max_steps": 200}, run={"dir": "runs"})
    result = sleeptrain.train(cfg)                       # a Config you built or changed
    result = sleeptrain.train(resume="runs/2026-...")    # continue an interrupted run

Positional words are exactly the CLI's (`data=babylm`, `train.lr=3e-3`); a keyword whose value is a dict is a section
(`train={"lr": 3e-3}` is `train.lr=3e-3`, nested dicts nest), a keyword naming a preset group with a string value is
a preset (`schedule="climb_sleep"`), any other keyword is one key (`seed=1`). Values are written as YAML/JSON, so
lists, booleans and None mean what they do in Python. Errors are the CLI's: a `ConfigError` naming the key.
`SleepSchedule` (your own loop) and `SleepCallback` (a transformers.Trainer) are in `sleeptrain.integrations`,
and importable from `sleeptrain` directly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sleeptrain.config import Config
from sleeptrain.errors import ConfigError
from sleeptrain.presets import GROUPS


def words(args: tuple[str, ...], options: dict[str, Any]) -> list[str]:
    """The CLI words of positional `args` and keyword `options`."""
    out = []
    for word in args:
        if not isinstance(word, str) or "=" not in word:
            raise ConfigError(f"{word!r}: a positional option is a key=value word, as on the command line")
        out.append(word)
    for key, value in options.items():
        if isinstance(value, dict):
            out += _section(key, value)
        elif key in GROUPS and isinstance(value, str):
            out.append(f"{key}={value}")
        else:
            out.append(f"{key}={json.dumps(value)}")
    return out


def _section(prefix: str, values: dict[str, Any]) -> list[str]:
    out = []
    for key, value in values.items():
        if isinstance(value, dict):
            out += _section(f"{prefix}.{key}", value)
        else:
            out.append(f"{prefix}.{key}={json.dumps(value)}")
    return out


def load_config(*args: str, **options: Any) -> Config:
    """The validated `Config` of preset words and keyword options (module docstring), as `sleeptrain train` builds
    it."""
    from sleeptrain.presets import load_config as load

    return load(words(args, options)).config


def train(*args: str | Config, resume: str | Path | None = None, **options: Any):
    """Train a run as `sleeptrain train` does and return its `RunResult` (run_dir, final_dir, losses, evaluation).

    `train(cfg)` runs a `Config`; `train(resume=RUN_DIR)` continues an interrupted run from its newest checkpoint
    (keyword options there are the changes a resume allows, e.g. `run={"progress": False}` with
    `resume={"allow_changes": [...]}` — see docs/RUNNING.md)."""
    from sleeptrain.lm.resume import plan_resume
    from sleeptrain.lm.train import train as run

    if resume is not None:
        if args:
            raise ConfigError("resume: continues the run with its own config; give keyword changes only, no words")
        plan = plan_resume([f"resume={resume}", *words((), options)])
        return run(plan.config, overrides=plan.overrides, resume_from=plan.checkpoint)
    if len(args) == 1 and isinstance(args[0], Config):
        if options:
            raise ConfigError("train(cfg): options go into the Config (sleeptrain.load_config(..., **options))")
        return run(args[0])
    from sleeptrain.presets import load_config as load

    loaded = load(words(tuple(args), options))  # type: ignore[arg-type]
    return run(loaded.config, loaded.presets, loaded.overrides)
