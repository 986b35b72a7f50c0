"""iCaRL's exemplar memory (herding, nearest mean of exemplars) and the icarl / icarl_src methods."""

import json

import numpy as np
import pytest
import torch

from sleeptrain.continual.icarl import ExemplarMemory, herding_selection, nme_predict, random_selection
from sleeptrain.continual.mlp import BiaslessMLP
from sleeptrain.continual.runner import load_continual_config, run_continual
from sleeptrain.errors import ConfigError


def test_herding_picks_the_exemplars_closest_to_the_class_mean():
    feats = torch.tensor([[0.0, 0.0], [10.0, 0.0], [-10.0, 0.0], [1.0, 1.0], [4.0, 0.0], [-4.0, 0.0]])
    # class mean (1/6, 1/6): the image nearest to it is row 0 (distance 0.24) — picked first
    chosen = herding_selection(feats, 3)
    assert chosen[0] == 0
    # then the pick that keeps the running mean closest: (0 + (1,1)) / 2 = (0.5, 0.5) beats (+-2, 0) or (+-5, 0)
    assert chosen[1] == 3
    # third: (1 + x) / 3 closest to (1/6, 1/6): x = (-0.5, -0.5) ideal; (-4, 0) gives (-1, 1/3), (4, 0) (5/3, 1/3)
    assert chosen[2] == 5
    assert len(set(herding_selection(feats, 6))) == 6          # never the same image twice
    assert herding_selection(feats, 10) == herding_selection(feats, 6)  # at most the class's images


def test_herding_mean_converges_faster_than_random():
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(500, 8, generator=gen) * torch.linspace(0.5, 3, 8)
    mu = feats.mean(0)
    herd = float((feats[herding_selection(feats, 10)].mean(0) - mu).norm())
    rng = np.random.default_rng(0)
    rand = np.mean([float((feats[random_selection(500, 10, rng)].mean(0) - mu).norm()) for _ in range(20)])
    assert herd < 0.25 * rand


def test_nearest_mean_of_exemplars_on_a_toy_set():
    means = torch.tensor([[0.0, 0.0], [5.0, 5.0], [0.0, 5.0]])
    x = torch.tensor([[0.4, -0.3], [4.0, 4.5], [0.2, 4.1], [2.6, 2.6]])
    assert nme_predict(x, means, [3, 7, 9]).tolist() == [3, 7, 9, 7]


def test_memory_splits_its_capacity_over_the_classes_seen_and_keeps_the_best_prefix():
    net = BiaslessMLP([4, 6, 4], "softmax_ce", dropout=0.0, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(80, 4, generator=gen)
    y = torch.arange(80) % 4
    memory = ExemplarMemory(capacity=12, selection="herding", seed=0)
    memory.add_classes(net, x, y, [0, 1])
    assert {c: len(s) for c, s in memory.sets.items()} == {0: 6, 1: 6}
    first = memory.sets[0].clone()
    memory.add_classes(net, x, y, [2, 3])
    assert {c: len(s) for c, s in memory.sets.items()} == {0: 3, 1: 3, 2: 3, 3: 3} and len(memory) == 12
    torch.testing.assert_close(memory.sets[0], first[:3])       # reduce_example_set: the first m
    ex_x, ex_y = memory.training_set(net, 4, distillation=False)
    assert ex_y.shape == (12, 4) and ex_y.sum(1).eq(1).all()
    _, soft = memory.training_set(net, 4, distillation=True)
    torch.testing.assert_close(soft.sum(1), torch.ones(12))     # softmax outputs as targets
    assert 0.0 <= memory.nme_accuracy(net, x, y) <= 1.0
    assert ExemplarMemory(capacity=200).per_class(6) == 33 and ExemplarMemory(capacity=5).per_class(2) == 3


def test_icarl_config_layers_the_authors_script_and_checks_its_fields(tmp_path):
    mnist = ["benchmark=split_mnist", f"data_path={tmp_path}"]
    cfg = load_continual_config([*mnist, "method=icarl_src", "memory=200"])
    assert cfg.net.output == "softmax_ce" and cfg.sgd.epochs == 10 and cfg.src.max_rate == pytest.approx(114.36572)
    assert load_continual_config([*mnist, "method=icarl_src", "memory=2000"]).src.max_rate == pytest.approx(27.39365)
    assert load_continual_config([*mnist, "method=icarl", "sgd.epochs=3"]).sgd.epochs == 3   # overrides still win
    assert load_continual_config([*mnist, "method=src"]).net.output == "relu_mse"           # only for icarl
    with pytest.raises(ConfigError, match="memory: must be a positive integer"):
        load_continual_config([*mnist, "method=icarl", "memory=lots"])
    with pytest.raises(ConfigError, match="memory"):
        load_continual_config(["benchmark=split_digits", "method=icarl", "memory=0"])
    with pytest.raises(ConfigError, match="exemplar_selection"):
        load_continual_config(["benchmark=split_digits", "method=icarl", "exemplar_selection=best"])
    with pytest.raises(ConfigError, match="needs a class-incremental split benchmark"):
        load_continual_config(["benchmark=patches", "method=icarl"])


@pytest.mark.parametrize("method", ["icarl", "icarl_src"])
def test_icarl_runs_end_to_end_with_both_accuracies(tmp_path, method):
    cfg = load_continual_config(["benchmark=split_digits", f"method={method}", "memory=40", "net.hidden=[32,32]",
                                 "sgd.epochs=1", "src.iterations=200", "src.growth=50", "src.streams=8", "seeds=1",
                                 f"run.dir={tmp_path / method}"])
    results, run_dir = run_continual(cfg)
    saved = json.loads((run_dir / "results.json").read_text())
    seed = saved["per_seed"][0]
    assert len(seed["nme_matrix"]) == len(saved["stages"]) == (10 if method == "icarl_src" else 5)
    assert 0.0 <= saved["nme_average_accuracy"]["mean"] <= 1.0 and "nme_note" in saved
    assert saved["config"]["memory"] == 40


def test_pairs_task_orders_permute_whole_pairs():
    from sleeptrain.continual.runner import class_order

    assert class_order(0, "pairs") == list(range(10))
    orders = [class_order(seed, "pairs") for seed in range(1, 5)]
    for order in orders:
        assert sorted(order) == list(range(10))
        assert all(order[i] % 2 == 0 and order[i + 1] == order[i] + 1 for i in range(0, 10, 2))
    assert len({tuple(o) for o in orders}) > 1
    assert class_order(3, "pairs", 5)[-1] in range(5) and sorted(class_order(3, "pairs", 5)) == list(range(5))


def test_table2_tool_writes_the_table_and_the_savings_curve(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from test_src import fake_mnist

    repo = Path(__file__).resolve().parents[1]
    data = fake_mnist(tmp_path / "mnist", n_train=400, n_test=100)
    small = ["net.hidden=[16,16]", "src.iterations=60", "src.growth=20", "src.streams=4", "train_per_task=40",
             f"data_path={data}"]
    proc = subprocess.run([sys.executable, str(repo / "tools" / "src_icarl.py"), "--out", str(tmp_path / "runs"),
                           "--results", str(tmp_path / "res"), "--memories", "10", "--table-epochs", "1",
                           "--seeds", "2", "--curve-memory", "10", "--curve-epochs", "1", *small],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "res" / "split_mnist-icarl.json").read_text())
    assert set(summary["table"]) == {"10"} and set(summary["curve"]) == {"1"}  # the curve reuses the table runs
    row = summary["table"]["10"]
    assert row["src_minus_icarl"]["n"] == 2 and row["src_minus_icarl_nme"]["n"] == 2   # paired on NME, net beside
    assert row["icarl"]["seeds"] == [0, 1] and len(row["icarl_src"]["nme_per_seed"]) == 2
    assert row["icarl"]["nme_average_accuracy"]["mean"] == pytest.approx(sum(row["icarl"]["nme_per_seed"]) / 2)
    assert "p_holm" in row["src_minus_icarl_nme"] or row["src_minus_icarl_nme"].get("p_value") is None
    assert (tmp_path / "res" / "split_mnist-icarl-savings.png").stat().st_size > 1000
    md = (tmp_path / "res" / "split_mnist-icarl.md").read_text()
    assert "| 10 |" in md and "- K = 10: seed 0: " in md
    savings = md[md.index("Training savings"):]
    assert "| NME iCaRL |" in savings and savings.count("\n| 1 |") == 1   # NME first in the curve too, net beside
    # every run recorded as it finished: a fresh clone (no run folders) takes them from the records, trains nothing
    records = sorted(p.name for p in (tmp_path / "res" / "split_mnist-icarl-runs").iterdir())
    assert records == ["split_mnist-icarl-k10-e1-icarl.json", "split_mnist-icarl-k10-e1-icarl_src.json"]
    again = subprocess.run([sys.executable, str(repo / "tools" / "src_icarl.py"), "--out", str(tmp_path / "runs2"),
                            "--results", str(tmp_path / "res"), "--memories", "10", "--table-epochs", "1",
                            "--seeds", "2", "--curve-memory", "10", "--curve-epochs", "1", *small],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.count("kept from") == 4, again.stderr[-2000:]  # table + curve
    assert not (tmp_path / "runs2").exists() or not any((tmp_path / "runs2").iterdir())
    assert json.loads((tmp_path / "res" / "split_mnist-icarl.json").read_text())["table"] == summary["table"]
