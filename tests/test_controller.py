"""FORGETTER's controller on scripted validation losses: every branch of the authors' rules."""

from __future__ import annotations

import pytest
import torch

from sleeptrain.config import Config, ScheduleConfig, SleepConfig
from sleeptrain.sleep.controller import Controller, decide
from sleeptrain.sleep.hooks import SleepContext


class Script:
    """A model whose weight records which boundary it is at, and a scripted validation loss per boundary."""

    def __init__(self, losses, criteria=0.0, baseline="previous"):
        self.cfg = Config(schedule=ScheduleConfig(controller=True, criteria=criteria, controller_baseline=baseline),
                          sleep=SleepConfig(ops=["optimizer_reset"]))
        self.model = torch.nn.Linear(1, 1, bias=False)
        self.losses, self.records, self.controller = list(losses), [], Controller(self.cfg, self.model)
        self.boundary = 0

    def train_epoch(self):
        """'Training' marks the weights with the boundary number they reach."""
        self.boundary += 1
        with torch.no_grad():
            self.model.weight.fill_(float(self.boundary))

    def sleep(self, controller=None) -> SleepContext:
        self.train_epoch()
        ctx = SleepContext(self.model, None, self.cfg, cycle=self.boundary - 1, step=self.boundary,
                           evaluate=lambda: self.losses[self.boundary - 1], log=self.records.append,
                           ops=["optimizer_reset"])
        (controller or self.controller).on_sleep_start(ctx)
        return ctx

    @property
    def weight(self) -> float:
        return float(self.model.weight.detach())


def test_light_sleeps_while_the_loss_improves():
    s = Script([5.0, 4.0, 3.0])
    for _ in range(3):
        ctx = s.sleep()
        assert ctx.ops == ["optimizer_reset"] and not ctx.stop
    assert [r["decision"] for r in s.records] == ["light"] * 3 and s.controller.mode == "light"
    assert [r["compared_with"] for r in s.records] == [None, 5.0, 4.0]


def test_a_rise_switches_to_deep_sleep_and_rolls_back_to_the_previous_epoch():
    s = Script([5.0, 4.0, 4.5])
    s.sleep(), s.sleep()
    ctx = s.sleep()
    assert ctx.ops == ["deep_reset"] and not ctx.stop
    assert s.weight == 2.0  # the weights of the epoch before
    assert s.records[-1]["decision"] == "deep" and s.records[-1]["rolled_back_to"] == "previous"
    assert s.records[-1]["val_loss"] == 4.5 and s.records[-1]["compared_with"] == 4.0


def test_equal_loss_is_no_improvement():
    s = Script([5.0, 5.0])
    s.sleep()
    ctx = s.sleep()
    assert ctx.ops == ["deep_reset"] and s.weight == 1.0  # loss >= previous: switch and roll back


def test_an_improvement_below_criteria_switches_without_rolling_back():
    s = Script([5.0, 4.8], criteria=0.5)
    s.sleep()
    ctx = s.sleep()
    assert ctx.ops == ["deep_reset"] and s.weight == 2.0
    assert s.records[-1]["decision"] == "deep" and s.records[-1]["rolled_back_to"] is None


def test_deep_sleeps_continue_while_improving_and_stop_restores_the_best():
    s = Script([5.0, 4.0, 4.5, 4.2, 4.1, 4.3])
    for _ in range(5):
        assert not s.sleep().stop
    assert [r["decision"] for r in s.records] == ["light", "light", "deep", "deep", "deep"]
    ctx = s.sleep()
    assert ctx.stop and s.records[-1]["decision"] == "stop"
    assert s.weight == 2.0 and s.records[-1]["rolled_back_to"] == "best"  # epoch 2 had the best loss (4.0)


def test_after_a_roll_back_the_previous_loss_is_the_rejected_one_as_in_the_authors_code():
    # epoch 4 (4.4) is worse than the best (4.0) but better than the rejected epoch 3 (4.5): the code goes on
    s = Script([5.0, 4.0, 4.5, 4.4])
    for _ in range(4):
        ctx = s.sleep()
    assert not ctx.stop and s.records[-1]["compared_with"] == 4.5
    best = Script([5.0, 4.0, 4.5, 4.4], baseline="best")  # the named alternative compares with the best
    for _ in range(4):
        ctx = best.sleep()
    assert ctx.stop and best.records[-1]["compared_with"] == 4.0


def test_the_run_end_keeps_the_best_weights():
    s = Script([5.0, 4.0, 3.9, 4.6])
    s.sleep(), s.sleep(), s.sleep()
    s.train_epoch()
    ctx = SleepContext(s.model, None, s.cfg, cycle=3, step=4, evaluate=lambda: 4.6, log=s.records.append)
    s.controller.on_run_end(ctx)
    assert s.weight == 3.0 and s.records[-1]["decision"] == "final_rollback"


@pytest.mark.parametrize("cut", [1, 2, 3, 4])
def test_state_round_trip_gives_the_same_decisions(cut):
    losses = [5.0, 4.0, 4.5, 4.2, 4.3]
    whole = Script(losses)
    for _ in losses:
        whole.sleep()
    part = Script(losses)
    for _ in range(cut):
        part.sleep()
    values, tensors = part.controller.state_dict()
    fresh = Controller(part.cfg, part.model)
    fresh.load_state_dict(values, tensors)
    for _ in range(len(losses) - cut):
        part.sleep(fresh)
    assert [r["decision"] for r in part.records] == [r["decision"] for r in whole.records]
    assert part.weight == whole.weight


@pytest.mark.parametrize("mode, loss, decision, roll_back", [
    ("light", 3.0, "light", False), ("light", 4.0, "deep", True), ("light", 4.2, "deep", True),
    ("deep", 3.9, "deep", False), ("deep", 4.0, "stop", True),
])
def test_decide_table(mode, loss, decision, roll_back):
    assert decide(mode, loss, previous=4.0, best=3.5, criteria=0.0) == (decision, roll_back)
