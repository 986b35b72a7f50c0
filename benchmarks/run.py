"""All benchmarks: `python -m benchmarks.run` (or `make bench`): a table on stdout, JSON in benchmarks/results/."""

from benchmarks import blimp_scorer, replay_selection, src_modes, train_throughput
from benchmarks.common import write_json
from sleeptrain.continual.data import split_digits


def table(results: dict) -> str:
    lines = ["", "| figure | value |", "|---|---|"]
    for row in results["train_throughput"]["rows"]:
        p = row["precision"]
        lines += [f"| train tok/s, sleeptrain / HF Trainer ({p}) | {row['sleeptrain_tokens_per_s']:,.0f} / "
                  f"{row['hf_trainer_tokens_per_s']:,.0f} = {row['sleeptrain_vs_hf']:.2f} |",
                  f"| sleep_strict overhead vs single_pass ({p}) | {100 * row['sleep_overhead']:.1f} % tok/s, "
                  f"{100 * row['sleep_overhead_steps']:.1f} % steps/s |",
                  f"| MFU ({p}, peak {row['peak_flops'] / 1e9:.0f} GFLOP/s measured) | "
                  f"{100 * row['mfu_sleeptrain']:.1f} % (HF Trainer {100 * row['mfu_hf']:.1f} %) |",
                  f"| fused AdamW vs for-loop ({p}) | {row['fused_adamw_vs_for_loop']:.2f} x |"]
    tt = results["train_throughput"]
    if "bf16_speedup" in tt:
        lines.append(f"| bf16 vs fp32 | {tt['bf16_speedup']:.2f} x, final loss diff {tt['bf16_final_loss_diff']:+.4f} |")
    for row in results["replay_selection"]["rows"]:
        lines.append(f"| replay selection {row['strategy']} at {row['candidates']:.0e} | {row['seconds']:.3f} s |")
    for name in ("blimp_scorer_causal", "blimp_scorer_masked"):
        r = results[name]
        lines.append(f"| {name.replace('_', ' ')}: batched vs naive | {r.get('speedup', float('nan')):.1f} x |")
    s = results["src_modes"]
    lines.append(f"| SRC batched vs faithful (split_digits) | {s.get('speedup', float('nan')):.1f} x |")
    return "\n".join(lines)


if __name__ == "__main__":
    results = {"train_throughput": train_throughput.run("tiny", 80, ["fp32", "bf16"]),
               "replay_selection": replay_selection.run([1_000_000, 10_000_000]),
               "blimp_scorer_causal": blimp_scorer.run(None, None, 100, 64, masked=False),
               "blimp_scorer_masked": blimp_scorer.run(None, None, 20, 64, masked=True),
               "src_modes": src_modes.run(split_digits(), [256, 256], 3000, 4, None)}
    print(table(results))
    print(write_json("all", results))
