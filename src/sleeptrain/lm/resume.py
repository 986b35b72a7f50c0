"""`sleeptrain train resume=RUN_DIR [resume.allow_changes=[keys]] [key=value ...]`: continue a run exactly.

The run continues from its newest complete checkpoint under the config that checkpoint was trained with. A
`key=value` given now that changes that config is refused, listing every differing key, unless the key (or a
section above it, e.g. `run`) is in `resume.allow_changes` — meant for harmless keys such as logging or progress.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from sleeptrain.lm.checkpoint import latest_checkpoint
from sleeptrain.config import Config
from sleeptrain.errors import ConfigError
from sleeptrain.presets import GROUPS, load_yaml, merge_config, apply_overrides, flat_config, to_config


@dataclass
class ResumePlan:
    config: Config
    checkpoint: Path
    run_dir: Path
    overrides: list[str]
    changed: list[str]


HARMLESS = ("run.", "eval.", "checkpoint.", "resume.", "train.log_every", "train.trackers", "data.cache_dir",
            "train.on_nan")  # not train.eval_*: FORGETTER's controller acts on the validation losses


def is_harmless(key: str) -> bool:
    """Keys a resume may change (with resume.allow_changes) without changing what is trained: logging, evaluation,
    checkpointing, paths."""
    return key.startswith(HARMLESS) or key in {h.rstrip(".") for h in HARMLESS}


class RunFinished(ConfigError):
    """`resume=RUN_DIR` of a run that has finished: nothing to do. The CLI prints it and exits 0 (a script that
    resumes until done stops there); from Python it is raised, as there is no new result to return."""


def wants_resume(args: list[str]) -> bool:
    return any(a.split("=", 1)[0] in ("resume", "resume.dir") for a in args)


def parse_allowed(value: str) -> list[str]:
    try:
        parsed = OmegaConf.from_dotlist([f"x={value}"]).x
    except Exception:
        raise ConfigError(f"resume.allow_changes: cannot parse {value!r}; write a list like [run.progress]") from None
    items = list(parsed) if OmegaConf.is_list(parsed) else [parsed]
    return [str(i) for i in items]


def plan_resume(args: list[str]) -> ResumePlan:
    run_dir, allowed, overrides = None, [], []
    for arg in args:
        key, _, value = arg.partition("=")
        if key in ("resume", "resume.dir"):
            run_dir = Path(value).expanduser()
        elif key == "resume.allow_changes":
            allowed = parse_allowed(value)
        elif key in GROUPS:
            raise ConfigError(f"{key}: presets cannot be chosen when resuming (the run keeps its config); "
                              "change single keys with key=value and resume.allow_changes")
        elif key.startswith("resume."):
            raise ConfigError(f"{key}: unknown key; resume takes resume=RUN_DIR and resume.allow_changes=[...]")
        else:
            overrides.append(arg)
    if run_dir is None or not str(run_dir):
        raise ConfigError("resume: give the run folder, resume=RUN_DIR")
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"resume: {str(run_dir)!r} is not a sleeptrain run folder (no config.yaml)")
    summary = run_dir / "summary.json"
    if summary.is_file():
        done = json.loads(summary.read_text())
        raise RunFinished(f"resume: {str(run_dir)!r} already finished ({done.get('steps')} of "
                          f"{done.get('planned_steps')} steps; final model in {done.get('final_dir')}); "
                          "nothing to resume")
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise ConfigError(f"resume: {str(run_dir)!r} has no complete checkpoint yet (checkpoint.every / "
                          f"checkpoint.phase_boundaries), so nothing can continue; discard it (rm -r {run_dir}) and "
                          f"start the run again, or start it in another run.dir")
    saved = load_yaml(checkpoint / "config.yaml", f"resume: {checkpoint}")
    base = merge_config(OmegaConf.structured(Config), saved, f"resume: {checkpoint}/config.yaml")
    new = apply_overrides(base.copy(), overrides, Config)
    before, after = flat_config(to_config(base)), flat_config(to_config(new))
    changed = sorted(k for k in after if before.get(k) != after[k])
    refused = [k for k in changed if not any(k == a or k.startswith(a + ".") for a in allowed)]
    if refused:
        listing = ", ".join(f"{k} ({before.get(k)!r} -> {after[k]!r})" for k in refused)
        harmless = [k for k in refused if is_harmless(k)]
        if len(harmless) == len(refused):
            advice = f"allow them with resume.allow_changes=[{','.join(harmless)}]"
        else:
            fixed = [k for k in refused if not is_harmless(k)]
            advice = (f"{', '.join(fixed)} shape{'s' if len(fixed) == 1 else ''} the data, model or schedule the "
                      f"checkpoint was trained with and cannot change in a resume: drop "
                      f"{'it' if len(fixed) == 1 else 'them'}, or start a new run with the new values")
        raise ConfigError(f"resume: the config differs from the checkpoint's in {listing}; {advice}")
    config = to_config(new)
    config.run.dir = str(run_dir.resolve())
    return ResumePlan(config, checkpoint, run_dir.resolve(), overrides, changed)
