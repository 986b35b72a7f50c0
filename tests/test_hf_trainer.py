"""SleepCallback: sleep ops driven from transformers.Trainer, its LR restarts, and its state across a resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments, get_scheduler, set_seed

from sleeptrain.errors import ConfigError
from sleeptrain.integrations.hf_trainer import STATE_FILE, CycleLR, SleepCallback, sleep_steps

REPO = Path(__file__).resolve().parents[1]
LIGHT_AND_DOWNSCALE = ["schedule=homeostasis", "sleep.ops=[optimizer_reset,downscale]", "sleep.shrink=0.5"]


def tiny_model() -> LlamaForCausalLM:
    return LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=16))


def run_trainer(out: Path, overrides: list[str], max_steps: int = 12, every: int | None = 4, resume: str | None = None,
                replay: bool = False, **args) -> tuple[Trainer, SleepCallback]:
    set_seed(0)
    data = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 40, (64, 12)).tolist()]
    callback = SleepCallback(overrides, every_steps=every)
    if replay:
        data = callback.replay_stream(data, samples_per_step=4)
    settings = dict(output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=4, learning_rate=1e-2,
                    save_steps=6, logging_steps=1, use_cpu=True, report_to="none", disable_tqdm=True, seed=0)
    trainer = Trainer(model=tiny_model(), args=TrainingArguments(**{**settings, **args}), train_dataset=data,
                      callbacks=[callback])
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()
    sleep_cb = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, SleepCallback))
    return trainer, sleep_cb


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_cycle_lr_without_restarts_is_the_trainers_own_schedule():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    for kind, warmup in (("linear", 0), ("linear", 7), ("cosine", 5), ("constant_with_warmup", 4), ("constant", 0)):
        theirs = get_scheduler(kind, opt, num_warmup_steps=warmup, num_training_steps=50).lr_lambdas[0]
        ours = CycleLR(kind, [0], 50, [warmup], [], [1.0])
        assert [ours(s) for s in range(50)] == pytest.approx([theirs(s) for s in range(50)]), kind


def test_cycle_lr_restarts_each_cycle_and_scales_peaks():
    fn = CycleLR("linear", [0, 10, 20], 30, [0, 0, 0], [10, 20], [1.0, 0.5, 0.25])
    assert fn(0) == 1.0 and fn(9) == pytest.approx(0.1)
    assert fn(10) == 0.5 and fn(20) == 0.25 and fn(29) == pytest.approx(0.025)


def test_sleep_steps_layout():
    assert sleep_steps(100, 5, None, after_last=False) == [20, 40, 60, 80]
    assert sleep_steps(100, 5, None, after_last=True) == [20, 40, 60, 80, 100]
    assert sleep_steps(60, 1, 20, after_last=False) == [20, 40]
    assert sleep_steps(10, 1, None, after_last=False) == []


@pytest.mark.parametrize("words, field", [
    (["schedule=sleep"], "replay.strategy"),                  # weighted: needs per-sample losses
    (["schedule=sleep", "replay.strategy=random"], "replay.context_augment"),
    (["schedule=forgetter"], "schedule.controller"),                        # needs a val loss at every sleep
    (["schedule=homeostasis", "sleep.ops=[downscale]", "train.lr=1e-3"], "train.lr"),
    (["sleep.ops=[downscale]", "sleep.shrink=2"], "sleep.shrink"),
    (["sleep.ops=[downscale]", "sleep.importance=fisher_per_sample"], "sleep.importance"),  # needs the batch
])
def test_refused_configs_name_the_field(words, field):
    with pytest.raises(ConfigError) as err:
        SleepCallback(words)
    assert field in str(err.value) and "\n" not in str(err.value)


def test_an_op_that_uses_each_steps_batch_is_refused_by_the_hook_it_overrides():
    """No list of names: any op overriding on_step_batch is refused in one line naming the hook; one that declares
    it does not use it under these options (downscale with taylor importance) runs."""
    from sleeptrain.sleep import SleepHook, register_op, unregister_op

    @register_op("batch_peeker")
    class BatchPeeker(SleepHook):
        def on_step_batch(self, model, batch, phase):
            pass

    try:
        with pytest.raises(ConfigError) as err:
            SleepCallback(["sleep.ops=[batch_peeker]"])
        message = str(err.value)
        assert message.startswith("sleep.ops: 'batch_peeker' needs on_step_batch") and "\n" not in message
        assert "BatchPeeker overrides on_step_batch" in message
        SleepCallback(["sleep.ops=[downscale]", "sleep.importance=taylor"])
    finally:
        unregister_op("batch_peeker")


def test_sleeps_reset_adam_restart_the_lr_and_downscale(tmp_path):
    trainer, cb = run_trainer(tmp_path / "run", LIGHT_AND_DOWNSCALE)
    assert [e["step"] for e in cb.events] == [4, 8, 12]   # schedule.sleep_after_last: one after the last step
    assert all(e["optimizer_reset"]["optimizer_states_cleared"] > 0 for e in cb.events)
    assert all(e["downscale"]["weight_norm_after"] < e["downscale"]["weight_norm_before"] for e in cb.events)
    lrs = {h["step"]: h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h}
    assert lrs[5] == pytest.approx(1e-2) and lrs[4] < lrs[5] and lrs[9] == pytest.approx(1e-2)
    saved = json.loads((tmp_path / "run" / "checkpoint-12" / "trainer_state.json").read_text())
    assert saved["stateful_callbacks"]["SleepCallback"]["attributes"]["sleeps_done"] == 3
    assert (tmp_path / "run" / "checkpoint-6" / STATE_FILE).is_file()


@pytest.mark.parametrize("restore_flag", [False, True])
def test_resume_is_bit_identical_and_restores_the_callback_state(tmp_path, restore_flag):
    flags = {"restore_callback_states_from_checkpoint": restore_flag}
    run_trainer(tmp_path / "full", LIGHT_AND_DOWNSCALE, **flags)
    run_trainer(tmp_path / "part", LIGHT_AND_DOWNSCALE, max_steps=12, **flags)
    for leftover in ("checkpoint-12", "model.safetensors"):
        path = tmp_path / "part" / leftover
        subprocess.run(["rm", "-rf", str(path)], check=True)
    table_at_6 = load_file(str(tmp_path / "part" / "checkpoint-6" / STATE_FILE))
    assert any(t.abs().sum() > 0 for t in table_at_6.values())  # importance gathered over steps 5-6 is carried
    _, cb = run_trainer(tmp_path / "part", LIGHT_AND_DOWNSCALE, resume=str(tmp_path / "part" / "checkpoint-6"),
                        **flags)
    assert [e["step"] for e in cb.events] == [4, 8, 12] and cb.sleeps_done == 3
    full, part = weights(tmp_path / "full"), weights(tmp_path / "part")
    assert all(torch.equal(full[k], part[k]) for k in full)


def test_resume_without_the_tensor_file_is_one_clear_error(tmp_path):
    run_trainer(tmp_path / "run", LIGHT_AND_DOWNSCALE)
    os.remove(tmp_path / "run" / "checkpoint-6" / STATE_FILE)
    with pytest.raises(ConfigError, match=STATE_FILE):
        run_trainer(tmp_path / "run", LIGHT_AND_DOWNSCALE, resume=str(tmp_path / "run" / "checkpoint-6"))


def test_deep_reset_keeps_the_trainers_objects_and_plasticity_decay_scales_peaks(tmp_path):
    trainer, cb = run_trainer(tmp_path / "run", ["sleep.ops=[deep_reset,plasticity_decay]",
                                                 "sleep.plasticity_decay=0.5", "schedule.sleep_after_last=false"])
    assert [e["step"] for e in cb.events] == [4, 8]
    lrs = {h["step"]: h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h}
    assert lrs[1] == pytest.approx(1e-2) and lrs[5] == pytest.approx(5e-3) and lrs[9] == pytest.approx(2.5e-3)
    assert all(e["deep_reset"]["rebuilt"] == "LlamaForCausalLM" for e in cb.events)


def test_deep_reset_copies_the_rebuilt_model_into_the_trainers_model():
    from sleeptrain.integrations.hf_trainer import adopt_in_place
    from sleeptrain.sleep import SleepContext

    model, rebuilt = tiny_model(), tiny_model()
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.zeros(1, 4, dtype=torch.long)).logits.sum().backward()
    optimizer.step()
    ctx = SleepContext(model=rebuilt, optimizer=torch.optim.SGD(rebuilt.parameters(), lr=0.0), cfg=None, cycle=0)
    adopt_in_place(ctx, model, optimizer)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), rebuilt.state_dict().values()))
    assert not optimizer.state


def test_default_sleeps_follow_the_presets_phases(tmp_path):
    _, cb = run_trainer(tmp_path / "run", ["schedule=homeostasis", "sleep.ops=[downscale]"], max_steps=10, every=None)
    assert [e["step"] for e in cb.events] == [2, 4, 6, 8, 10]  # 5 cycles (n_cycles 5), a sleep after the last


@pytest.mark.slow
def test_example_script_restarts_the_lr(tmp_path):
    out = tmp_path / "out"
    subprocess.run([sys.executable, str(REPO / "examples" / "hf_trainer_sleep.py"), "--output_dir", str(out),
                    "--max_steps", "24", "--save_steps", "12", "--logging_steps", "1", "--use_cpu", "--report_to",
                    "none", "--disable_tqdm", "true", "--sleep_every", "10", "--sentences", "800"],
                   check=True, capture_output=True)
    state = json.loads((out / "checkpoint-24" / "trainer_state.json").read_text())
    lrs = [h["learning_rate"] for h in state["log_history"] if "learning_rate" in h]
    assert any(b > a for a, b in zip(lrs, lrs[1:]))  # a fresh LR cycle after a sleep
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()


REPLAY_WORDS = ["schedule=homeostasis", "sleep.ops=[optimizer_reset,replay,downscale]", "replay.strategy=random",
                "replay.context_augment=false", "schedule.sleep_wake_ratio=0.5", "sleep.shrink=0.5"]


def test_replay_plan_and_stream_are_pure_functions_of_the_seed():
    from sleeptrain.integrations.hf_replay import ReplayStream, SleepPlan
    from sleeptrain.presets import load_config

    cfg = load_config(REPLAY_WORDS[:1] + REPLAY_WORDS[2:]).config
    plan = SleepPlan(cfg, wake_steps=4, samples_per_step=3, n_samples=30)
    assert plan.windows(20) == [(4, 6), (10, 12), (16, 18)]
    stream = ReplayStream(list(range(30)), plan, seed=0)
    first = [i for i, _ in zip(stream.indices(), range(60))]
    assert first == [i for i, _ in zip(stream.indices(), range(60))]
    wake, sleep = first[:12], first[12:18]                       # 4 wake steps of 3, then 2 sleep steps of 3
    assert len(set(wake)) == 12 and set(sleep) <= set(wake)     # replay only what was seen
    assert len(set(sleep)) == plan.buffer_size(0) == 2           # ratio 0.2 of 12 seen, read in passes
    assert set(first[18:27]).isdisjoint(wake)                    # the pass over the data goes on after the sleep


def test_replay_through_the_stream_resumes_bit_identically_from_inside_a_sleep(tmp_path):
    flags = {"save_steps": 5}                                   # checkpoint-5 lies inside the first sleep (4-6)
    trainer, cb = run_trainer(tmp_path / "full", REPLAY_WORDS, replay=True, **flags)
    assert [(e["step"], e["end"]) for e in cb.events] == [(4, 6), (10, 12)]
    assert all("optimizer_reset" in e and "downscale" in e for e in cb.events)
    lrs = {h["step"]: h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h}
    assert lrs[5] == pytest.approx(1e-2) and lrs[4] < lrs[5]    # optimizer_reset before replay: restart at 4
    run_trainer(tmp_path / "part", REPLAY_WORDS, replay=True, **flags)
    for leftover in ("checkpoint-10", "model.safetensors"):
        subprocess.run(["rm", "-rf", str(tmp_path / "part" / leftover)], check=True)
    _, resumed = run_trainer(tmp_path / "part", REPLAY_WORDS, replay=True,
                             resume=str(tmp_path / "part" / "checkpoint-5"), **flags)
    assert resumed.events == cb.events
    full, part = weights(tmp_path / "full"), weights(tmp_path / "part")
    assert all(torch.equal(full[k], part[k]) for k in full)


def test_replay_without_its_stream_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="replay_stream"):
        run_trainer(tmp_path / "run", REPLAY_WORDS)
    with pytest.raises(ConfigError, match="every_steps"):
        SleepCallback(REPLAY_WORDS).replay_stream([1, 2, 3], samples_per_step=1)


def test_sleep_steps_feed_on_sleep_step(tmp_path):
    """importance_from=sleep: the downscale table grows only on replay steps."""
    run_trainer(tmp_path / "run", REPLAY_WORDS + ["sleep.importance_from=sleep"], replay=True, save_steps=5)
    in_sleep = load_file(str(tmp_path / "run" / "checkpoint-5" / STATE_FILE))    # one replay step (index 4) so far
    after_wake = load_file(str(tmp_path / "run" / "checkpoint-10" / STATE_FILE))  # wake steps 6-9 since downscale
    assert any(t.abs().sum() > 0 for t in in_sleep.values())
    assert all(t.abs().sum() == 0 for t in after_wake.values())
