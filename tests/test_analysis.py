"""`sleeptrain continual analyse`: the SRC paper's analyses of the sleep on two-task MNIST."""

import json

import pytest
import torch

from conftest import run_cli
from test_src import fake_mnist

SMALL = ["net.hidden=[24,16]", "src.iterations=200", "src.growth=100", "train_per_task=60", "sgd.epochs=1"]


def test_analyse_writes_the_papers_analyses(tmp_path):
    data = fake_mnist(tmp_path / "mnist", n_train=400, n_test=80)
    proc = run_cli("continual", "analyse", f"data_path={data}", *SMALL, f"run.dir={tmp_path / 'a'}")
    assert proc.returncode == 0, proc.stderr
    assert "analysis of the second sleep" in proc.stdout
    result = json.loads((tmp_path / "a" / "analysis.json").read_text())
    assert set(result["accuracy"]) == {"after_task1", "after_sleep1", "after_task2", "after_sleep2"}
    for when in ("before", "after"):
        assert len(result["correlations"][when]) == 2 and len(result["correlations"][when][0]) == 4
        assert len(result["confusion"][when]) == 4 and len(result["confusion"][when][0]) == 5
    assert sum(map(sum, result["confusion"]["before"])) == 32      # the test images of digits 0-3
    changes = result["weight_changes"]
    assert [c["n"] for c in changes] == [24 * 784, 16 * 24, 10 * 16]
    assert all(c["increased"] + c["decreased"] + c["unchanged"] == c["n"] for c in changes)
    assert len(result["firing_rates"]) == 2 and "random" in result["firing_rates"][0]
    for name in ("correlations", "task_neuron_input", "firing_rates", "confusion", "weights"):
        assert (tmp_path / "a" / f"{name}.png").stat().st_size > 5000
    again = run_cli("continual", "analyse", f"data_path={data}", *SMALL, f"run.dir={tmp_path / 'a'}")
    assert again.returncode != 0 and "already holds an analysis" in again.stderr
    wrong = run_cli("continual", "analyse", "benchmark=patches")
    assert wrong.returncode != 0 and "benchmark: the analysis runs on split_mnist" in wrong.stderr


def test_task_neurons_are_the_most_active_for_their_class():
    from sleeptrain.continual.analysis import task_neurons

    # 3 neurons in one layer; counts per class 0..3
    counts = [[torch.tensor([5.0, 0.0, 1.0])], [torch.tensor([1.0, 0.0, 2.0])],
              [torch.tensor([0.0, 0.0, 0.5])], [torch.tensor([0.0, 0.0, 0.0])]]
    (groups,) = task_neurons(counts)
    assert groups == {0: [0], 1: [2], 2: [], 3: []}               # neuron 1 never spiked: nobody's


def test_correlations_by_class_pair():
    from sleeptrain.continual.analysis import correlations

    h = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 0.0, 0.0, 2.0], [0.0, 1.0, 1.0, 0.0], [0.0, 3.0, 3.0, 0.0],
                      [1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.1], [0.0, 0.0, 1.0, 1.0], [0.0, 0.1, 1.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    (c,) = correlations([h], labels)
    assert c[0][0] == pytest.approx(1.0) and c[1][1] == pytest.approx(1.0)
    assert c[0][1] == pytest.approx(-1.0) and c[1][0] == pytest.approx(-1.0)
