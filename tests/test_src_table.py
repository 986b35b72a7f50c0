"""tools/src_table.py: a committed table is a ledger — a method already in it under the same protocol is not run
again, even where the runs' folder is gone (a fresh clone)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FAST = ["net.hidden=[16,16]", "sgd.epochs=1", "src.iterations=200", "src.growth=50", "src.streams=8"]


def table(out: Path, results: Path, methods: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "tools" / "src_table.py"), "--benchmark", "split_digits",
                           "--out", str(out), "--results", str(results), "--methods", methods, "--seeds", "2",
                           *FAST, *extra], capture_output=True, text=True, check=True)


def test_a_method_in_the_committed_table_is_kept_and_only_the_new_one_runs(tmp_path):
    results = tmp_path / "results"
    table(tmp_path / "out1", results, "sequential")
    first = json.loads((results / "split_digits.json").read_text())
    assert first["protocol"]["seeds"] == 2 and first["protocol"]["extra"] == FAST

    # a fresh clone: the table is there, the runs are not
    proc = table(tmp_path / "out2", results, "sequential,rehearsal")
    assert "split_digits-sequential: kept from" in proc.stdout
    assert not (tmp_path / "out2" / "split_digits-sequential").exists()
    assert (tmp_path / "out2" / "split_digits-rehearsal" / "results.json").is_file()
    second = json.loads((results / "split_digits.json").read_text())
    assert second["methods"]["sequential"]["per_seed"] == first["methods"]["sequential"]["per_seed"]
    assert second["methods"]["rehearsal"]["vs_sequential"]["n"] == 2
    assert "--methods sequential,rehearsal" in second["command"]

    # another protocol (other extra words) runs everything again
    table(tmp_path / "out3", results, "sequential", "sgd.lr=0.05")
    assert (tmp_path / "out3" / "split_digits-sequential" / "results.json").is_file()


def test_a_table_written_before_the_protocol_was_stored_is_read_back_from_its_command(tmp_path):
    results = tmp_path / "results"
    table(tmp_path / "out1", results, "sequential")
    path = results / "split_digits.json"
    old = json.loads(path.read_text())
    del old["protocol"]
    path.write_text(json.dumps(old))
    proc = table(tmp_path / "out2", results, "sequential")
    assert "kept from" in proc.stdout and not (tmp_path / "out2" / "split_digits-sequential").exists()


def test_the_tuned_block_tunes_every_method_alike_and_is_kept_like_the_rest(tmp_path):
    results = tmp_path / "results"
    proc = table(tmp_path / "out1", results, "sequential,ewc,src", "--tuned-validation", "3", "--search-trials", "2")
    saved = json.loads((results / "split_digits.json").read_text())
    tuned = saved["tuned"]["methods"]
    assert set(tuned) == {"sequential", "ewc", "src"} and saved["tuned"]["validation"] == 3
    assert tuned["ewc"]["choice"] is not None and "ewc_strength" in tuned["ewc"]["choice"]
    assert tuned["sequential"]["tuned"] == "nothing to tune" and tuned["src"]["tuned"].startswith("SRC vector searched")
    ewc_run = json.loads((tmp_path / "out1" / "split_digits-tuned-ewc" / "results.json").read_text())
    assert ewc_run["config"]["validation"] == 3 and ewc_run["tuning"]["seeds"] == [100]
    assert ewc_run["tuning"]["grid"] == {"ewc_strength": [1.0, 10000.0]}   # as many points as the search's trials
    assert tuned["ewc"]["trials"] == tuned["src"]["trials"] == 2 and tuned["sequential"]["trials"] == 0
    assert saved["tuned"]["points"] == 2
    search = json.loads((tmp_path / "out1" / "split_digits-tuned-src-search" / "search.json").read_text())
    assert search["score_key"] == "validation_accuracy" and search["seeds"] == [100]
    assert tuned["ewc"]["vs_sequential"]["n"] == 2 and "vs_src" in tuned["ewc"] and "vs_src" not in tuned["src"]
    md = (results / "split_digits.md").read_text()
    assert "## Every method tuned alike (validation = 3" in md and "| ewc |" in md.split("tuned alike")[1]
    assert "| trials |" in md and md.split("| src |")[-1].split("\n")[0].endswith("| 2 |")
    again = table(tmp_path / "out2", results, "sequential,ewc,src", "--tuned-validation", "3", "--search-trials", "2")
    assert "split_digits-tuned-ewc: kept from the committed table" in again.stdout
    assert not (tmp_path / "out2" / "split_digits-tuned-ewc").exists()


def test_a_flat_grid_is_called_flat_not_an_edge_choice():
    sys.path.insert(0, str(REPO / "tools"))
    import src_table

    tied = {"trials": [{"validation_accuracy": 0.1908}, {"validation_accuracy": 0.1908},
                       {"validation_accuracy": 0.1894}, {"validation_accuracy": None}]}
    assert abs(src_table.validation_spread(tied) - 0.0014) < 1e-9 and src_table.validation_spread({}) is None
    acc = {"mean": 0.2, "sd": 0.01}
    rows = {"ewc": {"average_accuracy": acc, "choice": {"ewc_strength": 1.0}, "tuned": "grid",
                    "choice_on_edge": ["ewc_strength"], "validation_spread": 0.0014},
            "si": {"average_accuracy": acc, "choice": {"si_strength": 10.0}, "tuned": "grid",
                   "choice_on_edge": ["si_strength"], "validation_spread": 0.05}}
    lines = "\n".join(src_table.tuned_lines(rows, 500))
    assert "| ewc |" in lines and "flat grid: every point within 0.0014 on validation" in lines
    assert "(edge: si_strength)" in lines and lines.count("flat grid") == 1


def test_the_tuned_block_is_written_as_methods_finish_and_a_partial_one_resumes(tmp_path, monkeypatch):
    sys.path.insert(0, str(REPO / "tools"))
    import argparse

    import src_table

    ran = []

    def fake_run(benchmark, method, seeds, out, words, tag=""):
        ran.append(method)
        lift = {"src": [0.30, 0.25, 0.35], "ewc": [0.01, -0.02, 0.04]}.get(method, [0.0, 0.0, 0.0])
        per = [0.2 + 0.1 * i + lift[i] for i in range(3)]
        return {"average_accuracy": {"mean": sum(per) / 3, "sd": 0.1, "n": 3}, "seeds": [0, 1, 2],
                "per_seed": [{"average_accuracy": a} for a in per]}

    monkeypatch.setattr(src_table, "run", fake_run)
    monkeypatch.setattr(src_table, "tuned_words", lambda *a: ([], "nothing to tune"))
    args = argparse.Namespace(tag="", tuned_validation=5, search_trials=2, tuned_widen=0, tuning_orders=1, benchmark="split_digits",
                              extra=[], seeds=3)
    partial = []
    block = src_table.tuned_block(args, ["sequential", "src", "ewc"], tmp_path, "split_digits", {}, partial.append)
    assert [list(p) for p in partial] == [["sequential"], ["sequential", "src"]]   # written after each method
    assert "vs_sequential" in partial[1]["src"] and "vs_src" in block["ewc"] and ran == ["sequential", "src", "ewc"]
    # stopped after two methods: the committed partial block keeps them, only the third runs
    ran.clear()
    earlier = {"tuned": {"validation": 5, "search_trials": 2, "methods": partial[1]}}
    again = src_table.tuned_block(args, ["sequential", "src", "ewc"], tmp_path / "fresh", "split_digits", earlier)
    assert ran == ["ewc"] and again["src"]["per_seed"] == block["src"]["per_seed"]
    assert again["ewc"]["vs_src"] == block["ewc"]["vs_src"]
    lines = "\n".join(src_table.tuned_lines(block, 5))
    assert "Holm" in lines and ("MDE" in lines) == any(
        c.get("p_holm") is None or c["p_holm"] >= 0.05 for row in block.values()
        for c in (row.get("vs_sequential"), row.get("vs_src")) if c and "mean_diff" in c)


def test_tuned_widen_keeps_only_the_rows_it_cannot_change_and_names_what_it_added():
    """`--tuned-widen N`: a committed tuned row under another widening stands where its choice lies inside its grid
    (widening acts on an edge choice only); an edge row, or one an earlier widening changed, runs again."""
    from types import SimpleNamespace

    sys.path.insert(0, str(REPO / "tools"))
    import src_table

    inside = {"choice": {"sgd.lr": 0.1}, "choice_on_edge": [], "vs_src": {}}
    edge = {"choice": {"sgd.lr": 0.3}, "choice_on_edge": ["sgd.lr"]}
    widened = {"choice": {"sgd.lr": 0.6}, "choice_on_edge": [], "widened": {"sgd.lr": [0.9]}}
    before = {"validation": 500, "search_trials": 10,
              "methods": {"ewc": inside, "rehearsal": edge, "owm": widened, "src": {"choice": None}}}
    args = SimpleNamespace(tuned_validation=500, search_trials=10, tuned_widen=1, tuning_orders=1)
    assert src_table.kept_tuned_row(before, "ewc", args) == {"choice": {"sgd.lr": 0.1}, "choice_on_edge": []}
    assert src_table.kept_tuned_row(before, "src", args) == {"choice": None}      # nothing to widen
    assert src_table.kept_tuned_row(before, "rehearsal", args) is None
    assert src_table.kept_tuned_row({**before, "widen": 1}, "rehearsal", args) is not None   # the same widening
    unwidened = SimpleNamespace(**{**vars(args), "tuned_widen": 0})
    assert src_table.kept_tuned_row({**before, "widen": 1}, "owm", unwidened) is None   # an earlier widening changed it
    assert src_table.kept_tuned_row(before, "ewc", SimpleNamespace(**{**vars(args), "search_trials": 20})) is None
    # a grid row from a block whose grids had another number of points than the search's trials runs again; the
    # search's own row (and a row with nothing to tune) stands
    gridded = {"validation": 500, "search_trials": 10, "methods": {"ewc": {**inside, "tuned": "grid {...}"},
                                                                   "src": {"choice": None, "tuned": "SRC vector"}}}
    assert src_table.kept_tuned_row(gridded, "ewc", args) is None
    assert src_table.kept_tuned_row({**gridded, "points": 10}, "ewc", args) is not None
    assert src_table.kept_tuned_row(gridded, "src", args) is not None
    acc = {"mean": 0.2, "sd": 0.01}
    rows = {"rehearsal": {"average_accuracy": acc, "choice": {"sgd.lr": 0.6}, "tuned": "grid", "choice_on_edge": [],
                          "validation_spread": 0.05, "widened": {"sgd.lr": [0.6]}}}
    assert "| rehearsal |" in (line := src_table.tuned_lines(rows, 500)[-1]) and "(widened: sgd.lr + [0.6])" in line


def test_rehearsal_src_takes_rehearsal_s_tuned_lr_and_its_row_stands_only_at_that_lr(tmp_path, monkeypatch):
    """rehearsal + SRC is tuned like its parts: the wake at the lr rehearsal's tuning chose, the sleep by the search at
    that lr; a committed rehearsal_src row from another lr (or from before, with none) runs again."""
    import argparse

    sys.path.insert(0, str(REPO / "tools"))
    import src_table

    asked = []

    def fake_words(benchmark, method, validation, trials, out, name, extra, widen=0, wake_lr=None, orders=1):
        asked.append((method, wake_lr))
        return [], "grid" if method == "rehearsal" else "searched"

    def fake_run(benchmark, method, seeds, out, words, tag=""):
        tuning = {"choice": {"sgd.lr": 0.3}, "choice_on_edge": ["sgd.lr"]} if method == "rehearsal" else {}
        return {"average_accuracy": {"mean": 0.5, "sd": 0.1, "n": 2}, "seeds": [0, 1],
                "per_seed": [{"average_accuracy": 0.4}, {"average_accuracy": 0.6}], "tuning": tuning}

    monkeypatch.setattr(src_table, "tuned_words", fake_words)
    monkeypatch.setattr(src_table, "run", fake_run)
    args = argparse.Namespace(tag="", tuned_validation=5, search_trials=2, tuned_widen=0, tuning_orders=1, benchmark="split_digits",
                              extra=[], seeds=2)
    block = src_table.tuned_block(args, ["rehearsal", "rehearsal_src"], tmp_path, "split_digits", {})
    assert asked == [("rehearsal", None), ("rehearsal_src", 0.3)] and block["rehearsal_src"]["wake_lr"] == 0.3
    earlier = {"tuned": {"validation": 5, "search_trials": 2, "points": 2, "methods": block}}
    asked.clear()
    src_table.tuned_block(args, ["rehearsal", "rehearsal_src"], tmp_path / "again", "split_digits", earlier)
    assert asked == []  # both kept: the same protocol, the same lr
    old = {**block, "rehearsal_src": {k: v for k, v in block["rehearsal_src"].items() if k != "wake_lr"}}
    src_table.tuned_block(args, ["rehearsal", "rehearsal_src"], tmp_path / "old", "split_digits",
                          {"tuned": {"validation": 5, "search_trials": 2, "points": 2, "methods": old}})
    assert asked == [("rehearsal_src", 0.3)]  # a row from before it took rehearsal's lr runs again
    with pytest.raises(SystemExit) as stop:
        src_table.tuned_block(args, ["rehearsal_src"], tmp_path / "alone", "split_digits", {})
    assert stop.value.code == 2


def test_tuning_orders_score_every_method_s_tuning_on_the_same_task_orders(tmp_path, monkeypatch):
    """`--tuning-orders N`: a grid runs on tune_seeds 100 … 100+N-1 and the SRC search on the same orders
    (`seed=100 seeds=N`, its own folder); a row chosen on another number of orders runs again."""
    from types import SimpleNamespace

    sys.path.insert(0, str(REPO / "tools"))
    import src_table

    from sleeptrain.continual.runner import load_continual_config

    words, how = src_table.tuned_words("split_digits", "ewc", 3, 4, tmp_path, "split_digits", [], orders=2)
    assert "tune_seeds=[100,101]" in words and "tune_points=4" in words and how.startswith("grid")
    assert load_continual_config(["benchmark=split_digits", "method=ewc", *words]).tune_seeds == [100, 101]
    launched = []

    def fake_search(command, **kwargs):
        launched.append(command)
        folder = Path(next(w for w in command if w.startswith("run.dir=")).split("=", 1)[1])
        folder.mkdir(parents=True)
        (folder / "search.json").write_text(json.dumps({"best": {"as_overrides": "src.inc=0.1"}}))

    monkeypatch.setattr(src_table.subprocess, "run", fake_search)
    words, how = src_table.tuned_words("split_digits", "src", 3, 4, tmp_path, "split_digits", [], orders=2)
    assert "seeds=2" in launched[0] and "seed=100" in launched[0] and "search_trials=4" in launched[0]
    assert any(w.endswith("split_digits-tuned-src-orders2-search/best_src.yaml") for w in words)
    before = {"validation": 3, "search_trials": 4, "points": 4,
              "methods": {"src": {"tuned": "SRC vector searched on validation: ..."},
                          "sequential": {"tuned": "nothing to tune"}}}
    args = SimpleNamespace(tuned_validation=3, search_trials=4, tuned_widen=0, tuning_orders=2)
    assert src_table.kept_tuned_row(before, "src", args) is None                 # chosen on one order
    assert src_table.kept_tuned_row({**before, "tuning_orders": 2}, "src", args) is not None
    assert src_table.kept_tuned_row(before, "sequential", args) is not None      # nothing was chosen


def test_each_run_keeps_its_own_log_when_its_tag_holds_a_dot(tmp_path, monkeypatch):
    """rehearsal_src's tuned runs are tagged with rehearsal's lr (`-lr0.1-`): the log is named after the whole run
    folder, not cut at the dot (two lrs' logs would have shared one file)."""
    sys.path.insert(0, str(REPO / "tools"))
    import src_table

    def fake_continual(command, stdout, **kwargs):
        folder = Path(next(w for w in command if w.startswith("run.dir=")).split("=", 1)[1])
        folder.mkdir(parents=True)
        (folder / "results.json").write_text("{}")
        stdout.write("trained\n")

    monkeypatch.setattr(src_table.subprocess, "run", fake_continual)
    for lr in ("0.1", "0.3"):
        src_table.run("split_digits", "rehearsal_src", 2, tmp_path, [], tag=f"tuned-lr{lr}")
    logs = sorted(p.name for p in tmp_path.glob("*.log"))
    assert logs == ["split_digits-tuned-lr0.1-rehearsal_src.log", "split_digits-tuned-lr0.3-rehearsal_src.log"]
