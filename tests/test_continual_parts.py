"""Continual methods as composable parts: a method registered from outside (the docs' toy method) runs through
`run_method` and `sleeptrain continual`, composes with a built-in part, and is refused again once unregistered."""

from __future__ import annotations

import pytest
import torch

from sleeptrain.continual.methods import METHODS, register_method, run_method, unregister_method
from sleeptrain.continual.parts import Part
from sleeptrain.continual.rehearsal import Rehearsal
from sleeptrain.continual.runner import build_benchmark, load_continual_config
from sleeptrain.errors import ConfigError


class HalveSleep(Part):
    """The docs' toy part (docs/CONTINUAL.md): a 'sleep' that halves the output layer after every task."""

    def sleep(self, run):
        with torch.no_grad():
            run.net.weights[-1].mul_(0.5)
        return {"task": run.task.name, "halved": True}


@pytest.fixture
def halve_methods():
    register_method("halve_sleep", lambda cfg, net, seed: [HalveSleep()])
    register_method("rehearsal_halve", lambda cfg, net, seed: [Rehearsal(), HalveSleep()])
    yield
    unregister_method("halve_sleep")
    unregister_method("rehearsal_halve")


def small(method: str):
    cfg = load_continual_config(["benchmark=split_digits", f"method={method}", "sgd.epochs=1"])
    bench = build_benchmark(cfg, 1)
    return bench, cfg


def test_a_registered_method_runs_its_parts_at_the_task_boundaries(halve_methods):
    bench, mcfg = small("halve_sleep")
    result = run_method(bench, "halve_sleep", mcfg, seed=1)
    names = [t.name for t in bench.tasks]
    assert result.stages == [s for n in names for s in (f"train_{n}", f"sleep_{n}")]
    assert [info["task"] for info in result.sleep_info] == names and result.matrix.shape == (2 * len(names),
                                                                                             len(names))
    plain = run_method(bench, "sequential", mcfg, seed=1)  # the same training between the sleeps' effects:
    assert result.matrix[0].tolist() == plain.matrix[0].tolist()  # before the first sleep, identical


def test_parts_compose_rehearsal_with_a_sleep(halve_methods):
    bench, mcfg = small("rehearsal_halve")
    composed = run_method(bench, "rehearsal_halve", mcfg, seed=1)
    rehearsal = run_method(bench, "rehearsal", mcfg, seed=1)
    assert composed.matrix[0].tolist() == rehearsal.matrix[0].tolist()  # task 1: rehearsal adds nothing yet
    assert len(composed.stages) == 2 * len(rehearsal.stages)


def test_registration_makes_the_method_a_choice_and_unregistering_refuses_it(halve_methods):
    assert load_continual_config(["method=halve_sleep"]).method == "halve_sleep"
    with pytest.raises(ValueError, match="already registered"):
        register_method("src", lambda cfg, net, seed: [])
    unregister_method("halve_sleep")
    with pytest.raises(ConfigError, match="method: 'halve_sleep' is not allowed"):
        load_continual_config(["method=halve_sleep"])
    unregister_method("src")  # built-in methods stay
    assert "src" in METHODS


def test_the_patches_summary_tells_forgetting_from_a_task_not_learned():
    from sleeptrain.continual.runner import patches_summary

    by_overlap = {"9": {"after_t1": 0.5, "after_t2": 1.0, "after_sleep": 1.0},
                  "10": {"after_t1": 0.75, "after_t2": 0.65, "after_sleep": 1.0},
                  "12": {"after_t1": 0.5, "after_t2": 0.5, "after_sleep": 1.0}}
    line = patches_summary(by_overlap)[0]
    assert "below 1.00 at overlaps 10, 12" in line and "lower than after T1 at 10 (forgetting)" in line
    assert "not lower than after T1 at 12 (T2 not fully learned, nothing forgotten)" in line and "by +0.42" in line
    assert patches_summary({"9": by_overlap["9"]}) == []
