import math

import numpy as np
import pytest

from sleeptrain.lm.lr_schedules import lr_at
from sleeptrain.lm.phases import build_plan


def test_warmup_is_linear_to_the_peak():
    lrs = [lr_at(s, 100, 1.0, warmup_steps=10) for s in range(10)]
    assert lrs == pytest.approx([(s + 1) / 10 for s in range(10)])


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_decay_ends_at_min_ratio(kind):
    assert lr_at(10, 101, 2.0, 10, kind, min_ratio=0.1) == pytest.approx(2.0)
    assert lr_at(100, 101, 2.0, 10, kind, min_ratio=0.1) == pytest.approx(0.2)
    values = [lr_at(s, 101, 2.0, 10, kind, 0.1) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_cosine_midpoint_and_constant():
    assert lr_at(50, 101, 1.0, 0, "cosine") == pytest.approx(0.5)
    assert lr_at(50, 101, 1.0, 0, "linear") == pytest.approx(0.5)
    assert {lr_at(s, 50, 3.0, 5, "constant") for s in range(5, 50)} == {3.0}


def test_schedules_are_pure_functions_of_the_step():
    assert lr_at(37, 200, 1e-3, 20) == lr_at(37, 200, 1e-3, 20)
    with pytest.raises(ValueError):
        lr_at(0, 10, 1.0, kind="nope")


@pytest.mark.parametrize("n,batch,passes", [(10, 3, 1), (64, 8, 3), (7, 10, 2), (1000, 33, 2)])
def test_each_pass_visits_every_sample_exactly_once(n, batch, passes):
    plan = build_plan(n, batch, seed=1, passes=passes)
    assert plan.total_steps == passes * math.ceil(n / batch)
    for stage in plan.stages:
        seen = np.concatenate([plan.wake_indices(stage, o) for o in range(stage.steps)])
        assert sorted(seen.tolist()) == list(range(n))


def test_passes_use_different_orders_and_seeds_matter():
    plan = build_plan(100, 10, seed=0, passes=2)
    first, second = plan.stages
    assert not np.array_equal(plan.wake_indices(first, 0), plan.wake_indices(second, 0))
    other = build_plan(100, 10, seed=1, passes=2)
    assert not np.array_equal(plan.wake_indices(first, 0), other.wake_indices(other.stages[0], 0))
    again = build_plan(100, 10, seed=0, passes=2)
    assert np.array_equal(plan.wake_indices(first, 3), again.wake_indices(again.stages[0], 3))


def test_max_steps_caps_the_plan():
    assert build_plan(100, 10, seed=0, passes=5, max_steps=7).total_steps == 7
    assert build_plan(100, 10, seed=0, passes=1, max_steps=70).total_steps == 10


def test_a_step_cap_reports_what_it_cut():
    from sleeptrain.lm.phases import build_plan, describe_truncation

    full = build_plan(1000, 10, 0, n_cycles=5, sleep=True, replay_ratio=0.2, sleep_wake_ratio=0.5)
    assert full.truncated is None
    cut = build_plan(1000, 10, 0, n_cycles=5, sleep=True, replay_ratio=0.2, sleep_wake_ratio=0.5, max_steps=100)
    t = cut.truncated
    # each cycle: 20 wake + 10 sleep steps; 100 steps = 3 whole cycles and 10 wake steps of the 4th
    assert t == {"planned_steps": 150, "steps": 100, "cycles_planned": 5, "cycles_completed": 3,
                 "wake_share": 70 / 100}
    assert "3 of 5 wake/sleep cycles complete, 70% of the planned training data" in describe_truncation(t)
