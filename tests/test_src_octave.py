"""tools/src_octave.py, the cross-check against the SRC authors' MATLAB under Octave: the MNIST file it writes for the
toolbox, the parsing of the driver's lines, its resumable seeds, and its one-line errors (Octave itself is not
needed here)."""
import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import src_octave  # noqa: E402

LOG = """epoch 1/2. Took 12.4 seconds.
RESULT seed 1 sequential 1 0.9991 0.0000 0.0000 0.0000 0.0000 0.2113
RESULT seed 1 wake 1 0.9986 0.0000 0.0000 0.0000 0.0000 0.2112
RESULT seed 1 sleep 1 0.9896 0.1312 0.0181 0.0796 0.0050 0.2563 | 0.97048 2.9626 0.20081 | 186856    1178     642       3
"""


def write_idx(folder: Path, stem: str, images: np.ndarray, labels: np.ndarray) -> None:
    n = len(labels)
    header = np.array([0x803, n, 28, 28], ">i4").tobytes()
    (folder / f"{stem}-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + images.tobytes()))
    (folder / f"{stem}-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(np.array([0x801, n], ">i4").tobytes() + labels.tobytes()))


def test_the_mnist_file_has_the_toolbox_layout(tmp_path):
    from scipy.io import loadmat

    rng = np.random.default_rng(0)
    for stem, n in (("train", 7), ("t10k", 3)):
        write_idx(tmp_path, stem, rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
                  rng.integers(0, 10, n, dtype=np.uint8))
    src_octave.write_idx_mat(tmp_path, tmp_path / "mnist_uint8.mat")
    mat = loadmat(tmp_path / "mnist_uint8.mat")
    assert mat["train_x"].shape == (7, 784) and mat["train_x"].dtype == np.uint8
    assert mat["test_y"].shape == (3, 10) and (mat["test_y"].sum(1) == 1).all()
    labels = np.frombuffer(gzip.open(tmp_path / "train-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
    assert (mat["train_y"].argmax(1) == labels).all()
    images = np.frombuffer(gzip.open(tmp_path / "train-images-idx3-ubyte.gz").read(), np.uint8, offset=16)
    assert (mat["train_x"].reshape(-1) == images).all()


def test_a_missing_idx_file_is_named(tmp_path):
    with pytest.raises(SystemExit, match="train-images-idx3-ubyte.gz is missing \\(the four gzipped idx files"):
        src_octave.write_idx_mat(tmp_path, tmp_path / "m.mat")


def test_the_driver_lines_are_parsed_per_seed_and_stage():
    runs = src_octave.parse(LOG)
    assert set(runs) == {"1"} and set(runs["1"]) == {"sequential", "wake", "sleep"}
    sleep = runs["1"]["sleep"][0]
    assert sleep["after_task"] == 1 and sleep["overall"] == pytest.approx(0.2563)
    assert sleep["per_task"] == pytest.approx([0.9896, 0.1312, 0.0181, 0.0796, 0.0050])
    assert sleep["scale_factors"] == pytest.approx([0.97048, 2.9626, 0.20081])
    assert sleep["spikes"] == [186856, 1178, 642, 3]
    assert "spikes" not in runs["1"]["wake"][0]


def test_missing_octave_or_authors_code_is_one_line(tmp_path):
    tool = [sys.executable, str(REPO / "tools" / "src_octave.py"), "--authors", str(tmp_path), "--mnist",
            str(tmp_path), "--out", str(tmp_path / "out")]
    proc = subprocess.run(tool, capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert ("octave-cli not found" in proc.stderr) or ("has no sleep/sleepnn_old.m" in proc.stderr)


def test_only_finished_seeds_are_summarised():
    runs = src_octave.parse(LOG)
    assert src_octave.final(runs, tasks=5) == {}  # one of five sleeps: not finished
    two = src_octave.parse(LOG + LOG.replace("sequential 1", "sequential 2").replace("sleep 1", "sleep 2"))
    got = src_octave.final(two, tasks=2)["1"]
    assert got["src_overall"] == pytest.approx(0.2563)
    assert got["src_task_mean"] == pytest.approx((0.9896 + 0.1312 + 0.0181 + 0.0796 + 0.0050) / 5)
    assert got["sequential_overall"] == pytest.approx(0.2113)


def test_the_drivers_call_the_authors_functions_with_the_scripts_settings():
    for driver in (src_octave.DRIVER, src_octave.DRIVER_CROSS):
        assert "%NET%" not in driver and "nnsetup([784 1200 1200 10])" in driver
        for call in ("nntrain(", "normalize_nn_data(", "create_masked_input(", "sleepnn_old("):
            assert call in driver
    assert "x = [239.515363 0.032064 0.003344 14.548273 44.560317 38.046326 55.882454]" in src_octave.DRIVER
    assert "sleep_period = numiterations + (ii-1)*numiterations/3" in src_octave.DRIVER
    assert "uint8(x(8)), uint8(x(9))" in src_octave.DRIVER_CROSS
