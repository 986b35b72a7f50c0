"""`sleeptrain` command line. Every error a user can cause ends as one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import errno
import os
import sys

from sleeptrain.errors import SleeptrainError

EXIT_USER_ERROR = 2
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}

TRAIN_DESCRIPTION = """Train a language model with a schedule. With no arguments: the built-in demo (generated
child-directed English, the tiny Llama-style model), a few minutes on a laptop CPU.

examples:
  sleeptrain train
  sleeptrain train data=babylm data.path=../shared/data/corpus-mini model=tiny
  sleeptrain train model=roberta-tiny schedule=epochs schedule.epochs=3 train.max_steps=200
  sleeptrain train model=small train.precision=bf16 run.dir=runs/small seed=1
  sleeptrain train resume=runs/small                  # continue from the newest checkpoint, exactly
  accelerate launch --num_processes 2 -m sleeptrain train model=small   # several processes (DDP)
"""


EVAL_DESCRIPTION = """Evaluate a Hugging Face causal or masked LM folder (from sleeptrain or any save_pretrained):
minimal-pair accuracy (BLiMP format; causal: sentence log-probability with BOS prepended; masked: pseudo-log-
likelihood), ties counted as half a point, and perplexity on a BabyLM-layout split. Scores are float32.

examples:
  sleeptrain eval runs/DEMO/final
  sleeptrain eval runs/RUN/final blimp.path=../shared/data/blimp perplexity.path=../shared/data/corpus-mini
  sleeptrain eval my-roberta blimp.path=pairs/ blimp.method=pll_word_l2r perplexity.enabled=false
  sleeptrain eval runs/RUN/final suite=babylm-full data=evaluation_data     # the BabyLM pipeline's zero-shot tasks,
  sleeptrain eval runs/RUN/chck_1M suite=babylm-fast data=evaluation_data   #   its rules and predictions.json files
"""


CONTINUAL_DESCRIPTION = """Class-incremental learning with Sleep Replay Consolidation (Tadros et al. 2022) and its
baselines. benchmark=patches|split_mnist|split_fashion|cross_modal|features|split_digits picks a preset (network, SGD
and SRC parameters of the authors' script); method=sequential|joint|src|rehearsal|rehearsal_src|ewc|si|owm|icarl|
icarl_src; seeds=N repeats. Writes results.json and plots. With no arguments: Patches with SRC (the paper's Fig. 1B,
under a minute): forgetting from about 10 shared pixels and SRC's recovery.
src=NAME|PATH.yaml replaces the paper's SRC parameters with a fitted set (a search writes best_src.yaml); shipped:
{src_presets}
examples:
  sleeptrain continual benchmark=patches method=src seeds=5
  sleeptrain continual benchmark=split_mnist data_path=../shared/data/mnist method=src seeds=5
  sleeptrain continual benchmark=split_mnist data_path=../shared/data/mnist method=rehearsal_src \\
      src=split_mnist_rehearsal10 seeds=5
  sleeptrain continual                                   # Patches, method=src, one seed
  sleeptrain continual benchmark=split_digits method=sequential   # an untuned toy (scikit-learn digits), for tests
  sleeptrain continual analyse data_path=../shared/data/mnist   # how SRC works: the paper's Figs. 4-6 on 0/1 -> 2/3
"""


COMPARE_DESCRIPTION = """Train several arms (schedules or override sets) x several seeds at one token budget, then
write summary.json and report.md with paired statistics against the first arm. Resumable: re-running the same
command skips finished runs and resumes unfinished ones.

arms: a schedule preset name (epochs, sleep_strict, ...), NAME=overrides (comma-separated group=preset /
key=value), or a .yaml file with `arms:` (and optionally common:, seeds:, budget: {tokens:, natural:}, priority:).
experiment keys: seeds=N (default 3), budget.tokens=T (default: the first arm's natural length, in token positions
= steps x batch x seq_len, replay included), budget.natural=ARM,... (arms kept at their own length, e.g. a
single_pass floor), priority=ARM,... (every seed of these arms before the others), dir=EXP_DIR, parallel=P (runs
at once), verdict.model=final|pre_end_ops (which model of a run the verdicts score). Runs go seed by seed, so a
partial experiment is already paired.
tuning (every arm alike): tune.KEY=[v1,v2,...] (a grid every arm runs), tune.seeds=[0], tune.objective=
final_val_loss|best_val_loss|blimp_overall (dev figures), tune.skip=ARM,...; in a .yaml `tune:` {keys:, seeds:,
objective:, skip:} and per arm {overrides: [...], tune: {KEY: [...]}}. Each arm picks its best on dev, then the seeds
run at each arm's choice (tuning/, tuning.json; the report lists grids, choices and edge choices).
verdicts: test loss (the test split; nothing selects on it) and BLiMP, Holm-adjusted over the report, with the
minimum detectable effect; below 5 seed pairs "underpowered" instead of a verdict.
anything else (group=preset, key=value) is common to every arm.

examples:
  sleeptrain compare single_pass sleep_strict seeds=3 train.max_steps=200
  sleeptrain compare epochs climb_sleep seeds=5 'tune.train.lr=[3e-3,6e-3,1.2e-2]' dir=experiments/tuned
  sleeptrain compare base=schedule=epochs,schedule.epochs=2 strict=schedule=sleep_strict seeds=3 \\
      data=babylm data.path=../shared/data/corpus-mini dir=experiments/strict-vs-epochs
  sleeptrain report experiments/strict-vs-epochs
"""


EXPORT_DESCRIPTION = """Lay out a run's model folders as a model repository the BabyLM organisers expect: DEST
becomes a git repository whose `main` branch holds RUN_DIR/final and whose branches chck_1M, chck_2M, ... hold the
word-count checkpoints (checkpoint.words), history in word order, each with a model card (config, data, words seen,
results, licence). Weights are stored through Git LFS (needs git-lfs; --no-lfs for a plain local repository).
--push REPO_ID uploads the same branches to the Hugging Face Hub with huggingface_hub (a token from
`huggingface-cli login` or HF_TOKEN; no git-lfs needed).

examples:
  sleeptrain export runs/babylm-10m export/babylm-10m --license cc-by-4.0
  sleeptrain export runs/babylm-10m --push my-name/babylm-sleep-10m
"""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)


def build_parser() -> argparse.ArgumentParser:
    from sleeptrain.presets import help_text

    parser = OneLineParser(prog="sleeptrain", description="Sleep-inspired training of neural networks.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", parser_class=OneLineParser)
    train = sub.add_parser("train", help="train a model (no arguments: the demo)", description=TRAIN_DESCRIPTION,
                           epilog=help_text(), formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("overrides", nargs="*", metavar="group=preset|key=value")
    from sleeptrain.evaluate.config import eval_command_schema

    evaluate = sub.add_parser("eval", help="BLiMP-style minimal pairs and perplexity of a model folder",
                              description=EVAL_DESCRIPTION, epilog=help_text(eval_command_schema()),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    evaluate.add_argument("model_dir", metavar="MODEL_DIR")
    evaluate.add_argument("overrides", nargs="*", metavar="key=value")
    from sleeptrain.continual.config import ContinualConfig
    from sleeptrain.continual.runner import src_presets

    shipped = "".join(f"  {name:<26} {text}\n" for name, text in src_presets().items())
    continual = sub.add_parser("continual", help="class-incremental learning with Sleep Replay Consolidation",
                               description=CONTINUAL_DESCRIPTION.format(src_presets=shipped),
                               epilog=help_text(ContinualConfig),
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    continual.add_argument("overrides", nargs="*", metavar="key=value")
    compare = sub.add_parser("compare", help="arms x seeds at an equal token budget, paired statistics, a report",
                             description=COMPARE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    compare.add_argument("words", nargs="+", metavar="ARM|key=value")
    sweep = sub.add_parser("sweep", help="grid or random search over config keys; best config as a preset",
                           description="Grid or random search over config keys described in SPACE.yaml (see "
                                       "docs or `sleeptrain.experiments.sweep`): one run per trial, results table sweep.md, "
                                       "best.yaml preset, importance.png for random sweeps. Keys: trials=N, "
                                       "method=grid|random, objective=final_val_loss|best_val_loss|blimp_overall, "
                                       "dir=EXP_DIR; other key=value are common to every trial.")
    sweep.add_argument("space", metavar="SPACE.yaml")
    sweep.add_argument("overrides", nargs="*", metavar="key=value")
    report = sub.add_parser("report", help="(re)write report.md and summary.json of a compare folder",
                            description="Regenerate summary.json, report.md and plots of a `sleeptrain compare` "
                                        "folder from its runs (finished runs only).")
    report.add_argument("exp_dir", metavar="EXP_DIR")
    export = sub.add_parser("export", help="a run's final/ and chck_<N> model folders as a model repository, a "
                                           "branch each", description=EXPORT_DESCRIPTION,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    export.add_argument("run_dir", metavar="RUN_DIR")
    export.add_argument("dest", metavar="DEST", nargs="?", help="new folder for the git repository (optional with --push)")
    export.add_argument("--push", metavar="REPO_ID", default=None,
                        help="also upload to this Hugging Face model repository (needs a token)")
    export.add_argument("--private", action="store_true", help="with --push: create the repository private")
    export.add_argument("--no-lfs", action="store_true", help="DEST without Git LFS: weights as plain git blobs "
                                                              "(a local repository; the Hub refuses it)")
    export.add_argument("--license", default="unknown", metavar="ID",
                        help="the model card's licence (a Hub licence id, e.g. mit, cc-by-4.0; default: unknown)")
    plot = sub.add_parser("plot", help="plot loss curves of runs, sleep phases shaded",
                          description="Training and validation loss against tokens seen for one or more runs "
                                      "(overlaid), sleep phases shaded.")
    plot.add_argument("runs", nargs="+", metavar="RUN_DIR")
    plot.add_argument("--out", default=None, help="PNG to write (default: RUN_DIR/loss.png for one run, "
                                                  "loss-comparison.png in the current folder for several)")
    plot.add_argument("--title", default=None)
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from sleeptrain.presets import load_config
    from sleeptrain.lm.resume import RunFinished, plan_resume, wants_resume
    from sleeptrain.lm.train import describe, train

    if wants_resume(args.overrides):
        try:
            plan = plan_resume(args.overrides)
        except RunFinished as done:
            print(f"sleeptrain: {done}")
            return 0
        print(f"resuming {plan.run_dir} from {plan.checkpoint.name}"
              + (f" (changed: {', '.join(plan.changed)})" if plan.changed else ""), file=sys.stderr)
        result = train(plan.config, overrides=plan.overrides, resume_from=plan.checkpoint)
    else:
        loaded = load_config(args.overrides)
        result = train(loaded.config, loaded.presets, loaded.overrides)
    if result.main_process:  # one summary for a multi-process run
        print(describe(result))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from sleeptrain.evaluate.config import eval_command_schema
    from sleeptrain.evaluate.harness import describe_results, run_eval
    from sleeptrain.presets import load_overrides

    from sleeptrain.evaluate.task_babylm import expand_suite_words

    opts = load_overrides(eval_command_schema(), expand_suite_words(args.overrides))
    results, out = run_eval(args.model_dir, opts)
    print(describe_results(results))
    print(f"results: {out}")
    return 0


def cmd_continual(args: argparse.Namespace) -> int:
    from sleeptrain.continual.runner import analyse_command, describe, load_continual_config, run_continual

    if args.overrides and args.overrides[0] in ("analyse", "analyze"):
        print(analyse_command(args.overrides[1:]))
        return 0
    results, run_dir = run_continual(load_continual_config(args.overrides))
    print(describe(results, run_dir))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from sleeptrain.experiments.compare import parse_args, run_compare

    run_compare(parse_args(args.words), log=lambda line: print(line, flush=True))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sleeptrain.experiments.sweep import load_space, run_sweep

    run_sweep(load_space(Path(args.space), args.overrides), log=lambda line: print(line, flush=True))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sleeptrain.experiments.report import write_report

    print(write_report(Path(args.exp_dir)))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import re

    from sleeptrain.export import ExportError, export_repository, push

    if args.dest is None and args.push is None:
        raise ExportError("export: give DEST (a new folder for the repository), --push REPO_ID, or both")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", args.license):
        raise ExportError(f"--license: {args.license!r} is not a licence id (lower-case letters, digits, '.', '+', "
                          "'-': e.g. mit, apache-2.0, cc-by-4.0, other)")
    if args.dest is not None:
        branches = export_repository(args.run_dir, args.dest, lfs=not args.no_lfs, license_id=args.license)
        how = "weights as plain git blobs (--no-lfs)" if args.no_lfs else "weights as Git LFS objects"
        print(f"{args.dest}: git repository with branches {', '.join(branches)}, {how}")
    if args.push is not None:
        branches = push(args.run_dir, args.push, private=args.private, license_id=args.license)
        print(f"https://huggingface.co/{args.push}: uploaded {', '.join(branches)}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sleeptrain.lm.loss_plot import plot_runs

    out = args.out or (Path(args.runs[0]) / "loss.png" if len(args.runs) == 1 else Path("loss-comparison.png"))
    print(plot_runs(args.runs, out, args.title))
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    try:  # third-party sleep ops and strategies register before any config is read
        from sleeptrain.sleep.registry import load_plugins

        load_plugins()
    except SleeptrainError as exc:
        print(f"sleeptrain: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        argv = ["--help"]
    args = parser.parse_args(argv)
    if args.version:
        import sleeptrain

        print(sleeptrain.__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 0
    previous = sigterm_as_interrupt()
    try:
        commands = {"train": cmd_train, "eval": cmd_eval, "continual": cmd_continual, "plot": cmd_plot,
                    "compare": cmd_compare, "sweep": cmd_sweep, "report": cmd_report,
                    "export": cmd_export}
        return commands[args.command](args)
    except SleeptrainError as exc:
        print(f"sleeptrain: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_USER_ERROR)
    except OSError as exc:
        if exc.errno not in DISK_ERRORS:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"sleeptrain: error: {exc.strerror}{where}; checkpoints already written are intact (resume with "
              "sleeptrain train resume=RUN_DIR once there is room)", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("sleeptrain: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # safetensors reports a full disk in its own exception type
        if "No space left on device" not in str(exc):
            raise
        print("sleeptrain: error: No space left on device; checkpoints already written are intact (resume with "
              "sleeptrain train resume=RUN_DIR once there is room)", file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)


def sigterm_as_interrupt():
    """SIGTERM (what schedulers and `kill` send) acts as Ctrl-C everywhere: inside training it checkpoints and
    stops (the loop's own handler); elsewhere the command stops with a line saying what was kept."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (library use): leave signals alone
        return None


if __name__ == "__main__":
    raise SystemExit(main())
