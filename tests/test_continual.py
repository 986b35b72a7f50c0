import json
import re

import numpy as np
import pytest

from conftest import run_cli
from sleeptrain.continual.metrics import average_accuracy, backward_transfer, forgetting
from sleeptrain.continual.runner import load_continual_config, run_continual
from sleeptrain.errors import ConfigError

FAST_DIGITS = ["benchmark=split_digits", "net.hidden=[32,32]", "sgd.epochs=1", "src.iterations=300",
               "src.growth=100", "src.streams=16", "run.plot=true"]


def test_metrics_by_hand():
    # stages: train_t1, sleep_t1, train_t2, sleep_t2 ; tasks t1, t2
    R = np.array([[0.9, 0.0], [0.95, 0.1], [0.3, 0.99], [0.6, 0.9]])
    learned = [0, 2]
    assert average_accuracy(R) == pytest.approx(0.75)
    assert forgetting(R, learned) == pytest.approx(0.95 - 0.6)   # best before the end minus final
    assert backward_transfer(R, learned) == pytest.approx(0.6 - 0.9)


@pytest.mark.parametrize("method", ["sequential", "joint", "src", "rehearsal", "rehearsal_src", "ewc"])
def test_split_digits_methods_write_results(tmp_path, method):
    cfg = load_continual_config([*FAST_DIGITS, f"method={method}", "seeds=2", f"run.dir={tmp_path / method}"])
    results, run_dir = run_continual(cfg)
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["method"] == method and saved["seeds"] == [0, 1]
    stages = saved["stages"]
    if method == "joint":
        assert stages == ["train_joint"]
    elif "src" in method:
        assert stages[:2] == ["train_t1", "sleep_t1"] and len(stages) == 10
    else:
        assert stages == [f"train_t{i}" for i in range(1, 6)]
    matrix = np.array(saved["accuracy_matrix"]["mean"])
    assert matrix.shape == (len(stages), 5) and ((0 <= matrix) & (matrix <= 1)).all()
    for key in ("average_accuracy", "forgetting", "bwt"):
        assert set(saved[key]) == {"mean", "sd", "n"} and saved[key]["n"] == 2
    assert saved["per_seed"][0]["task_classes"] != saved["per_seed"][1]["task_classes"]  # another task order
    assert (run_dir / "accuracy_matrix.png").exists()


def test_sequential_forgets_and_joint_does_not(tmp_path):
    seq, _ = run_continual(load_continual_config([*FAST_DIGITS, "method=sequential", "sgd.epochs=3",
                                                  f"run.dir={tmp_path / 's'}"]))
    joint, _ = run_continual(load_continual_config([*FAST_DIGITS, "method=joint", "sgd.epochs=10",
                                                    f"run.dir={tmp_path / 'j'}"]))
    assert seq["average_accuracy"]["mean"] < 0.45          # class-incremental: mostly the last task survives
    assert joint["average_accuracy"]["mean"] > 0.8
    assert seq["forgetting"]["mean"] > 0.5


def test_patches_cli_writes_by_overlap_and_the_figure(tmp_path):
    result = run_cli("continual", "benchmark=patches", "overlaps=[0,13]", "seeds=2", "src.iterations=6000",
                     f"run.dir={tmp_path / 'p'}")
    assert result.returncode == 0, result.stderr
    saved = json.loads((tmp_path / "p" / "results.json").read_text())
    assert set(saved["by_overlap"]) == {"0", "13"}
    for entry in saved["by_overlap"].values():
        assert {"after_t1", "after_t2", "after_sleep", "sd"} <= set(entry)
        assert set(entry["sd"]) == {"after_t1", "after_t2", "after_sleep"}
    assert (tmp_path / "p" / "accuracy_vs_overlap.png").exists()
    assert "overlap 13" in result.stdout


@pytest.mark.parametrize("args,expected", [
    (["benchmark=cifar"], "benchmark: 'cifar' is not allowed"),
    (["method=lwf"], "method: 'lwf' is not allowed"),
    (["ewc_gamma=0"], "ewc_gamma: must be in (0, 1]"),
    (["ewc_strength=-1"], "ewc_strength: must be >= 0"),
    (["benchmark=split_digits", "src.betas=[1.0]"], "src.betas: one threshold per layer"),
    (["benchmark=split_mnist"], "data_path: required with benchmark=split_mnist"),
    (["src.mod=faithful"], "src.mod: unknown key; did you mean 'src.mode'?"),
    (["benchmark=patches", "overlaps=[3,20]"], "overlaps: each overlap must be in [0, 16]"),
])
def test_continual_config_errors(args, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_continual_config(args)


def test_missing_mnist_folder_is_one_line(tmp_path):
    result = run_cli("continual", "benchmark=split_mnist", f"data_path={tmp_path}", f"run.dir={tmp_path / 'r'}")
    assert result.returncode == 2 and "no train-images-idx3-ubyte" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "r").exists()


def test_parameter_search_scores_on_training_data(tmp_path):
    cfg = load_continual_config([*FAST_DIGITS, "search_trials=3", f"run.dir={tmp_path / 's'}"])
    results, run_dir = run_continual(cfg)
    saved = json.loads((run_dir / "search.json").read_text())
    assert len(saved["trials"]) == 3 and saved["best"]["x"] == saved["trials"][0]["x"] and saved["complete"]
    assert saved["trials"][0]["train_accuracy"] >= saved["trials"][-1]["train_accuracy"]
    assert "src.betas=[" in saved["best"]["as_overrides"] and "src.iterations=" in saved["best"]["as_overrides"]
    assert saved["reference"]["method"] == "sequential" and 0 <= saved["reference"]["train_accuracy"] <= 1
    assert not (run_dir / "results.json").exists()
    # the best trial as an src= preset: loading it gives the printed overrides' parameters
    base = [w for w in FAST_DIGITS if not w.startswith(("src.iterations=", "src.growth="))]  # else they'd win
    from_file = load_continual_config([*base, f"src={run_dir / 'best_src.yaml'}"])
    from_words = load_continual_config([*base, *saved["best"]["as_overrides"].split()])
    assert from_file.src == from_words.src
    assert (run_dir / "best_src.yaml").read_text().startswith("# SRC fitted by search")


def test_an_interrupted_search_keeps_its_finished_trials(tmp_path, monkeypatch):
    import sleeptrain.continual.search as search_module

    calls = []
    real = search_module.run_method

    def interrupted_on_the_third_run(*args, **kwargs):   # reference, trial 0, then Ctrl-C in trial 1
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(search_module, "run_method", interrupted_on_the_third_run)
    cfg = load_continual_config([*FAST_DIGITS, "search_trials=4", f"run.dir={tmp_path / 's'}"])
    with pytest.raises(KeyboardInterrupt):
        run_continual(cfg)
    saved = json.loads((tmp_path / "s" / "search.json").read_text())
    assert saved["complete"] is False and [t["trial"] for t in saved["trials"]] == [0]
    assert saved["reference"]["method"] == "sequential"
    assert load_continual_config([*FAST_DIGITS, f"src={tmp_path / 's' / 'best_src.yaml'}"]).src.inc > 0

    # run again: trial 0 is taken from the record (same vector), trials 1-3 train, and a trial that diverges is
    # recorded without a score and never chosen; the search goes on
    calls.clear()

    def boom(*args, **kwargs):
        raise ConfigError("sgd.lr: training diverged (non-finite loss) on t1 with lr 0.1; lower sgd.lr")

    def trial_2_diverges(*args, **kwargs):   # reference, trial 1, then trial 2's run diverges
        calls.append(1)
        if len(calls) == 3:
            raise ConfigError("sgd.lr: training diverged (non-finite loss) on t2 with lr 0.1; lower sgd.lr")
        return real(*args, **kwargs)

    monkeypatch.setattr(search_module, "run_method", trial_2_diverges)
    run_continual(cfg)
    saved = json.loads((tmp_path / "s" / "search.json").read_text())
    assert saved["complete"] and sorted(t["trial"] for t in saved["trials"]) == [0, 1, 2, 3] and len(calls) == 4
    diverged = next(t for t in saved["trials"] if t["trial"] == 2)
    assert diverged["train_accuracy"] is None and diverged["note"].startswith("diverged: sgd.lr")
    assert saved["trials"][-1]["trial"] == 2 and saved["best"]["train_accuracy"] is not None
    with pytest.raises(ConfigError, match="already holds a finished search"):
        run_continual(cfg)
    # the first trial diverging: nothing to call best yet, the search goes on to the next
    calls.clear()
    monkeypatch.setattr(search_module, "run_method",
                        lambda *a, **k: (calls.append(1), (real if len(calls) != 2 else boom)(*a, **k))[1])
    first = load_continual_config([*FAST_DIGITS, "search_trials=2", f"run.dir={tmp_path / 'f'}"])
    run_continual(first)
    saved_f = json.loads((tmp_path / "f" / "search.json").read_text())
    assert saved_f["best"]["x"] == next(t for t in saved_f["trials"] if t["trial"] == 1)["x"]
    other = load_continual_config([*FAST_DIGITS, "search_trials=4", "search_spread=2", f"run.dir={tmp_path / 'o'}"])
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "search.json").write_text(json.dumps({**saved, "complete": False}))
    with pytest.raises(ConfigError, match="interrupted search with other settings"):
        run_continual(other)


def test_evolve_search_mutates_the_best_and_scales_the_sleep(tmp_path):
    """The sleep-length factor (last entry) reaches src.iterations/growth; the printed overrides reproduce a trial."""
    from sleeptrain.continual.runner import build_benchmark
    from sleeptrain.continual.search import search, trial_config

    cfg = load_continual_config([*FAST_DIGITS, "method=rehearsal_src", "src.iterations=200", "src.growth=100"])
    scaled = trial_config(cfg, [*cfg.src.vector(), 0.5], sleep_length=True)
    assert (scaled.src.iterations, scaled.src.growth) == (100, 50) and scaled.src.inc == cfg.src.inc
    found = search([build_benchmark(cfg, 0), build_benchmark(cfg, 1)], cfg, trials=3, strategy="evolve",
                   method="rehearsal_src")
    assert found["reference"]["method"] == "rehearsal" and len(found["trials"]) == 3
    for scored in (*found["trials"], found["reference"]):  # two task orders, the score is their mean
        assert len(scored["per_order"]) == 2 and scored["train_accuracy"] == pytest.approx(sum(scored["per_order"]) / 2)
    assert all(len(t["x"]) == len(cfg.src.vector()) + 1 for t in found["trials"])
    best = found["trials"][0]
    again = load_continual_config([*FAST_DIGITS, "method=rehearsal_src", *best["as_overrides"].split()])
    assert again.src.iterations == trial_config(cfg, best["x"], True).src.iterations


def test_search_of_a_method_without_sleep_is_one_line(tmp_path):
    result = run_cli("continual", "benchmark=split_digits", "method=rehearsal", "search_trials=2", f"run.dir={tmp_path / 'r'}")
    assert result.returncode == 2 and "method:" in result.stderr and "Traceback" not in result.stderr


def test_empirical_fisher_is_the_mean_squared_per_sample_gradient():
    import torch

    from sleeptrain.continual.ewc import empirical_fisher
    from sleeptrain.continual.mlp import BiaslessMLP

    torch.manual_seed(0)
    for output in ("relu_mse", "softmax_ce"):
        net = BiaslessMLP([5, 4, 3], output, dropout=0.25)
        x, y = torch.rand(7, 5), torch.randint(0, 3, (7,))
        by_hand = [torch.zeros_like(w) for w in net.weights]
        for i in range(7):  # one sample at a time, through ordinary autograd
            grads = torch.autograd.grad(net.loss(net(x[i:i + 1]), y[i:i + 1]), list(net.weights))
            for acc, g in zip(by_hand, grads):
                acc += g.pow(2) / 7
        for got, want in zip(empirical_fisher(net, x, y, chunk=3), by_hand):
            torch.testing.assert_close(got, want)


def test_ewc_penalty_by_hand_and_online_accumulation():
    import torch

    from sleeptrain.continual.ewc import EWCPenalty
    from sleeptrain.continual.mlp import BiaslessMLP

    net = BiaslessMLP([2, 2], "softmax_ce")
    penalty = EWCPenalty(strength=4.0, gamma=0.5)
    assert float(penalty(net.weights)) == 0.0                  # nothing consolidated yet
    x, y = torch.rand(6, 2), torch.tensor([0, 1, 0, 1, 0, 1])
    penalty.consolidate(net, x, y)
    first = [f.clone() for f in penalty.fisher]
    assert float(penalty([w.detach() for w in net.weights])) == 0.0  # at the anchor
    moved = [w.detach() + 0.5 for w in net.weights]
    expected = 0.5 * 4.0 * sum(float((f * 0.25).sum()) for f in first)
    assert float(penalty(moved)) == pytest.approx(expected)
    penalty.consolidate(net, x, y)                              # same data again: F = 0.5 F + F
    for f, f0 in zip(penalty.fisher, first):
        torch.testing.assert_close(f, 1.5 * f0)


def test_strong_ewc_holds_the_first_task_better_than_sequential():
    def first_task_after_second(method, *extra):
        from sleeptrain.continual.methods import run_method
        from sleeptrain.continual.runner import build_benchmark

        cfg = load_continual_config([*FAST_DIGITS, f"method={method}", "sgd.epochs=3", *extra])
        bench = build_benchmark(cfg, 0)
        result = run_method(bench, method, cfg, 0)
        return result.matrix[1][0]                                # after train_t2, on t1

    # 32-unit net, 3 epochs, seed 0: t1 keeps 0.36 with EWC (strength 500; 1000 diverges at lr 0.1 with the
    # toolbox's output gradient), 0.00 without
    assert first_task_after_second("ewc", "ewc_strength=500") > first_task_after_second("sequential") + 0.3


def test_diverging_training_is_one_line(tmp_path):
    result = run_cli("continual", "benchmark=split_digits", "method=ewc", "ewc_strength=100000", "net.hidden=[32,32]", "sgd.epochs=1",
                     f"run.dir={tmp_path / 'r'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "sgd.lr: training diverged" in result.stderr and "ewc_strength" in result.stderr


def test_shipped_src_presets_load_and_overrides_win():
    from sleeptrain.continual.runner import src_presets

    assert "split_mnist_rehearsal10" in src_presets()
    for name, description in src_presets().items():
        assert description, f"{name}: first comment line is its --help description"
        cfg = load_continual_config(["benchmark=split_mnist", "data_path=x", "method=rehearsal_src", f"src={name}"])
        assert cfg.src.patch == 11 and len(cfg.src.betas) == 3      # the benchmark preset stays underneath
    cfg = load_continual_config(["benchmark=split_mnist", "data_path=x", "src=split_mnist_rehearsal10",
                                 "src.inc=0.5"])
    assert cfg.src.inc == 0.5 and cfg.src.dec == pytest.approx(0.00817517)


@pytest.mark.parametrize("content,expected", [
    (None, "src: unknown preset 'nope'; available: split_mnist_rehearsal10, split_mnist_rehearsal5"),
    ("missing", "src: preset file 'PATH' does not exist"),
    ("src: {inc: 0.1}\nsgd: {lr: 1.0}\n", "src: preset 'PATH' may only set the src section, found sgd"),
    ("src: {incc: 0.1}\n", "src.incc: unknown key"),
    ("src: [1, 2\n", "is not valid YAML"),
])
def test_src_preset_errors_are_one_line(tmp_path, content, expected):
    name = "nope"
    if content is not None:
        name = str(tmp_path / "fitted.yaml")
        if content != "missing":
            (tmp_path / "fitted.yaml").write_text(content)
    result = run_cli("continual", "benchmark=split_digits", f"src={name}", f"run.dir={tmp_path / 'r'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert expected.replace("PATH", name) in result.stderr.strip().splitlines()[-1]
    assert len(result.stderr.strip().splitlines()) == 1


def test_rehearsal_src_with_the_papers_vector_points_to_the_fitted_sets(tmp_path):
    from sleeptrain.continual.runner import describe

    cfg = load_continual_config(["benchmark=split_mnist", "data_path=x", "method=rehearsal_src"])
    from sleeptrain.presets import flat_config

    results = {"benchmark": "split_mnist", "method": "rehearsal_src", "seeds": [0], "seconds": 1.0,
               "config": flat_config(cfg),
               **{key: {"mean": 0.5, "sd": 0.0} for key in ("average_accuracy", "forgetting", "bwt")}}
    assert "src=split_mnist_rehearsal5" in describe(results, tmp_path)
    fitted = load_continual_config(["benchmark=split_mnist", "data_path=x", "method=rehearsal_src",
                                    "src=split_mnist_rehearsal10"])
    assert "note:" not in describe({**results, "config": flat_config(fitted)}, tmp_path)


def test_synaptic_intelligence_by_hand():
    import torch

    from sleeptrain.continual.si import SynapticIntelligence

    si = SynapticIntelligence(strength=2.0, xi=0.05)
    w = [torch.tensor([1.0, 3.0])]
    assert float(si(w)) == 0.0                     # nothing consolidated yet
    si.begin_task(w)
    si.observe([torch.tensor([2.0, 0.0])], [torch.tensor([-0.25, 0.5])])
    si.observe([torch.tensor([2.0, 1.0])], [torch.tensor([-0.25, 0.0])])
    end = [torch.tensor([0.5, 3.5])]
    si.consolidate(end)
    # omega = -(2 * -0.25) - (2 * -0.25) = 1.0 and 0; Delta = -0.5 and 0.5 -> Omega = 1 / (0.25 + 0.05), 0
    torch.testing.assert_close(si.importance[0], torch.tensor([1 / 0.3, 0.0]))
    assert float(si([torch.tensor([0.7, 10.0])])) == pytest.approx(2.0 * (1 / 0.3) * 0.2 ** 2)
    si.begin_task(end)                             # a second task adds to the importance, the anchor moves
    si.observe([torch.tensor([0.0, -1.0])], [torch.tensor([0.0, 0.5])])
    si.consolidate([torch.tensor([0.5, 4.0])])
    torch.testing.assert_close(si.importance[0], torch.tensor([1 / 0.3, 0.5 / 0.3]))
    torch.testing.assert_close(si.anchor[0], torch.tensor([0.5, 4.0]))


def test_si_runs_end_to_end_and_its_errors_name_the_key(tmp_path):
    results, _ = run_continual(load_continual_config([*FAST_DIGITS, "method=si", "run.plot=false",
                                                      f"run.dir={tmp_path / 'si'}"]))
    assert 0 <= results["average_accuracy"]["mean"] <= 1 and len(results["stages"]) == 5
    with pytest.raises(ConfigError, match="si_xi: must be > 0"):
        load_continual_config(["benchmark=split_digits", "si_xi=0"])


def write_features(path, n_classes=4, n=80, d=12, seed=0, **replace):
    rng = np.random.default_rng(seed)
    centers = rng.random((n_classes, d))
    y_train, y_test = np.arange(n) % n_classes, np.arange(n // 2) % n_classes
    arrays = {"x_train": centers[y_train] + 0.05 * rng.random((n, d)), "y_train": y_train,
              "x_test": centers[y_test] + 0.05 * rng.random((n // 2, d)), "y_test": y_test, **replace}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_feature_file_benchmark_runs_src_end_to_end(tmp_path):
    path = write_features(tmp_path / "feats.npz")
    results, run_dir = run_continual(load_continual_config([
        "benchmark=features", f"features_path={path}", "classes_per_task=2", "net.hidden=[16,16]", "sgd.epochs=3",
        "sgd.batch_size=10", "src.iterations=200", "seeds=2", "run.plot=false", f"run.dir={tmp_path / 'r'}"]))
    assert results["stages"] == ["train_t1", "sleep_t1", "train_t2", "sleep_t2"]
    assert results["data"] == {"n_train": 80, "n_seen_by_sleep": 80, "n_test": 40}
    assert [s["task_classes"] for s in results["per_seed"]][0] == [[0, 1], [2, 3]]


@pytest.mark.parametrize("replace, expected", [
    ({"y_test": None}, "lacks y_test"),
    ({"x_test": np.zeros((40, 5))}, "do not fit"),
    ({"y_train": -np.ones(80, dtype=int)}, "labels must be integers"),
])
def test_feature_file_errors_are_one_line(tmp_path, replace, expected):
    from sleeptrain.continual.data import feature_tasks
    from sleeptrain.errors import DataError

    with pytest.raises(DataError, match=expected):
        feature_tasks(write_features(tmp_path / "f.npz", **replace), 2)


def test_missing_or_unsplittable_feature_file(tmp_path):
    result = run_cli("continual", "benchmark=features", f"features_path={tmp_path / 'none.npz'}",
                     f"run.dir={tmp_path / 'r'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "features_path: no file" in result.stderr and "cub200_resnet50" in result.stderr
    assert not (tmp_path / "r").exists()
    from sleeptrain.continual.data import feature_tasks
    from sleeptrain.errors import DataError

    with pytest.raises(DataError, match="classes_per_task: 3 does not divide the 4 classes"):
        feature_tasks(write_features(tmp_path / "f.npz"), 3)


def test_rehearsal_draws_afresh_from_all_old_images_as_the_code():
    import torch

    from sleeptrain.continual.data import Task
    from sleeptrain.continual.config import ContinualConfig
    from sleeptrain.continual.methods import rehearsal_samples

    def task(label, n):
        x = torch.full((n, 3), float(label))
        return Task(f"t{label}", [label], x[:10], torch.full((10,), label), x[:2], torch.full((2,), label),
                    x, torch.full((n,), label))

    old = [task(0, 3000), task(1, 2990)]
    rng = np.random.default_rng(0)
    x, y = rehearsal_samples(old, [], [], ContinualConfig(rehearsal_fraction=0.02), rng)
    assert len(y) == 100 and set(y.tolist()) == {0, 1}          # round(0.02 * 5990, -2) = 100, from both tasks
    x2, _ = rehearsal_samples(old, [], [], ContinualConfig(rehearsal_fraction=0.02), rng)
    assert len(x2) == 100                                         # a new draw for the next task
    small = rehearsal_samples([task(0, 300)], [], [], ContinualConfig(rehearsal_fraction=0.1), rng)[1]
    assert len(small) == 30                                       # below 50: no rounding to hundreds
    kept = rehearsal_samples(old, [torch.zeros(4, 3)], [torch.zeros(4)], ContinualConfig(rehearsal_draw="kept"), rng)
    assert len(kept[1]) == 4


def test_owm_projector_by_hand_and_orthogonality():
    import torch

    from sleeptrain.continual.owm import OrthogonalProjection

    owm = OrthogonalProjection([2, 3], alphas=[1.0])
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0]])                  # batch mean r = (1, 0)
    g = torch.ones(3, 2)
    (projected,) = owm([x], [g], progress=0.0)
    # k = P r = (1, 0); P -= k k^T / (1 + 1) -> diag(0.5, 1); G P halves the first column
    torch.testing.assert_close(owm.P[0], torch.tensor([[0.5, 0.0], [0.0, 1.0]]))
    torch.testing.assert_close(projected, torch.tensor([[0.5, 1.0]] * 3))
    tight = OrthogonalProjection([2, 3], alphas=[1e-6])          # small alpha: updates orthogonal to r
    (projected,) = tight([x], [g], progress=0.0)
    assert float((projected @ torch.tensor([1.0, 0.0])).abs().max()) < 1e-4


def test_owm_holds_old_tasks_that_sequential_forgets():
    from sleeptrain.continual.methods import run_method
    from sleeptrain.continual.metrics import average_accuracy
    from sleeptrain.continual.runner import build_benchmark

    scores = {}
    for method in ("sequential", "owm"):
        cfg = load_continual_config([*FAST_DIGITS, f"method={method}", "sgd.epochs=3"])
        scores[method] = average_accuracy(run_method(build_benchmark(cfg, 0), method, cfg, 0).matrix)
    assert scores["owm"] > scores["sequential"] + 0.2               # seed 0: 0.57 vs 0.18
    with pytest.raises(ConfigError, match="owm_alphas: one alpha per layer"):
        load_continual_config([*FAST_DIGITS, "owm_alphas=[1.0]"])


def test_weighted_rehearsal_loss_by_hand():
    """One SGD step (no dropout, no momentum): the update is the gradient of (1 - w) L(new) + w L(old), where the
    old batch is every stored image when fewer than a batch are stored."""
    import torch

    from sleeptrain.continual.mlp import BiaslessMLP, SGDConfig, Trainer

    def net():
        return BiaslessMLP([4, 3, 2], "relu_mse", 0.0, generator=torch.Generator().manual_seed(1))

    gen = torch.Generator().manual_seed(2)
    x_new, y_new = torch.rand(5, 4, generator=gen), torch.tensor([0, 1, 0, 1, 0])
    x_old, y_old = torch.rand(3, 4, generator=gen), torch.tensor([1, 1, 0])
    w = 0.75
    reference = net()
    loss = (1 - w) * reference.loss(reference(x_new), y_new) + w * reference.loss(reference(x_old), y_old)
    grads = torch.autograd.grad(loss, list(reference.weights))
    trained = net()
    Trainer(trained).fit(x_new, y_new, SGDConfig(lr=0.5, momentum=0.0, batch_size=5, epochs=1),
                         replay=(x_old, y_old, w))
    for before, after, g in zip(reference.weights, trained.weights, grads):
        torch.testing.assert_close(after.detach(), before.detach() - 0.5 * g)
    plain = net()
    Trainer(plain).fit(x_new, y_new, SGDConfig(lr=0.5, momentum=0.0, batch_size=5, epochs=1))
    assert not torch.allclose(plain.weights[0], trained.weights[0])   # the replay term changed the step


def test_weighted_rehearsal_runs_and_is_recorded(tmp_path):
    cfg = load_continual_config([*FAST_DIGITS, "method=rehearsal", "rehearsal_loss=weighted", "seeds=1",
                                 f"run.dir={tmp_path / 'r'}"])
    results, run_dir = run_continual(cfg)
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["config"]["rehearsal_loss"] == "weighted"
    with pytest.raises(ConfigError, match="rehearsal_loss"):
        load_continual_config(["benchmark=split_digits", "rehearsal_loss=mean"])


def test_the_bare_command_runs_patches_where_src_shows(tmp_path):
    from sleeptrain.continual.config import ContinualConfig

    assert ContinualConfig().benchmark == "patches"
    cfg = load_continual_config([f"run.dir={tmp_path / 'r'}"])
    assert cfg.benchmark == "patches" and cfg.method == "src" and cfg.src.iterations == 30000
