import numpy as np
import pytest

from sleeptrain.config import Config, SleepConfig, TrainConfig
from sleeptrain.lm.lr_schedules import lr_function
from sleeptrain.lm.phases import build_plan, fold_bounds


@pytest.mark.parametrize("n", [1, 2, 7, 10, 99, 100, 101, 1000, 1237])
@pytest.mark.parametrize("cycles", [1, 2, 3, 5, 7, 10])
def test_folds_cover_every_index_once_and_differ_by_at_most_one(n, cycles):
    if cycles > n:
        with pytest.raises(ValueError):
            build_plan(n, 4, seed=0, n_cycles=cycles)
        return
    bounds = fold_bounds(n, cycles)
    sizes = np.diff(bounds)
    assert bounds[0] == 0 and bounds[-1] == n and sizes.max() - sizes.min() <= 1 and sizes.min() >= 1
    plan = build_plan(n, 4, seed=3, passes=2, n_cycles=cycles, sleep=True, replay_ratio=0.5)
    for p in range(2):
        wakes = [s for s in plan.stages if s.phase == "wake" and s.pass_index == p]
        seen = np.concatenate([plan.fold_indices(s) for s in wakes])
        assert sorted(seen.tolist()) == list(range(n))


@pytest.mark.parametrize("batch", [1, 3, 8, 64])
def test_the_wake_phase_yields_each_fold_sample_exactly_once(batch):
    plan = build_plan(103, batch, seed=1, n_cycles=4, sleep=True, replay_ratio=0.2, sleep_wake_ratio=0.5)
    for stage in (s for s in plan.stages if s.phase == "wake"):
        streamed = np.concatenate([plan.wake_indices(stage, o) for o in range(stage.steps)])
        assert len(streamed) == len(set(streamed.tolist()))
        assert sorted(streamed.tolist()) == sorted(plan.fold_indices(stage).tolist())


def test_stages_alternate_and_lookup_is_a_pure_function_of_the_step():
    plan = build_plan(100, 10, seed=0, n_cycles=5, sleep=True, replay_ratio=0.3, sleep_wake_ratio=0.5)
    assert [s.phase for s in plan.stages] == ["wake", "sleep"] * 5
    assert [s.steps for s in plan.stages] == [2, 1] * 5
    step = 0
    for i, stage in enumerate(plan.stages):
        assert stage.start == step
        for o in range(stage.steps):
            pos = plan.lookup(step)
            assert (pos.stage, pos.index, pos.offset) == (stage, i, o)
            step += 1
    assert step == plan.total_steps
    with pytest.raises(IndexError):
        plan.lookup(plan.total_steps)


def test_buffer_grows_with_the_candidates_and_repeats_bound_sleep_length():
    plan = build_plan(100, 10, seed=0, n_cycles=4, sleep=True, replay_ratio=0.2, replay_repeats=2)
    sleeps = [s for s in plan.stages if s.phase == "sleep"]
    assert [s.candidates for s in sleeps] == [25, 50, 75, 100]
    assert [s.buffer_size for s in sleeps] == [5, 10, 15, 20]
    assert [s.steps for s in sleeps] == [1, 2, 3, 4]  # ceil(2 * buffer / 10)


def test_baselines_are_plans_without_sleep():
    plan = build_plan(50, 8, seed=0, passes=3)
    assert [s.phase for s in plan.stages] == ["wake"] * 3 and plan.total_steps == 3 * 7
    assert not np.array_equal(plan.fold_indices(plan.stages[0]), plan.fold_indices(plan.stages[1]))


def test_sleep_without_replay_is_a_zero_step_boundary_and_last_sleep_optional():
    plan = build_plan(40, 8, seed=0, n_cycles=2, sleep=True, replay_ratio=0.0, sleep_after_last=False)
    assert [(s.phase, s.steps) for s in plan.stages] == [("wake", 3), ("sleep", 0), ("wake", 3)]
    assert plan.lookup(3).stage.phase == "wake" and plan.lookup(3).stage.cycle == 1


def test_max_steps_truncates_the_plan():
    plan = build_plan(100, 10, seed=0, n_cycles=2, sleep=True, replay_ratio=0.5, sleep_wake_ratio=1.0,
                      max_steps=7)
    assert plan.total_steps == 7
    assert [(s.phase, s.steps) for s in plan.stages] == [("wake", 5), ("sleep", 2)]


def test_lr_restarts_at_optimizer_resets_and_plasticity_decays_peaks():
    plan = build_plan(100, 10, seed=0, n_cycles=2, sleep=True, replay_ratio=0.0)  # 10 wake steps, 2 cycles
    tc = TrainConfig(lr=1.0, lr_schedule="linear", warmup_steps=0, min_lr_ratio=0.0)
    lr = lr_function(plan, Config(train=tc, sleep=SleepConfig(ops=["optimizer_reset", "plasticity_decay"],
                                                             plasticity_decay=0.5)))
    values = [lr(s) for s in range(plan.total_steps)]
    assert values[0] == pytest.approx(1.0) and values[4] == pytest.approx(0.0)
    assert values[5] == pytest.approx(0.5) and values[9] == pytest.approx(0.0)
    plain = lr_function(plan, Config(train=tc, sleep=SleepConfig(ops=[])))
    assert [plain(s) for s in range(10)] == pytest.approx([1 - s / 9 for s in range(10)])
