"""The hand-written tables of the results pages against the JSON their tools wrote: a page condenses the generated
table (fewer digits, shorter labels), and a condensed copy drifts when the results are re-run or a method joins a Holm
family (the Split-Fashion MDE did: 0.093 on the page, 0.101 in the JSON after rehearsal + SRC joined). Every number
in a checked row must equal its source rounded to the digits the page prints."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
# the first LM study's Holm families (computed once), a fair-study contrast, SRC's sleep on rehearsal
from test_evidence import contrast, family, sleep_on_rehearsal_pair

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "docs" / "results" / "src"
NUMBER = r"[+\u2212-]?\d+\.\d+"
LABELS = {"sequential": "sequential", "EWC": "ewc", "SI": "si", "OWM": "owm", "SRC": "src", "rehearsal": "rehearsal",
          "rehearsal + SRC": "rehearsal_src", "joint": "joint"}


def number(text: str) -> float:
    return float(text.replace("\u2212", "-"))


def agrees(printed: str, value: float) -> bool:
    """`printed` is `value` rounded to the decimals it shows."""
    decimals = len(printed.split(".")[1])
    return abs(number(printed) - value) <= 0.5 * 10 ** -decimals + 1e-9


def rows_below(page: Path, header_start: str, section: str = "") -> tuple[list[str], list[list[str]]]:
    """The header cells and the body rows' cells (bold marks dropped) of the first table whose header row starts with
    `header_start` ("| " prepended), after the heading starting with `section` ("## " prepended) when given."""
    lines = page.read_text().splitlines()
    begin = next(i for i, line in enumerate(lines) if line.startswith(f"## {section}")) if section else 0
    start = next(i for i, line in enumerate(lines) if i >= begin and line.startswith(f"| {header_start}"))
    cells = lambda line: [c.strip().strip("*") for c in line.strip("|").split("|")]  # noqa: E731
    body = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        body.append(cells(line))
    return cells(lines[start]), body


def table(page: Path, heading: str) -> dict[str, list[str]]:
    """The rows of the table whose header row starts with `heading`: method key -> cells."""
    return {LABELS[re.sub(r"\s*\(.*?\)$", "", row[0])]: row[1:] for row in rows_below(page, f"{heading} |")[1]}


def holm_cell(cell: str, cmp: dict) -> list[str]:
    """'0.047' or '< 0.001' (bold marks dropped) against a comparison's Holm-adjusted p."""
    cell = cell.replace("*", "")
    if cell == "< 0.001":
        return [] if cmp["p_holm"] < 0.001 else [f"p < 0.001 vs {cmp['p_holm']:.4g}"]
    return [] if agrees(cell, cmp["p_holm"]) else [f"Holm p {cell} vs {cmp['p_holm']:.4g}"]


def disagreements(cmp: dict, diff: str, p: str | None = None, mde: str | None = None, ns: bool = False) -> list[str]:
    """A printed comparison (difference; Holm p as a number or "< 0.001"; "n.s."; MDE after Holm) against `cmp`."""
    wrong = [] if agrees(diff, cmp["mean_diff"]) else [f"diff {diff} vs {cmp['mean_diff']:.4f}"]
    wrong += holm_cell(p, cmp) if p is not None else []
    if ns and cmp["p_holm"] < 0.05:
        wrong.append(f"n.s. vs Holm p {cmp['p_holm']:.4g}")
    if mde is not None and not agrees(mde, cmp["mde_family"]):
        wrong.append(f"MDE {mde} vs {cmp['mde_family']:.4f}")
    return wrong


def difference_cell(cell: str, cmp: dict) -> list[str]:
    """'+0.034 (0.17; MDE 0.101)' or '+0.729 (< 0.001)' against a comparison; returns what disagrees."""
    m = re.fullmatch(rf"({NUMBER}) \((?:p )?(< 0\.001|{NUMBER})(?:; MDE ({NUMBER}))?\)", cell)
    assert m, f"unreadable difference cell {cell!r}"
    diff, p, mde = m.groups()
    return disagreements(cmp, diff, p, mde)


def interval_cell(cell: str, cmp: dict, p: str | None = None, whole: bool = True) -> list[str]:
    """'+0.281 [+0.240, +0.322]' (interval optional), then ', p = 0.03' or ', p < 0.001' (or `p`, the p of a cell of
    its own), bold marks dropped, against an unadjusted comparison; `whole=False`: prose may follow. Returns what
    disagrees."""
    pattern = rf"({NUMBER})(?: \[({NUMBER}), ({NUMBER})\])?(?:, p (?:= ({NUMBER})|(< 0\.001)))?"
    m = (re.fullmatch if whole else re.match)(pattern, cell.replace("*", ""))
    assert m, f"unreadable difference cell {cell!r}"
    diff, low, high, p_here, below = m.groups()
    p = p or p_here or below
    printed = [(diff, cmp["mean_diff"]), *([(low, cmp["ci95"][0]), (high, cmp["ci95"][1])] if low else []),
               *([(p, cmp["p_value"])] if p and p != "< 0.001" else [])]
    wrong = [f"{a} vs {b:.4g}" for a, b in printed if not agrees(a, b)]
    return wrong + [f"p < 0.001 vs {cmp['p_value']:.4g}"] * (p == "< 0.001" and cmp["p_value"] >= 0.001)


@pytest.mark.parametrize("benchmark,heading", [("split_mnist", "Split-MNIST, tuned"),
                                               ("split_fashion", "Split-Fashion, tuned")])
def test_the_src_page_s_tuned_tables_match_their_json(benchmark, heading):
    results = json.loads((SRC / f"{benchmark}.json").read_text())
    rows = table(SRC / "README.md", heading)
    assert set(rows) == set(results["tuned"]["methods"]), "the page's rows are the tuned block's methods"
    wrong = []
    for method, (mean_sd, vs_sequential, vs_src, _choice, trials, untuned) in rows.items():
        tuned = results["tuned"]["methods"][method]
        wrong += [f"{method}: mean ± sd {mean_sd}"] * (not mean_sd_agrees(mean_sd, tuned["average_accuracy"]))
        wrong += [f"{method}: trials {trials}"] * (trials != str(tuned.get("trials", 0)))
        for cell, key in ((vs_sequential, "vs_sequential"), (vs_src, "vs_src")):
            if cell:
                wrong += [f"{method} {key}: {w}" for w in difference_cell(cell, tuned[key])]
        wrong += [f"{method}: untuned {untuned}"] * (not agrees(untuned, results["methods"][method]["average_accuracy"]["mean"]))
    assert not wrong, f"docs/results/src/README.md, {heading}: {wrong}"


def test_the_src_page_s_sleep_on_rehearsal_is_the_tuned_rows_paired_difference():
    cmp = sleep_on_rehearsal_pair()
    page = " ".join((SRC / "README.md").read_text().split())
    printed = page.split("rehearsal + SRC \u2212 rehearsal ", 1)[1]
    wrong = interval_cell(printed, cmp, whole=False)
    assert not wrong, f"docs/results/src/README.md, rehearsal + SRC − rehearsal: {wrong}"


def mean_sd_agrees(cell: str, stats: dict) -> bool:
    mean, sd = re.fullmatch(rf"({NUMBER}) ± ({NUMBER})", cell).groups()
    return agrees(mean, stats["mean"]) and agrees(sd, stats["sd"])


def test_the_src_page_s_stability_gap_table_matches_its_json():
    results = json.loads((SRC / "split_mnist-gap.json").read_text())["methods"]
    rows = table(SRC / "README.md", "method | ACC (final)")
    assert set(rows) == set(results)
    wrong = []
    for method, (acc, min_acc, wc_acc, vs_sequential) in rows.items():
        for cell, key in ((acc, "average_accuracy"), (min_acc, "min_acc"), (wc_acc, "wc_acc")):
            wrong += [f"{method} {key}: {cell}"] * (not mean_sd_agrees(cell, results[method][key]))
        if vs_sequential:
            wrong += [f"{method}: {w}" for w in difference_cell(vs_sequential, results[method]["vs_sequential"]["min_acc"])]
    assert not wrong, f"docs/results/src/README.md, the stability gap: {wrong}"


def gain_cell(cell: str, cmp: dict) -> list[str]:
    """'+0.133, Holm p = 0.018' or '−0.002, n.s. (MDE after Holm 0.013)' against a comparison."""
    m = re.fullmatch(rf"({NUMBER}), (?:Holm p = ({NUMBER})|(n\.s\.)(?: \(MDE after Holm ({NUMBER})\))?)", cell)
    assert m, f"unreadable gain cell {cell!r}"
    diff, p, ns, mde = m.groups()
    return disagreements(cmp, diff, p, mde, ns=ns is not None)


def test_the_src_page_s_icarl_table_matches_its_json():
    results = json.loads((SRC / "split_mnist-icarl.json").read_text())
    rows = rows_below(SRC / "README.md", "K | iCaRL, NME |")[1]
    assert [r[0] for r in rows] == list(results["table"])
    wrong = []
    for k, nme, nme_src, nme_gain, paper, net, net_src, net_gain in rows:
        row = results["table"][k]
        for cell, stats in ((nme, row["icarl"]["nme_average_accuracy"]), (nme_src, row["icarl_src"]["nme_average_accuracy"]),
                            (net, row["icarl"]["average_accuracy"]), (net_src, row["icarl_src"]["average_accuracy"])):
            wrong += [f"K {k}: {cell}"] * (not mean_sd_agrees(cell, stats))
        wrong += [f"K {k} NME: {w}" for w in gain_cell(nme_gain, row["src_minus_icarl_nme"])]
        wrong += [f"K {k} network: {w}" for w in gain_cell(net_gain, row["src_minus_icarl"])]
        if k in results["paper"]:
            wrong += [f"K {k} paper: {paper}"] * (paper != "{icarl:.3f} → {icarl_src:.3f}".format(**results["paper"][k]))
    assert not wrong, f"docs/results/src/README.md, Table 2: {wrong}"


def test_the_forgetter_2x_page_s_table_matches_its_summary():
    from sleeptrain.stats import mean_sd

    page = ROOT / "docs" / "results" / "forgetter-2x"
    summary = json.loads((page / "summary.json").read_text())
    rows = rows_below(page / "README.md", "arm (3 seeds) | final dev loss")[1]
    normal, forgetter = summary["normal"], summary["forgetter"]
    expected = [(normal["dev_loss"][i], normal["test_loss"][i]) for i in range(len(normal["steps"]))]
    expected.append((forgetter["dev_loss"], forgetter["test_loss"]))
    wrong = [f"{label}: {dev} / {test}" for (label, dev, test, _tokens), (d, t) in zip(rows, expected)
             if not (mean_sd_agrees(dev, mean_sd(d)) and mean_sd_agrees(test, mean_sd(t)))]
    assert [r[0].split(" steps")[0] for r in rows[:3]] == [f"normal, {n}" for n in normal["steps"]]
    assert not wrong, f"docs/results/forgetter-2x/README.md: {wrong}"


def tuning_cell(cell: str, record: dict) -> list[str]:
    """'4.079 / 4.161 / 0.571', optionally '(pre-end 4.352 / 4.410 / 0.528)' or '(pre-end 4.610)', against a tuning
    trial's record: dev loss / test loss / BLiMP, the same of the model before its last end ops."""
    m = re.fullmatch(rf"({NUMBER}) / ({NUMBER}) / ({NUMBER})(?: \(pre-end ({NUMBER})(?: / ({NUMBER}) / ({NUMBER}))?\))?",
                     cell.replace("**", ""))
    assert m, f"unreadable tuning cell {cell!r}"
    pre = record.get("pre_end_ops") or {}
    sources = [record["final_val_loss"], record["test_loss"], record["blimp_overall"],
               pre.get("val_loss"), pre.get("test_loss"), pre.get("blimp_overall")]
    return [f"{printed} vs {value}" for printed, value in zip(m.groups(), sources)
            if printed is not None and (value is None or not agrees(printed, value))]


def test_the_fair_lm_study_page_s_tuning_table_matches_its_records():
    study = ROOT / "docs" / "results" / "lm-study"
    header, rows = rows_below(study / "README.md", "arm | lr 1.5e-3 (widened) |")
    grid = json.loads((study / "records" / "study.json").read_text())["tune"]["keys"]["train.lr"]
    trial = {f"lr {lr:g}": f"t{i:02d}" for i, lr in enumerate(grid)}
    trial[f"lr {grid[0] ** 2 / grid[1]:g} (widened)"] = f"t{len(grid):02d}"  # the one step below the grid
    columns = [trial[_lr_label(h)] for h in header[1:-1]]
    wrong = []
    for arm, *cells, _choice in rows:
        for cell, t in zip(cells, columns):
            if cell:
                record = json.loads((study / "records" / "tuning" / arm / t / "seed100.json").read_text())
                wrong += [f"{arm} {t}: {w}" for w in tuning_cell(cell, record)]
    assert len(rows) == 7 and not wrong, f"docs/results/lm-study/README.md, tuning table: {wrong}"


def _lr_label(header: str) -> str:
    """'lr 1.5e-3 (widened)' -> 'lr 0.0015 (widened)', 'lr 6e-3' -> 'lr 0.006': the grid's values as :g prints them."""
    value, *rest = header.removeprefix("lr ").split(" ", 1)
    return " ".join([f"lr {float(value):g}", *rest])


FAIR_STUDY = ROOT / "docs" / "results" / "lm-study"


def test_the_fair_lm_study_page_s_verdict_tables_match_its_summary():
    """The page's verdict table (each arm's LR choice, test loss and BLiMP as mean ± sd over its seeds, its paired
    difference from the best baseline with the interval and the Holm p), the ablations' contrasts and the CLIMB arms
    before and after their final end ops, against summary.json."""
    from sleeptrain.stats import mean_sd

    s = json.loads((FAIR_STUDY / "summary.json").read_text())
    page, base, wrong = FAIR_STUDY / "README.md", s["best_baseline"], []
    rows = rows_below(page, "arm | lr | test loss |")[1]
    assert sorted(r[0].strip("`") for r in rows) == sorted(s["arms"])
    for label, lr, test, blimp, d_test, p_test, d_blimp, p_blimp in rows:
        arm, row = label.strip("`"), s["arms"][label.strip("`")]
        chosen = (s["tuning"].get(arm) or {}).get("chosen", {}).get("train.lr")
        wrong += [f"{arm} lr {lr}"] * (lr != "—" if chosen is None else lr == "—" or float(lr) != chosen)
        for cell, metric in ((test, "test_loss"), (blimp, "blimp")):
            wrong += [f"{arm} {metric} {cell}"] * (not mean_sd_agrees(cell, mean_sd(row[metric])))
        if arm == base:
            wrong += [f"{arm}: the baseline's own difference cells are not empty"] * any((d_test, p_test, d_blimp, p_blimp))
            continue
        for diff, p, metric in ((d_test, p_test, "test_loss"), (d_blimp, p_blimp, "blimp")):
            cmp = s["vs_best_baseline"][arm][metric]
            wrong += [f"{arm} {metric}: {w}" for w in interval_cell(diff, cmp) + holm_cell(p, cmp)]
    for label, metric, diff, p in rows_below(page, "ablation (arm − reference) | metric |")[1]:
        cmp = contrast(s, *label.strip("`").split("` − `"))
        key = {"test loss": "test_loss", "BLiMP": "blimp"}[metric]
        wrong += [f"{label} {metric}: {w}" for w in interval_cell(diff, cmp[key]) + holm_cell(p, cmp[key])]
    for label, pre_test, pre_blimp, d_test, d_blimp in rows_below(page, "arm | test loss before its final end ops |")[1]:
        arm = label.strip("`")
        pre = [run for run in s["arms"][arm]["pre_end_ops"] if run]
        wrong += [f"{arm} pre-end test {pre_test}"] * (not mean_sd_agrees(pre_test, mean_sd([r["test_loss"] for r in pre])))
        wrong += [f"{arm} pre-end BLiMP {pre_blimp}"] * (
            not mean_sd_agrees(pre_blimp, mean_sd([r["blimp_overall"] for r in pre])))
        for diff, metric in ((d_test, "test_loss"), (d_blimp, "blimp")):
            wrong += [f"{arm} end ops {metric}: {w}" for w in interval_cell(diff, s["end_op_cost"][arm][metric])]
    assert not wrong, f"docs/results/lm-study/README.md: {wrong}"


FIRST_STUDY = ROOT / "docs" / "results" / "lm-study" / "2026-11-29"


def test_the_first_lm_study_page_s_tables_match_its_summary():
    """History is checked too: its per-arm table (mean ± sd, minus epochs with the bootstrap interval, p, d_z) and the
    Holm table added when it was recomputed (against both baselines)."""
    from sleeptrain.stats import mean_sd

    arms = json.loads((FIRST_STUDY / "summary.json").read_text())["arms"]
    vs_epochs, vs_best = family("epochs"), family("climb_baseline_like")   # test_evidence's, computed once
    wrong = []
    rows = rows_below(FIRST_STUDY / "README.md", "arm (5 seeds each) | BLiMP")[1]
    assert sorted(r[0].split(" (")[0] for r in rows) == sorted(arms)
    for label, blimp, dev, diff_ci, p, d_z in rows:
        arm = label.split(" (")[0]
        wrong += [f"{arm} BLiMP {blimp}"] * (not mean_sd_agrees(blimp, mean_sd(arms[arm]["blimp"])))
        wrong += [f"{arm} dev {dev}"] * (not mean_sd_agrees(dev, mean_sd(arms[arm]["val_loss"])))
        if arm == "epochs":
            continue
        cmp = vs_epochs[(arm, "blimp")]
        wrong += [f"{arm}: {w}" for w in interval_cell(diff_ci, cmp, p)]
        wrong += [f"{arm}: d_z {d_z} vs {cmp['d_z']:.2f}"] * (not agrees(d_z, cmp["d_z"]))
    for arm, diff_best, p_best, holm_best, diff_epochs, p_epochs, holm_epochs in rows_below(
            FIRST_STUDY / "README.md", "arm | BLiMP − climb_baseline_like")[1]:
        for (diff, p, holm), cmp in (((diff_best, p_best, holm_best), vs_best[(arm, "blimp")]),
                                     ((diff_epochs, p_epochs, holm_epochs), vs_epochs[(arm, "blimp")])):
            adjusted, hurts = re.fullmatch(rf"({NUMBER})( hurts)?", holm.replace("*", "")).groups()
            wrong += [f"{arm}: {w}" for w in interval_cell(diff, cmp, p)]
            wrong += [f"{arm}: Holm p {adjusted} vs {cmp['p_holm']:.4f}"] * (not agrees(adjusted, cmp["p_holm"]))
            wrong += [f"{arm}: 'hurts' at Holm p {cmp['p_holm']:.3f}"] * ((hurts is not None) != (cmp["p_holm"] < 0.05))
    assert not wrong, f"docs/results/lm-study/2026-11-29/README.md: {wrong}"


def untuned_label(cell: str) -> str | None:
    """'EWC (online, λ 100)', 'rehearsal, 10 % of old images ...', '**SRC**' -> the method key; None for a row the
    JSON does not hold (the cross-modal script's Fashion-only control)."""
    name = re.split(r" \(|, ", cell.replace("*", ""), maxsplit=1)[0]
    return LABELS.get(name)


@pytest.mark.parametrize("benchmark,section", [("split_mnist", "Split-MNIST on the 60k/10k set"),
                                               ("cross_modal", "Cross-modal"), ("split_fashion", "Split-Fashion")])
def test_the_src_page_s_untuned_tables_match_their_json(benchmark, section):
    """The Table 1 rows at the authors' settings: mean ± sd, and minus sequential with its interval and p where the
    page prints them."""
    methods = json.loads((SRC / f"{benchmark}.json").read_text())["methods"]
    rows = rows_below(SRC / "README.md", "method | ours, mean ± sd |", section)[1]
    wrong, seen = [], []
    for label, mean_sd, *rest in rows:
        method = untuned_label(label)
        if method is None:
            continue
        seen.append(method)
        row = methods[method]
        wrong += [f"{method}: {mean_sd}"] * (not mean_sd_agrees(mean_sd.replace("*", ""), row["average_accuracy"]))
        diff_cell = rest[-1] if benchmark != "split_mnist" else rest[0]
        if not diff_cell:
            continue
        p_cell = rest[1] if benchmark == "split_mnist" else None   # Split-MNIST's table gives p a column
        wrong += [f"{method}: {w}" for w in interval_cell(diff_cell, row["vs_sequential"], p_cell, whole=False)]
    assert sorted(seen) == sorted(methods), f"{benchmark}: the page's rows {seen} are the table's methods"
    assert not wrong, f"docs/results/src/README.md, {benchmark} at the authors' settings: {wrong}"


def test_the_src_page_s_rehearsal_loss_table_matches_its_json():
    """Rehearsal with 0.75 % stored, both losses: each mean ± sd, and rehearsal + SRC minus rehearsal paired by order
    (recomputed from the per-seed values)."""
    from sleeptrain.experiments.paired import paired_comparison

    wrong = []
    rows = rows_below(SRC / "README.md", "rehearsal loss | rehearsal |")[1]
    assert [r[0].split(" ")[0].strip("`") for r in rows] == ["concat", "weighted"]
    for (label, rehearsal, with_src, diff_cell, _minutes), tag in zip(rows, ("r0075", "r0075w")):
        methods = json.loads((SRC / f"split_mnist-{tag}.json").read_text())["methods"]
        for cell, method in ((rehearsal, "rehearsal"), (with_src, "rehearsal_src")):
            wrong += [f"{tag} {method}: {cell}"] * (not mean_sd_agrees(cell, methods[method]["average_accuracy"]))
        cmp = paired_comparison(methods["rehearsal_src"]["per_seed"], methods["rehearsal"]["per_seed"], True)
        assert "[" in diff_cell and ", p " in diff_cell, f"{tag}: the interval and p are printed ({diff_cell!r})"
        wrong += [f"{tag}: {w}" for w in interval_cell(diff_cell, cmp)]
    assert not wrong, f"docs/results/src/README.md, rehearsal with 0.75 % stored: {wrong}"


def test_the_src_page_s_octave_table_matches_its_json():
    """The authors' MATLAB under Octave against the port, natural task order: each row's means, per-seed values and
    difference (the port's with its bootstrap interval)."""
    from sleeptrain.stats import mean_sd

    octave = json.loads((SRC / "split_mnist-octave.json").read_text())["final"]
    port = json.loads((SRC / "split_mnist-natural.json").read_text())["methods"]
    (_, o_seq, o_src, o_diff, _), (_, p_seq, p_src, p_diff, _) = rows_below(SRC / "README.md", "natural task order |")[1]
    seeds = sorted(octave)
    seq = [octave[k]["sequential_task_mean"] for k in seeds]
    src = [octave[k]["src_task_mean"] for k in seeds]
    gain = [b - a for a, b in zip(seq, src)]
    wrong = [f"octave sequential {o_seq}"] * (not mean_sd_agrees(o_seq, mean_sd(seq)))
    each = lambda values, sign="": " / ".join(f"{v:{sign}.3f}" for v in values)  # noqa: E731
    wrong += [f"octave SRC {o_src}"] * (o_src != f"{mean_sd(src)['mean']:.3f} ± {mean_sd(src)['sd']:.3f} ({each(src)})")
    wrong += [f"octave difference {o_diff}"] * (o_diff != f"{sum(gain) / len(gain):+.3f} ({each(gain, '+')})")
    wrong += [f"port sequential {p_seq}"] * (not mean_sd_agrees(p_seq, port["sequential"]["average_accuracy"]))
    per = port["src"]["per_seed"]
    stats = port["src"]["average_accuracy"]
    wrong += [f"port SRC {p_src}"] * (p_src != f"{stats['mean']:.3f} ± {stats['sd']:.3f} ({min(per):.3f}–{max(per):.3f})")
    cmp = port["src"]["vs_sequential"]
    wrong += [f"port difference {p_diff}"] * (
        p_diff != f"{cmp['mean_diff']:+.3f} [{cmp['ci95'][0]:+.3f}, {cmp['ci95'][1]:+.3f}]")
    assert not wrong, f"docs/results/src/README.md, the Octave check: {wrong}"


def test_the_src_page_s_icarl_savings_table_matches_its_json():
    """Training savings at K = 100: NME mean ± sd per epochs per task, the paired NME difference and its unadjusted p,
    the network accuracies; and the prose's "largest adjusted p" after Holm over the four."""
    from sleeptrain.experiments.paired import adjust_family

    curve = json.loads((SRC / "split_mnist-icarl.json").read_text())["curve"]
    rows = rows_below(SRC / "README.md", "epochs per task | iCaRL, NME |")[1]
    assert [r[0] for r in rows] == list(curve)
    wrong = []
    for epochs, nme, nme_src, diff_cell, net, net_src in rows:
        point = curve[epochs]
        for cell, method in ((nme, "icarl"), (nme_src, "icarl_src")):
            wrong += [f"{epochs} epochs: {cell}"] * (not mean_sd_agrees(cell, point[method]["nme_average_accuracy"]))
        for cell, method in ((net, "icarl"), (net_src, "icarl_src")):
            wrong += [f"{epochs} epochs network: {cell}"] * (not agrees(cell, point[method]["average_accuracy"]["mean"]))
        assert ", p = " in diff_cell, f"{epochs} epochs: the p is printed ({diff_cell!r})"
        wrong += [f"{epochs} epochs: {w}" for w in interval_cell(diff_cell, point["src_minus_icarl_nme"])]
    family = [dict(curve[e]["src_minus_icarl_nme"]) for e in curve]
    adjust_family(family)
    largest = re.search(rf"the largest adjusted p is ({NUMBER})", (SRC / "README.md").read_text()).group(1)
    wrong += [f"largest Holm p {largest}"] * (not agrees(largest, max(c["p_holm"] for c in family)))
    assert not wrong, f"docs/results/src/README.md, iCaRL training savings: {wrong}"


def overlaps(header: str) -> list[str]:
    """'0–9' -> ['0', ..., '9'], '12' -> ['12']."""
    low, _, high = header.partition("\u2013")
    return [str(k) for k in range(int(low), int(high or low) + 1)]


@pytest.mark.parametrize("name,header", [("patches", "overlap | 0–9 |"), ("patches-softmax-script", "overlap | 0–10 |")])
def test_the_src_page_s_patches_tables_match_their_json(name, header):
    """Fig. 1B as a table: each cell the mean accuracy of every overlap its column spans ('sd 0 unless shown'; an
    exception named in the cell, '(0.60 at 0)'); the softmax script's Fig. 1C rows: T1's image-0 input to its own
    neuron / to the best T2 neuron."""
    by_overlap = json.loads((SRC / f"{name}.json").read_text())["by_overlap"]
    head, rows = rows_below(SRC / "README.md", header)
    stages = {"after T1": "after_t1", "after T2": "after_t2", "after SRC": "after_sleep"}
    wrong = []
    for label, *cells in rows:
        for column, cell in zip(head[1:], cells):
            for k in overlaps(column):
                point = by_overlap[k]
                if label in stages:
                    stage = stages[label]
                    m = re.fullmatch(rf"({NUMBER})(?: ± ({NUMBER}))?(?: \(({NUMBER}) at (\d+)\))?", cell)
                    mean, sd, other, at = m.groups()
                    mean = other if at == k else mean
                    sd_ok = agrees(sd, point["sd"][stage]) if sd else point["sd"][stage] < 0.005 or at == k
                    wrong += [f"{label}, overlap {k}: {cell}"] * (not (agrees(mean, point[stage]) and sd_ok))
                elif cell:
                    stage = "after_t2" if label.endswith("after T2") else "after_sleep"
                    own, best = cell.split(" / ")
                    fig = point["fig1c"][stage]
                    wrong += [f"{label}, overlap {k}: {cell}"] * (
                        not (agrees(own, fig["t1_neuron0"]["mean"]) and agrees(best, fig["t2_max"]["mean"])))
    assert not wrong, f"docs/results/src/README.md, {name}: {wrong}"


def test_a_drifted_cell_is_named():
    cmp = {"mean_diff": 0.0344, "p_holm": 0.1665, "mde_family": 0.1015}
    assert difference_cell("+0.034 (0.17; MDE 0.101)", cmp) == []
    assert difference_cell("+0.034 (0.17; MDE 0.093)", cmp) == ["MDE 0.093 vs 0.1015"]
    assert difference_cell("+0.034 (< 0.001)", cmp) == ["p < 0.001 vs 0.1665"]
    assert agrees("\u22120.000", -0.0001) and not agrees("0.51", 0.5151)
    assert gain_cell("\u22120.002, n.s. (MDE after Holm 0.013)", {**cmp, "mean_diff": -0.002, "mde_family": 0.013}) == []
    assert gain_cell("+0.034, n.s.", {**cmp, "p_holm": 0.01}) == ["n.s. vs Holm p 0.01"]
