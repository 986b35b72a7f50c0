"""All benchmarks: `python -m benchmarks.run` (or `make bench`)."""

from benchmarks import blimp_scorer, replay_selection, src_modes
from sleeptrain.continual.data import split_digits
from benchmarks.common import write_json

if __name__ == "__main__":
    results = {"replay_selection": replay_selection.run([1_000_000, 10_000_000]),
               "blimp_scorer_causal": blimp_scorer.run(None, None, 100, 64, masked=False),
               "blimp_scorer_masked": blimp_scorer.run(None, None, 20, 64, masked=True),
               "src_modes": src_modes.run(split_digits(), [256, 256], 3000, 4, None)}
    print(write_json("all", results))
