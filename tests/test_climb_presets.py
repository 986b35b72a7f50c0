"""The `climb_*` schedule presets carry the values of the upstream CLIMB-Sleep configuration files (issue 19).

Upstream: github.com/Peter-Shamoun/CLIMB-Sleep, `conf/sleep_mechanism/<file>` at the commits named below. Each row
maps an upstream key to ours (docs/SCHEDULES.md): n_phases -> schedule.n_cycles; replay_decay_rate r -> our
per-cycle factor replay.decay_rate = 1 - r (upstream multiplies a candidate's decay factor by 1 - r each cycle);
contextualize_sleep -> replay.context_augment; plasticity_decay fisher_protected_shrink -> the `downscale` op with
importance=fisher_per_sample, shrink_factor -> sleep.shrink, protect_top_fraction -> sleep.protect_fraction, threshold_scope
per_tensor -> sleep.scope=tensor; max_seq_length -> data.seq_len (the babylm data preset); the Fisher of
src/trainer.py (per_sample_grads every wake step, squares summed) -> sleep.importance=fisher_per_sample.
"""

import pytest

from sleeptrain.presets import load_config

# preset -> (upstream file @ commit, {our key: upstream value mapped})
UPSTREAM = {
    "climb_sleep": ("conf/sleep_mechanism/default.yaml @ 21d3f9c + plasticity_decay/default.yaml @ 0593640", {
        "schedule.n_cycles": 50, "schedule.sleep_wake_ratio": 1.0, "replay.ratio": 0.3,
        "replay.strategy": "weighted", "replay.decay_rate": 1 - 0.3, "replay.context_augment": True,
        "data.seq_len": 128, "sleep.shrink": 0.95, "sleep.protect_fraction": 0.2, "sleep.importance": "fisher_per_sample"}),
    "climb_sleep_strict": ("conf/sleep_mechanism/strict_replay.yaml @ c51bea2", {
        "schedule.n_cycles": 50, "replay.ratio": 0.3, "replay.strategy": "strict", "replay.context_augment": True,
        "data.seq_len": 128}),
    "climb_sleep_random": ("conf/sleep_mechanism/random_replay.yaml @ 68897f3", {
        "schedule.n_cycles": 50, "replay.ratio": 0.3, "replay.strategy": "random", "replay.context_augment": True,
        "data.seq_len": 128}),
    "climb_sleep_sh_fisher": ("conf/sleep_mechanism/sh_fisher.yaml @ 4442ded", {
        "schedule.n_cycles": 50, "schedule.sleep_wake_ratio": 9.0, "replay.ratio": 0.1, "replay.strategy": "strict",
        "replay.decay_rate": 1 - 0.05334773969181028, "replay.context_augment": True, "data.seq_len": 128,
        "sleep.shrink": 0.95, "sleep.protect_fraction": 0.20, "sleep.importance": "fisher_per_sample", "sleep.scope": "tensor"}),
    "climb_baseline_like": ("conf/sleep_mechanism/baseline-like.yaml @ 394adfd", {
        "schedule.n_cycles": 1, "schedule.sleep_wake_ratio": 5.0, "replay.ratio": 1.0, "replay.strategy": "weighted",
        "replay.context_augment": False, "data.seq_len": 128}),
}
# upstream's plasticity decay (fisher_protected_shrink) runs in every preset whose file enables it
SHRINKS = {"climb_sleep", "climb_sleep_strict", "climb_sleep_random", "climb_sleep_sh_fisher"}


def _get(cfg, dotted: str):
    section, key = dotted.split(".")
    return getattr(getattr(cfg, section), key)


@pytest.mark.parametrize("preset", sorted(UPSTREAM))
def test_climb_preset_matches_its_upstream_file(preset, tmp_path):
    source, values = UPSTREAM[preset]
    cfg = load_config(["data=babylm", f"data.path={tmp_path}", f"schedule={preset}"]).config
    for key, expected in values.items():
        got = _get(cfg, key)
        if isinstance(expected, float):
            assert got == pytest.approx(expected, abs=1e-7), f"{preset}: {key} = {got}, upstream {source}: {expected}"
        else:
            assert got == expected, f"{preset}: {key} = {got!r}, upstream {source}: {expected!r}"
    assert ("downscale" in cfg.sleep.ops) == (preset in SHRINKS), f"{preset}: plasticity decay vs {source}"
    assert "replay" in cfg.sleep.ops
