"""End-to-end: tiny runs into tmp_path, through the CLI as a user runs them."""

import json
import shutil
import subprocess
import sys

import pytest

from conftest import TINY_RUN, run_cli
from sleeptrain.lm.metrics_log import read_metrics
from sleeptrain.presets import load_config
import sleeptrain.lm.loop as loop_module
from sleeptrain.lm.train import train


def tiny_config(run_dir, *extra):
    return load_config([*TINY_RUN, "schedule=single_pass", "run.plot=false", f"run.dir={run_dir}", *extra]).config


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    result = run_cli("train", *TINY_RUN, "schedule=single_pass", f"run.dir={run_dir}", "train.max_steps=40", "checkpoint.every=20",
                     "checkpoint.keep=1", "checkpoint.phase_boundaries=false")
    assert result.returncode == 0, result.stderr
    return run_dir, result


def test_tiny_run_writes_everything(tiny_run):
    run_dir, result = tiny_run
    for name in ("config.yaml", "run.json", "metrics.jsonl", "summary.json", "final/config.json",
                 "final/model.safetensors", "final/tokenizer.json", "minimal_pairs"):
        assert (run_dir / name).exists(), name
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["step-00000040"]
    assert "validation loss" in result.stdout and str(run_dir / "final") in result.stdout
    run_info = json.loads((run_dir / "run.json").read_text())
    assert run_info["presets"] == {"data": "demo", "model": "tiny", "schedule": "single_pass"}
    assert (run_dir / "loss.png").exists()
    assert "torch" in run_info and "code_version" in run_info


def test_metrics_records_have_the_promised_fields(tiny_run):
    records = read_metrics(tiny_run[0] / "metrics.jsonl")
    train_records = [r for r in records if r["event"] == "train"]
    evals = [r for r in records if r["event"] == "eval"]
    assert len(train_records) == 20
    for r in train_records:
        assert {"step", "loss", "lr", "tokens", "tokens_per_s"} <= set(r)
    assert [r["step"] for r in evals] == [0, 10, 20, 30, 40]
    assert all("val_loss" in r for r in evals)
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 1.0
    tokens = [r["tokens"] for r in train_records]
    assert tokens == sorted(tokens)


def test_final_model_loads_and_generates_in_a_new_process(tiny_run):
    final = tiny_run[0] / "final"
    code = f"""
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained({str(final)!r})
tok = AutoTokenizer.from_pretrained({str(final)!r})
ids = tok("the dog", return_tensors="pt")["input_ids"]  # <s> the dog: no </s>, so generation continues it
assert ids[0, -1].item() != tok.eos_token_id
out = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
assert out.shape[1] > ids.shape[1]
print(tok.decode(out[0], skip_special_tokens=True))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("the dog")


def test_same_seed_gives_identical_losses(tmp_path):
    losses = []
    for name in ("a", "b"):
        train(tiny_config(tmp_path / name, "train.max_steps=12", "model.dropout=0.1"))
        losses.append([(r["step"], r.get("loss"), r.get("val_loss")) for r in read_metrics(tmp_path / name /
                                                                                            "metrics.jsonl")
                       if r["event"] in ("train", "eval")])
    assert losses[0] == losses[1]
    train(tiny_config(tmp_path / "c", "train.max_steps=12", "model.dropout=0.1", "seed=1"))
    other = [r.get("loss") for r in read_metrics(tmp_path / "c" / "metrics.jsonl") if r["event"] == "train"]
    assert other != [loss for _, loss, _ in losses[0] if loss is not None]


@pytest.mark.parametrize("schedule,extra", [("sleep_weighted", []),  # replay in new contexts
                                             ("sleep_strict", ["replay.context_augment=false"]),
                                             ("roberta", ["model=roberta-tiny", "model.hidden_size=32",
                                                          "model.num_heads=2", "model.intermediate_size=64"])])
def test_prefetching_changes_nothing(tmp_path, schedule, extra):
    """Batches gathered on the background thread: the same batches in the same order, the same RNG use (MLM
    masking stays on the loop's thread) -> bit-identical weights."""
    import torch
    from safetensors.torch import load_file

    weights = []
    for prefetch in ("true", "false"):
        plan = ["schedule=single_pass"] if schedule == "roberta" else [f"schedule={schedule}", "schedule.n_cycles=2"]
        cfg = load_config([*TINY_RUN, *plan, "run.plot=false",
                           "train.max_steps=16", "train.eval_every=0", "eval.final=false", *extra,
                           f"train.prefetch={prefetch}", f"run.dir={tmp_path / prefetch}"]).config
        weights.append(load_file(str(train(cfg).final_dir / "model.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_prefetched_keeps_order_and_surfaces_errors():
    from sleeptrain.lm.prefetch import prefetched

    assert list(prefetched(lambda i: i * i, range(5))) == [0, 1, 4, 9, 16]
    assert list(prefetched(lambda i: i, [], enabled=True)) == []

    def load(i):
        if i == 2:
            raise ValueError("bad batch 2")
        return i

    got = []
    with pytest.raises(ValueError, match="bad batch 2"):
        for value in prefetched(load, range(4)):
            got.append(value)
    assert got == [0, 1]


@pytest.mark.parametrize("preset,hf_class", [("roberta-tiny", "RobertaForMaskedLM"),
                                             ("roberta-pln-tiny", "RobertaPreLayerNormForMaskedLM")])
def test_masked_lm_run_loads_with_auto_masked_lm(tmp_path, preset, hf_class):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from sleeptrain.evaluate.harness import load_model_folder
    from sleeptrain.evaluate.task_perplexity import default_seq_len
    from sleeptrain.evaluate.tasks import TaskContext

    cfg = tiny_config(tmp_path / "mlm", f"model={preset}", "model.hidden_size=32", "model.num_heads=2",
                      "model.intermediate_size=64", "model.num_layers=2", "train.max_steps=20")
    result = train(cfg)
    assert result.final_val_loss < result.first_val_loss
    model = AutoModelForMaskedLM.from_pretrained(str(result.final_dir))
    assert type(model).__name__ == hf_class
    alone = tmp_path / "exported" / "model"  # a folder away from its run: `sleeptrain eval` reads only the folder
    shutil.copytree(result.final_dir, alone)
    loaded = load_model_folder(alone)
    assert loaded.masked  # scored by pseudo-log-likelihood
    # positions start after the padding index
    assert default_seq_len(loaded, TaskContext(None, alone)) == cfg.data.seq_len
    tok = AutoTokenizer.from_pretrained(str(result.final_dir))
    enc = tok("the dog <mask> .", return_tensors="pt")
    assert model(**enc).logits.shape[-1] == len(tok)


@pytest.mark.parametrize("extra", [["model=gpt2-tiny", "model.hidden_size=32", "model.num_heads=2",
                                    "model.intermediate_size=64"],
                                   ["data.packing=windows", "train.micro_batch_size=8", "train.precision=bf16"],
                                   ["schedule=epochs", "schedule.epochs=2"]])
def test_other_models_and_options_train(tmp_path, extra):
    result = train(tiny_config(tmp_path / "r", "train.max_steps=16", *extra))
    assert result.steps == 16 and result.final_val_loss < result.first_val_loss


# --- errors a user can cause: one line, exit 2, nothing lost --------------------------------------------------

@pytest.mark.parametrize("args,expected", [
    (["train.lrr=0.1"], "train.lrr: unknown key; did you mean 'train.lr'?"),
    (["train.batch_size=many"], "train.batch_size: expected int"),
    (["data=babylm", "data.path=/nonexistent/corpus"], "data.path: folder '/nonexistent/corpus' does not exist"),
])
def test_cli_errors_are_one_line_without_traceback(tmp_path, args, expected):
    result = run_cli("train", *args, f"run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_bad_blimp_path_fails_before_training(tmp_path):
    result = run_cli("train", *TINY_RUN, f"eval.blimp_path={tmp_path / 'nope'}", f"run.dir={tmp_path / 'run'}")
    assert result.returncode == 2 and "eval.blimp_path:" in result.stderr and "does not exist" in result.stderr
    assert not (tmp_path / "run").exists()


def test_empty_data_directory_is_one_line(tmp_path):
    (tmp_path / "corpus" / "train").mkdir(parents=True)
    (tmp_path / "corpus" / "train" / "a.train").write_text("\n\n")
    result = run_cli("train", "data=babylm", f"data.path={tmp_path / 'corpus'}", f"run.dir={tmp_path / 'run'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "data.path: the training files in" in result.stderr and "are empty" in result.stderr


def test_an_existing_run_is_never_overwritten(tiny_run):
    run_dir, _ = tiny_run
    before = (run_dir / "metrics.jsonl").read_bytes()
    result = run_cli("train", *TINY_RUN, f"run.dir={run_dir}")
    assert result.returncode == 2 and "already holds a run" in result.stderr
    assert (run_dir / "metrics.jsonl").read_bytes() == before


def test_help_lists_groups_presets_and_keys():
    result = run_cli("train", "--help")
    assert result.returncode == 0
    for word in ("model=", "data=", "schedule=", "roberta-tiny", "train.max_steps", "run.dir", "seed"):
        assert word in result.stdout


@pytest.mark.shared
@pytest.mark.parametrize("model,auto", [("tiny", "AutoModelForCausalLM"), ("roberta-tiny", "AutoModelForMaskedLM")])
def test_trains_on_corpus_mini(shared_data, tmp_path, model, auto):
    run_dir = tmp_path / "mini"
    result = run_cli("train", "data=babylm", f"data.path={shared_data / 'corpus-mini'}", f"model={model}",
                     "schedule=single_pass", "train.max_steps=6", "train.eval_max_batches=4", "eval.final=false",
                     "run.progress=false", f"run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    start = read_metrics(run_dir / "metrics.jsonl")[0]
    assert start["train_tokens"] > 1_000_000 and "corpus-mini" in start["corpus"]
    code = (f"import transformers; m = transformers.{auto}.from_pretrained({str(run_dir / 'final')!r}); "
            f"t = transformers.AutoTokenizer.from_pretrained({str(run_dir / 'final')!r}); "
            "print(type(m).__name__, m(**t('the dog', return_tensors='pt')).logits.shape[-1] == len(t))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip().endswith("True")


def test_compile_is_warmed_on_every_batch_shape_and_never_recompiles_mid_run(tmp_path):
    import torch._dynamo

    from sleeptrain.lm.metrics_log import read_metrics

    torch._dynamo.reset()
    cfg = load_config([*TINY_RUN, f"run.dir={tmp_path / 'run'}", "schedule=sleep", "schedule.n_cycles=2",
                       "data.generated.train_sentences=1000",  # 30 steps; wake folds of 178, 177: shapes 16, 2, 1
                       "train.compile=true", "train.precision=bf16",  # bf16: autocast state is part of the guards
                       "run.plot=false", "eval.final=false", "train.eval_every=0"]).config
    counts = {}
    real_warm = loop_module.TrainingLoop.warm_compiled

    def warm_and_count(self):
        real_warm(self)
        counts["after_warm"] = torch._dynamo.utils.counters["stats"]["unique_graphs"]

    loop_module.TrainingLoop.warm_compiled = warm_and_count
    try:
        result = train(cfg)
    finally:
        loop_module.TrainingLoop.warm_compiled = real_warm
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    compiled = [r for r in records if r["event"] == "compile"]
    assert len(compiled) == 1 and len(compiled[0]["batch_shapes"]) >= 2  # full batches and a fold remainder
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == counts["after_warm"]
    assert result.final_val_loss < result.first_val_loss


def test_help_shows_the_defaults_a_bare_train_uses():
    from sleeptrain.presets import flat_config, help_text, load_config

    bare = flat_config(load_config([]).config)
    text = help_text()
    assert f"train.lr                       float      default {bare['train.lr']!r}" in text
    assert f"schedule.n_cycles              int        default {bare['schedule.n_cycles']!r}" in text
    assert "what a bare `sleeptrain train` uses (data=demo model=tiny schedule=sleep)" in text


def test_precision_auto_is_measured_logged_and_kept_on_resume(monkeypatch):
    import sleeptrain.lm.precision as precision

    monkeypatch.setattr(precision, "cpu_matmul_probe", lambda size=512: {"fp32": 100.0, "bf16": 400.0})
    chosen, why = precision.resolve_precision("auto", on_cuda=False)
    assert chosen == "bf16" and "bf16 400.0 GFLOP/s, fp32 100.0 GFLOP/s" in why
    monkeypatch.setattr(precision, "cpu_matmul_probe", lambda size=512: {"fp32": 100.0, "bf16": 120.0})
    assert precision.resolve_precision("auto", on_cuda=False)[0] == "fp32"   # no clear margin: fp32
    monkeypatch.setattr(precision, "cpu_matmul_probe", lambda size=512: {"fp32": 100.0, "bf16": 1.0})
    assert precision.resolve_precision("auto", on_cuda=False)[0] == "fp32"
    chosen, why = precision.resolve_precision("bf16", on_cuda=False)
    assert chosen == "bf16" and why.startswith("warning") and "100.0x slower" in why
    assert precision.resolve_precision("auto", on_cuda=False, resumed="bf16")[0] == "bf16"
    assert precision.resolve_precision("fp32", on_cuda=False)[0] == "fp32"


def test_precision_probe_keeps_each_precisions_fastest_call_under_a_burst_of_load(monkeypatch):
    """A burst of other work slowing the first calls must not flip the choice: here bf16 is 2x slower than fp32,
    and the first 6 matmuls (all fp32 in a probe that times one precision after the other) are slowed 50x."""
    import torch

    import sleeptrain.lm.precision as precision

    clock = {"t": 0.0, "calls": 0}

    def matmul(a, b):
        clock["calls"] += 1
        clock["t"] += (0.001 if a.dtype == torch.float32 else 0.002) + (0.05 if clock["calls"] <= 6 else 0.0)
        return a

    monkeypatch.setattr(precision.time, "perf_counter", lambda: clock["t"])
    monkeypatch.setattr(torch.Tensor, "__matmul__", matmul)
    probe = precision.cpu_matmul_probe.__wrapped__(size=8)
    assert probe["fp32"] == pytest.approx(2 * 8 ** 3 / 0.001 / 1e9)
    assert probe["bf16"] == pytest.approx(2 * 8 ** 3 / 0.002 / 1e9)
    assert clock["calls"] >= 2 + 2 * precision.PROBE_MIN_ROUNDS  # warm-ups, then alternating rounds


def test_an_auto_run_records_its_precision(tmp_path):
    import json

    run_dir = tmp_path / "run"
    result = run_cli("train", *[w for w in TINY_RUN if not w.startswith("train.precision")], "train.max_steps=4",
                     "eval.final=false", f"run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    start = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert start["precision"] in ("bf16", "fp32") and "train.precision=auto ->" in start["precision_note"]
    assert "note: train.precision=auto ->" in result.stderr
    state = json.loads(next((run_dir / "checkpoints").glob("step-*/trainer_state.json")).read_text())
    assert state["precision"] == start["precision"]
    # train.attention=auto follows the precision on a CPU (eager under bf16), and a checkpoint keeps the choice
    assert start["attention"] == ("eager" if start["precision"] == "bf16" else "sdpa") == state["attention"]
    assert start["attention_note"].startswith(f"train.attention=auto -> {start['attention']}")


def test_attention_auto_takes_eager_only_on_a_cpu_under_bf16_and_a_resume_keeps_the_choice():
    from sleeptrain.lm.attention import resolve_attention

    assert resolve_attention("auto", "bf16", on_cuda=False)[0] == "eager"
    assert resolve_attention("auto", "fp32", on_cuda=False) == ("sdpa", "train.attention=auto -> sdpa (CPU, fp32)")
    assert resolve_attention("auto", "bf16", on_cuda=True)[0] == "sdpa"
    assert resolve_attention("eager", "fp32", on_cuda=True) == ("eager", "train.attention=eager (as set)")
    # a run resumed on a bf16 CPU keeps what it started with (a checkpoint from before the choice existed: sdpa)
    assert resolve_attention("auto", "bf16", on_cuda=False, resumed="sdpa")[0] == "sdpa"
    with pytest.raises(Exception, match="train.attention: 'flash' is not allowed; choose one of auto, sdpa, eager"):
        load_config(["train.attention=flash"])


def test_an_eager_attention_run_trains_and_its_model_folder_loads_with_the_default_kernel(tmp_path):
    from transformers import AutoModelForCausalLM

    cfg = load_config([*TINY_RUN, "train.max_steps=4", "eval.final=false", "train.attention=eager",
                       f"run.dir={tmp_path / 'run'}"]).config
    result = train(cfg)
    assert result.final_val_loss < result.first_val_loss
    assert read_metrics(tmp_path / "run" / "metrics.jsonl")[0]["attention"] == "eager"
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "final")
    assert loaded.config._attn_implementation == "sdpa"  # the kernel is a training setting, not saved


def test_compile_auto_compiles_long_cpu_runs_with_a_compiler_only(monkeypatch):
    import sleeptrain.lm.compiling as compiling

    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(compiling.shutil, "which", lambda name: f"/usr/bin/{name}" if name == "g++" else None)
    assert compiling.resolve_compile("auto", 999, on_cuda=False) == (
        False, "train.compile=auto -> false (999 steps: below 1000, the compile warm-up would not pay back)")
    chosen, why = compiling.resolve_compile("auto", 1000, on_cuda=False)
    assert chosen and "C++ compiler /usr/bin/g++" in why
    assert compiling.resolve_compile("auto", 5000, on_cuda=True)[0] is False      # not measured on GPUs
    assert compiling.resolve_compile("true", 10, on_cuda=True)[0] is True         # explicit: as set
    assert compiling.resolve_compile("false", 10 ** 6, on_cuda=False)[0] is False
    assert compiling.resolve_compile("auto", 10, on_cuda=False, resumed=True)[0] is True   # a resume keeps it
    assert compiling.resolve_compile("auto", 10 ** 6, on_cuda=False, resumed=False)[0] is False
    monkeypatch.setattr(compiling.shutil, "which", lambda name: None)
    chosen, why = compiling.resolve_compile("auto", 10 ** 6, on_cuda=False)
    assert not chosen and "no C++ compiler" in why
    monkeypatch.setenv("CXX", "my-cxx")
    monkeypatch.setattr(compiling.shutil, "which", lambda name: "/opt/my-cxx" if name == "my-cxx" else None)
    assert compiling.cxx_compiler() == "/opt/my-cxx"
    with pytest.raises(Exception, match="train.compile: 'maybe' is not allowed; choose one of auto, true, false"):
        load_config(["train.compile=maybe"])
    assert load_config(["train.compile=True"]).config.train.compile == "true"   # YAML booleans still work


@pytest.mark.parametrize("requested", ["auto", "true"])
def test_a_failing_compile_falls_back_to_eager_under_auto_and_stops_clearly_when_asked(tmp_path, monkeypatch,
                                                                                        requested):
    """`auto` (here made to compile a short run) trains on eagerly when torch.compile fails, saying so once; an
    explicit `true` stops with a one-line error naming the field."""
    import sleeptrain.lm.compiling as compiling
    from sleeptrain.errors import ConfigError

    monkeypatch.setattr(compiling, "AUTO_MIN_STEPS", 1)
    monkeypatch.setattr(compiling, "cxx_compiler", lambda: "/usr/bin/g++")

    def broken(*args, **kwargs):
        raise RuntimeError("InductorError: no working C++ toolchain\nlong details")

    import sleeptrain.lm.warmup as warmup

    monkeypatch.setattr(warmup, "warm_compiled", broken)
    cfg = load_config([*TINY_RUN, "train.max_steps=6", "eval.final=false", f"train.compile={requested}",
                       f"run.dir={tmp_path / 'run'}"]).config
    if requested == "true":
        with pytest.raises(ConfigError, match=r"train.compile: torch.compile failed \(RuntimeError: InductorError: "
                                              r"no working C\+\+ toolchain\); use train.compile=false"):
            train(cfg)
        return
    result = train(cfg)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert records[0]["compiled"] is True and "train.compile=auto -> true" in records[0]["compile_note"]
    failed = [r for r in records if r["event"] == "compile_failed"]
    assert len(failed) == 1 and failed[0]["reason"] == "RuntimeError: InductorError: no working C++ toolchain"
    assert result.final_val_loss < result.first_val_loss  # trained eagerly to the end
    state = json.loads(next((tmp_path / "run" / "checkpoints").glob("step-*/trainer_state.json")).read_text())
    assert state["compiled"] is False  # a resume continues eager
