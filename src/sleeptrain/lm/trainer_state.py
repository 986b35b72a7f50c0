"""What a checkpoint holds of a training loop, beside the model and the optimizer: counters, the cursor, RNG
states, the masked-LM batcher's generator, and every sleep mechanism's state (`SleepCycle.state_dict`).

`save` and `load` are the loop's checkpoint codec: they read and restore the loop's own fields, nothing else;
`checkpoint` and `restore` are what the loop calls (the collective steps around them, the newest good checkpoint).
"""

from __future__ import annotations

from pathlib import Path

from sleeptrain.errors import ConfigError
from sleeptrain.lm.guards import TrainingDiverged, all_finite, diverged_message
from sleeptrain.lm.checkpoint import capture_rng_states, load_weights_into, restore_rng_states
from sleeptrain.lm.checkpoint import load_checkpoint as read_checkpoint
from sleeptrain.lm.checkpoint import save_checkpoint as write_checkpoint
from sleeptrain.lm.metrics_log import code_version
from sleeptrain.presets import config_to_yaml


def checkpoint(loop, cursor: tuple[int, int, bool]) -> None:
    """Everything needed to continue exactly from `cursor` = (stage index, steps done in it, sleep started).
    Collective (every process syncs replay scores and checks for NaN); process 0 writes. Only finite weights after
    finite losses are written, so the newest checkpoint stays a good one."""
    loop.sleep_cycle.replay.sync()
    if not all_finite((loop.interval.loss, *loop.acc.unwrap_model(loop.model).parameters()), loop.reduce):
        raise TrainingDiverged(diverged_message(float("nan"), loop.step, loop.last_checkpoint))
    if loop.acc.is_main_process:
        loop.last_checkpoint = save(loop, cursor)
        loop.metrics.write({"event": "checkpoint", "step": loop.step, "path": str(loop.last_checkpoint)})
    if loop.world > 1:
        loop.acc.wait_for_everyone()


def restore(loop, path: Path) -> dict:
    """Restore everything `checkpoint` wrote; the loop's next `run()` continues at the saved cursor."""
    state = load(loop, path)
    loop.last_checkpoint = Path(path)
    loop.bar.update(loop.step)
    return state


def save(loop, cursor: tuple[int, int, bool]) -> Path:
    """Write checkpoint `loop.step` (cursor = stage index, steps done in it, sleep started); returns its folder."""
    sleep_values, sleep_tensors = loop.sleep_cycle.state_dict(sleeping=cursor[2])
    tensors = {"sleep": sleep_tensors, "rng": capture_rng_states()}
    if loop.masked:
        tensors["batcher_rng"] = loop.batcher.generator.get_state()
    state = {"tokens": loop.tokens, "cursor": list(cursor), "n_samples": len(loop.train_samples),
             "total_steps": loop.plan.total_steps, "first_val": loop.evaluator.first_val,
             "last_val": loop.evaluator.last_val, "sleep": sleep_values, "metrics_bytes": loop.metrics.tell(),
             "seed": loop.cfg.seed, "processes": loop.world, "code_version": code_version(),
             "precision": loop.precision, "attention": loop.attention, "compiled": loop.compiled,
             "words": loop.words.words,
             "seconds": loop.elapsed() if loop.seconds_before is not None else None}
    return write_checkpoint(loop.run_dir, loop.step, loop.acc.unwrap_model(loop.model), loop.optimizer,
                            loop.tokenizer, config_to_yaml(loop.cfg), state, tensors, loop.cfg.checkpoint.keep)


def load(loop, path: Path) -> dict:
    """Restore what `save` wrote into `loop`; returns the saved counters."""
    weights, optimizer_state, tensors, state = read_checkpoint(path)
    if state["n_samples"] != len(loop.train_samples) or state["total_steps"] != loop.plan.total_steps:
        raise ConfigError(f"resume: the data no longer matches the run ({state['n_samples']} samples / "
                          f"{state['total_steps']} steps then, {len(loop.train_samples)} / "
                          f"{loop.plan.total_steps} now): the corpus, tokenizer, batch size, sequence length or "
                          f"schedule differs from the checkpoint's; resume with them as they were, or start a new run")
    if "sleep" not in state:
        raise ConfigError(f"resume: {path} was written by an earlier sleeptrain (code {state.get('code_version')}) "
                          "whose checkpoints keep sleep state in another layout; resume it with that version")
    load_weights_into(loop.acc.unwrap_model(loop.model), weights)
    loop.optimizer.load_state_dict(optimizer_state)
    loop.sleep_cycle.load_state_dict(state["sleep"], tensors["sleep"], loop.acc.unwrap_model(loop.model))
    if loop.masked:
        loop.batcher.generator.set_state(tensors["batcher_rng"])
    restore_rng_states(tensors["rng"])
    loop.step, loop.tokens = state["step"], state["tokens"]
    loop.words.words = state.get("words", 0)
    loop.seconds_before = state.get("seconds")  # None: unknown (absent in checkpoints before 2026-11-29)
    loop.evaluator.first_val, loop.evaluator.last_val = state["first_val"], state["last_val"]
    stage_index, offset, started = state["cursor"]
    loop.resume_cursor = (stage_index, offset, bool(started))
    return state
