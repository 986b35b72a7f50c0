"""Run the SRC authors' own MATLAB code under GNU Octave: the cross-check of the faithful port.

    .venv/bin/python tools/src_octave.py --authors <checkout of tmtadros/SleepReplayConsolidation> \\
        --mnist ../shared/data/mnist --seeds 1,2 --out experiments/src-octave [--json docs/results/src/octave.json]
    .venv/bin/python tools/src_octave.py --benchmark cross_modal --authors ... --mnist ../shared/data/mnist \\
        --fashion ../shared/data/fashion-mnist --seeds 1 --out experiments/src-octave-xm

Needs `octave-cli` (Debian: `apt-get install octave`) and a checkout of the authors' repository (its `.mat` data files
are Git LFS objects, so the data files are rebuilt here from the idx files: `mnist_uint8.mat` (and
`fashionmnist_uint8.mat`) with `train_x` (60000 x 784 uint8), `train_y` (one-hot uint8), `test_x`, `test_y`, as the
DeepLearnToolbox ships them).

The driver it writes is `MNIST/run_class_task_summary.m` as the authors wrote it — the natural task order 0/1, 2/3, ...,
U(-0.01, 0.01) weights, 2 epochs of SGD per task on the first 5000 training images of the task, then
`create_masked_input` / `normalize_nn_data` / `sleepnn_old` on all training images of the tasks seen, with the
script's vector x — calling the authors' unmodified functions from their checkout. Three changes, none to what is
computed: the random generator is seeded per run (`rand('twister', seed)`), the joint ("ideal") net is skipped, and
accuracies are printed per task after every training and every sleep (plus each sleep's scale factors and spike
counts). The per-stage lines are parsed into a JSON beside the port's figures for the same protocol
(`docs/results/src/split_mnist-natural.json`).

`--benchmark cross_modal` runs `CrossModalMNIST/run_cross_modal_summary.m` the same way: all of MNIST, a sleep
(`uint8(6665.96)` = 255 steps), all of Fashion-MNIST, a sleep on MNIST's mean image (255 steps), with the script's x;
beside it true sequential training (MNIST, then Fashion-MNIST, no sleep) from the same initial net — the script's
own "control" is a net trained on Fashion-MNIST only, which this does not repeat (`tools/src_crossmodal_control.py`
does). Accuracies: MNIST's test set, Fashion-MNIST's, and both together.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# the 784-1200-1200-10 net and its training, as every summary script sets them up (seeded per run)
NET = r"""    rand('twister', j); randn('state', j);
    nn = nnsetup([784 1200 1200 10]);
    for i = 2 : nn.n
        nn.W{i - 1} = (rand(nn.size(i), nn.size(i - 1)) - 0.5) * 0.01 * 2;
        nn.vW{i - 1} = zeros(size(nn.W{i-1}));
    end
    nn.activation_function = 'relu'; nn.output ='relu'; nn.learningRate = 0.1;
    nn.momentum = 0.5; nn.dropoutFraction = 0.25; nn.learn_bias = 0;
    opts.numepochs = 2; opts.batchsize = 100;"""

DRIVER = r"""
addpath(genpath(fullfile(AUTHORS, 'dlt_cnn_map_dropout_nobiasnn')));
addpath(genpath(fullfile(AUTHORS, 'utils')));
addpath(genpath(fullfile(AUTHORS, 'sleep')));
load(MAT);
train_x = double(train_x) / 255;
test_x  = double(test_x)  / 255;
train_y = double(train_y);
test_y  = double(test_y);
[tasks, train_y] = create_class_task(train_x, train_y);
[test_tasks, test_y] = create_class_task(test_x, test_y);
function acc = per_task(nn, test_x, test_y, test_tasks)
  labels = nnpredict(nn, test_x); [~, expected] = max(test_y, [], 2);
  acc = zeros(1, 6);
  for k = 1:5
    m = test_tasks == k; acc(k) = mean(labels(m) == expected(m));
  end
  acc(6) = mean(labels == expected);
end
for j = SEEDS
%NET%
    control_nn = nn;
    for ii = 1:5
        indices = find(tasks == ii);
        control_nn = nntrain(control_nn, train_x(indices(1:5000),:), train_y(indices(1:5000),:), opts);
        acc = per_task(control_nn, test_x, test_y, test_tasks);
        printf('RESULT seed %d sequential %d %s\n', j, ii, num2str(acc, '%.4f '));
    end
    x = [239.515363 0.032064 0.003344 14.548273 44.560317 38.046326 55.882454];
    t_opts = struct; t_opts.t_ref = 0.000; t_opts.threshold = 1.0; t_opts.dt = 0.001;
    t_opts.duration = 0.035; t_opts.report_every = 0.001; t_opts.max_rate = x(1);
    sleep_opts.beta = [x(4) x(5) x(6)]; sleep_opts.decay = 0.999; sleep_opts.W_inh = 0.0;
    sleep_opts.normW = 0; sleep_opts.inc = x(2); sleep_opts.dec = x(3); sleep_opts.DC = 0.0;
    alpha_scale = x(7);
    nn_pointer = nn; numiterations = 15000;
    for ii = 1:5
        indices = find(tasks == ii);
        nn1 = nntrain(nn_pointer, train_x(indices(1:5000),:), train_y(indices(1:5000),:), opts);
        printf('RESULT seed %d wake %d %s\n', j, ii, num2str(per_task(nn1, test_x, test_y, test_tasks), '%.4f '));
        indices = find(ismember(tasks, 1:ii));
        sleep_period = numiterations + (ii-1)*numiterations/3;
        sleep_input = create_masked_input(train_x(indices,:), sleep_period, 10);
        [~, norm_constants] = normalize_nn_data(nn1, train_x(indices,:));
        sleep_opts.alpha = norm_constants*alpha_scale;
        Snn = sleepnn_old(nn1, sleep_period, t_opts, sleep_opts, sleep_input');
        nn_pointer = Snn;
        sp = zeros(1, 4); for l = 1:4, sp(l) = sum(Snn.layers{l}.sum_spikes); end
        acc = per_task(Snn, test_x, test_y, test_tasks);
        printf('RESULT seed %d sleep %d %s | %s | %s\n', j, ii, num2str(acc, '%.4f '), ...
               num2str(norm_constants, '%.6g '), num2str(sp));
        fflush(stdout);
    end
end
"""

DRIVER_CROSS = r"""
addpath(genpath(fullfile(AUTHORS, 'dlt_cnn_map_dropout_nobiasnn')));
addpath(genpath(fullfile(AUTHORS, 'utils')));
addpath(genpath(fullfile(AUTHORS, 'sleep')));
load(MAT);
train_x1 = double(train_x) / 255; test_x1 = double(test_x) / 255;
train_y1 = double(train_y); test_y1 = double(test_y);
load(FASHION);
train_x2 = double(train_x) / 255; test_x2 = double(test_x) / 255;
train_y2 = double(train_y); test_y2 = double(test_y);
function acc = both(nn, test_x1, test_y1, test_x2, test_y2)
  [er1, ~] = nntest(nn, test_x1, test_y1); [er2, ~] = nntest(nn, test_x2, test_y2);
  [er, ~] = nntest(nn, [test_x1; test_x2], [test_y1; test_y2]);
  acc = [1 - er1, 1 - er2, 1 - er];
end
for j = SEEDS
%NET%
    seq = nntrain(nn, train_x1, train_y1, opts);
    printf('RESULT seed %d sequential 1 %s\n', j, num2str(both(seq, test_x1, test_y1, test_x2, test_y2), '%.4f '));
    seq = nntrain(seq, train_x2, train_y2, opts);
    printf('RESULT seed %d sequential 2 %s\n', j, num2str(both(seq, test_x1, test_y1, test_x2, test_y2), '%.4f '));
    x = [227.437205 0.050052 0.005592 4.700579 7.750487 7.055086 9.284002 6665.956743 12468.269487];
    t_opts = struct; t_opts.t_ref = 0.000; t_opts.threshold = 1.0; t_opts.dt = 0.001;
    t_opts.duration = 0.035; t_opts.report_every = 0.001; t_opts.max_rate = x(1);
    sleep_opts.beta = [x(4) x(5) x(6)]; sleep_opts.decay = 0.999; sleep_opts.W_inh = 0.0;
    sleep_opts.normW = 0; sleep_opts.inc = x(2); sleep_opts.dec = x(3); sleep_opts.DC = 0.0;
    alpha_scale = x(7);
    lengths = {uint8(x(8)), uint8(x(9))}; train_sets = {train_x1, train_x2}; label_sets = {train_y1, train_y2};
    nn_pointer = nn;
    for ii = 1:2
        nn1 = nntrain(nn_pointer, train_sets{ii}, label_sets{ii}, opts);
        printf('RESULT seed %d wake %d %s\n', j, ii, num2str(both(nn1, test_x1, test_y1, test_x2, test_y2), '%.4f '));
        sleep_input = create_masked_input(train_x1, lengths{ii}, 10);
        [~, norm_constants] = normalize_nn_data(nn1, train_x1);
        sleep_opts.alpha = norm_constants*alpha_scale;
        Snn = sleepnn_old(nn1, lengths{ii}, t_opts, sleep_opts, sleep_input');
        nn_pointer = Snn;
        sp = zeros(1, 4); for l = 1:4, sp(l) = sum(Snn.layers{l}.sum_spikes); end
        acc = both(Snn, test_x1, test_y1, test_x2, test_y2);
        printf('RESULT seed %d sleep %d %s | %s | %s\n', j, ii, num2str(acc, '%.4f '), ...
               num2str(norm_constants, '%.6g '), num2str(sp));
        fflush(stdout);
    end
end
"""

DRIVER, DRIVER_CROSS = DRIVER.replace("%NET%", NET), DRIVER_CROSS.replace("%NET%", NET)

LINE = re.compile(r"^RESULT seed (\d+) (sequential|wake|sleep) (\d) ([^|]+)(?:\| ([^|]+) \| (.+))?$")


def idx(path: Path, offset: int) -> np.ndarray:
    return np.frombuffer(gzip.open(path).read(), np.uint8, offset=offset)


def write_idx_mat(mnist: Path, out: Path) -> None:
    from scipy.io import savemat

    def onehot(y: np.ndarray) -> np.ndarray:
        o = np.zeros((len(y), 10), np.uint8)
        o[np.arange(len(y)), y] = 1
        return o

    names = {"train": "train", "test": "t10k"}
    data = {}
    for split, stem in names.items():
        for kind, offset in (("images-idx3-ubyte", 16), ("labels-idx1-ubyte", 8)):
            path = mnist / f"{stem}-{kind}.gz"
            if not path.exists():
                raise SystemExit(f"{path} is missing (the four gzipped idx files of MNIST / Fashion-MNIST)")
        data[f"{split}_x"] = idx(mnist / f"{stem}-images-idx3-ubyte.gz", 16).reshape(-1, 784)
        data[f"{split}_y"] = onehot(idx(mnist / f"{stem}-labels-idx1-ubyte.gz", 8))
    savemat(out, data)


def parse(text: str) -> dict:
    runs: dict = {}
    for line in text.splitlines():
        m = LINE.match(line.strip())
        if not m:
            continue
        seed, stage, task, accs, alphas, spikes = m.groups()
        values = [float(v) for v in accs.split()]
        row = {"after_task": int(task), "per_task": values[:-1], "overall": values[-1]}
        if stage == "sleep":
            row["scale_factors"] = [float(v) for v in alphas.split()]
            row["spikes"] = [int(v) for v in spikes.split()]
        runs.setdefault(seed, {}).setdefault(stage, []).append(row)
    return runs


def final(runs: dict, tasks: int) -> dict:
    """Per finished seed, after the last stage: accuracy on the whole test set (the authors' figure) and the mean over
    tasks (this project's `average_accuracy`), for sequential training and for SRC."""
    out = {}
    for seed, r in runs.items():
        if len(r.get("sleep", [])) < tasks or len(r.get("sequential", [])) < tasks:
            continue
        out[seed] = {}
        for arm, stage in (("sequential", "sequential"), ("src", "sleep")):
            last = r[stage][-1]
            out[seed][f"{arm}_overall"] = last["overall"]
            out[seed][f"{arm}_task_mean"] = sum(last["per_task"]) / len(last["per_task"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", choices=["split_mnist", "cross_modal"], default="split_mnist")
    parser.add_argument("--authors", type=Path, required=True, help="checkout of tmtadros/SleepReplayConsolidation")
    parser.add_argument("--mnist", type=Path, required=True, help="folder of MNIST's gzipped idx files")
    parser.add_argument("--fashion", type=Path, help="folder of Fashion-MNIST's gzipped idx files (cross_modal)")
    parser.add_argument("--seeds", default="1,2", help="comma-separated seeds of Octave's generator")
    parser.add_argument("--out", type=Path, default=Path("experiments/src-octave"))
    parser.add_argument("--json", type=Path, help="also write the parsed figures here")
    args = parser.parse_args()
    if shutil.which("octave-cli") is None:
        raise SystemExit("octave-cli not found: install GNU Octave (Debian: apt-get install octave)")
    if not (args.authors / "sleep" / "sleepnn_old.m").exists():
        raise SystemExit(f"--authors: {args.authors} has no sleep/sleepnn_old.m (check out "
                         "github.com/tmtadros/SleepReplayConsolidation)")
    cross = args.benchmark == "cross_modal"
    if cross and args.fashion is None:
        raise SystemExit("--fashion: the Fashion-MNIST folder is needed for --benchmark cross_modal")
    seeds = [int(s) for s in args.seeds.split(",")]
    tasks = 2 if cross else 5
    args.out.mkdir(parents=True, exist_ok=True)
    mat, fashion = args.out / "mnist_uint8.mat", args.out / "fashionmnist_uint8.mat"
    if not mat.exists():
        write_idx_mat(args.mnist, mat)
    if cross and not fashion.exists():
        write_idx_mat(args.fashion, fashion)
    log = args.out / "octave.log"
    done = parse(log.read_text()) if log.exists() else {}
    todo = [s for s in seeds if len(done.get(str(s), {}).get("sleep", [])) < tasks]  # resumable: finished seeds stay
    if todo:
        header = (f"AUTHORS = '{args.authors.resolve()}'; MAT = '{mat.resolve()}'; FASHION = '{fashion.resolve()}'; "
                  f"SEEDS = [{' '.join(map(str, todo))}];\n")
        driver = args.out / ("run_cross_modal.m" if cross else "run_natural.m")
        driver.write_text(header + (DRIVER_CROSS if cross else DRIVER))
        start = time.time()
        with log.open("a") as fh:
            proc = subprocess.run(["octave-cli", "--no-gui", "--quiet", str(driver)], stdout=fh,
                                  stderr=subprocess.STDOUT)
        if proc.returncode:  # the finished seeds stay in the log; a rerun continues with the others
            raise SystemExit(f"octave-cli exited with {proc.returncode}: see {log}")
        print(f"octave: seeds {todo} in {time.time() - start:.0f} s", file=sys.stderr)
    runs = parse(log.read_text())
    protocol = ("CrossModalMNIST/run_cross_modal_summary.m (true sequential training beside it)" if cross else
                "MNIST/run_class_task_summary.m, natural task order")
    summary = {"protocol": protocol + ", the authors' functions under GNU Octave",
               "command": "tools/src_octave.py " + " ".join(sys.argv[1:]), "runs": runs,
               "final": final(runs, tasks)}
    text = json.dumps(summary, indent=1)
    (args.out / "octave.json").write_text(text)
    if args.json:
        args.json.write_text(text + "\n")
    for seed, r in summary["final"].items():
        print(f"seed {seed}: sequential {r['sequential_overall']:.4f} (task mean {r['sequential_task_mean']:.4f}), "
              f"SRC {r['src_overall']:.4f} (task mean {r['src_task_mean']:.4f})")


if __name__ == "__main__":
    main()
