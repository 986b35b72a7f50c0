"""Training throughput: sleeptrain vs a plain `transformers.Trainer` loop, sleep overhead, and MFU.

    python -m benchmarks.train_throughput [--model tiny] [--steps 60] [--precisions fp32 bf16] [--compile]
        [--device auto|cpu|cuda] [--set KEY=VALUE ...]

On a GPU (`--device auto` takes CUDA when one is visible), e.g. the small and base models in bf16:

    python -m benchmarks.train_throughput --model small --steps 200 --precisions bf16 --compile
    python -m benchmarks.train_throughput --model base --steps 200 --precisions bf16 --compile

Every figure comes from this process, on the same model config, data (the built-in generated corpus), batch size,
sequence length and precision:
- sleeptrain: tokens/s from `metrics.jsonl` training intervals after the first (warm-up) interval;
- HF Trainer: the same model built the same way, the same packed samples, `Trainer` with AdamW, one process,
  tokens/s from step timestamps after the same warm-up;
- with --compile, both again under torch.compile (`train.compile=true`; `TrainingArguments(torch_compile=True)`),
  compile time outside the measured interval;
- sleep overhead: a `sleep_strict` run (per-sample scores, top-k selection, re-packing into new contexts) vs a
  `single_pass` run with the same number of steps; overhead = 1 - ratio;
- peak memory of every run, from loading the data to the last step: each run is a fresh process (spawned; the
  tokens/s are measured inside it), so no run's figure carries what an earlier one left in the allocator, its
  compiled graphs or its caches; on CUDA `torch.cuda.max_memory_allocated` above the allocation at the start, on CPU
  the process's resident set, sampled every 10 ms, above what it held at the start (after the imports);
- both loops run on the same device: `--device cpu` forces the CPU for both (`train.device=cpu`,
  `TrainingArguments(use_cpu=True)`), CUDA otherwise when present; `--set` overrides go to both loops (batch size,
  sequence length, micro-batches: the Trainer gets the same per-device batch and gradient accumulation);
- MFU = model FLOPs per token x tokens/s / peak FLOP/s. FLOPs per token = 6 N + 6 L T d (N = every matmul weight:
  non-embedding parameters plus the output projection V x d; the second term is the attention score and value
  products, QK^T and AV, forward 2 L T d each -> x3 for backward, causal masking not discounted). The peak is
  measured here with a 2048^3 matmul (8192^3 on CUDA) in the same precision, on the device the loops run on.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import tempfile
import threading
import time
from pathlib import Path

import torch

from benchmarks.common import write_json
from sleeptrain.lm.attention import resolve_attention
from sleeptrain.lm.metrics_log import read_metrics

BENCH_DATA = ["train.compile=false", "data.generated.train_sentences=60000", "run.progress=false", "run.plot=false",
              "eval.final=false", "train.eval_every=0", "checkpoint.every=0", "checkpoint.phase_boundaries=false", "train.log_every=10"]


def resolve_device(device: str) -> str:
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device: cuda was asked for but no GPU is visible (use auto or cpu)")
    if device not in ("auto", "cpu", "cuda"):
        raise SystemExit(f"--device: {device!r} is not one of auto, cpu, cuda")
    return "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)


def run_device(cfg) -> str:
    """Where a run with this config trains: `train.device=cpu` keeps it on the CPU, CUDA otherwise when present."""
    return "cuda" if cfg.train.device != "cpu" and torch.cuda.is_available() else "cpu"


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def peak_flops(dtype: torch.dtype, device: str = "cpu", repeats: int = 5) -> float:
    n = 8192 if device == "cuda" else 2048
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    a @ b  # warm-up
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best


@contextlib.contextmanager
def peak_memory(device: str):
    """Yields a dict that holds `peak_memory_mib` once the block ends (see the module docstring for what it is)."""
    out: dict = {}
    if device == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        yield out
        sync(device)
        out["peak_memory_mib"] = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
        return
    import psutil  # a dependency of accelerate

    proc, stop, peak = psutil.Process(), threading.Event(), [0]
    base = proc.memory_info().rss

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            stop.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield out
    finally:
        stop.set()
        sampler.join()
        out["peak_memory_mib"] = max(0, max(peak[0], proc.memory_info().rss) - base) / 2 ** 20


def flops_per_token(model: torch.nn.Module, seq_len: int) -> float:
    cfg = model.config
    d, layers = cfg.hidden_size, cfg.num_hidden_layers
    matmul_weights = sum(p.numel() for n, p in model.named_parameters()
                         if p.ndim == 2 and "embed" not in n and "wte" not in n and "wpe" not in n)
    if getattr(cfg, "tie_word_embeddings", False) or not any("lm_head" in n for n, _ in model.named_parameters()):
        matmul_weights += cfg.vocab_size * d  # the tied output projection still does its matmul
    return 6 * matmul_weights + 6 * layers * seq_len * d


def isolated(fn, *args, **kwargs):
    """`fn(*args, **kwargs)` in a fresh spawned process, its result returned (see the module docstring)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args, kwargs)


def in_process(fn, *args, **kwargs):
    return fn(*args, **kwargs)


def sleeptrain_run(overrides: list[str], run_dir: Path, bench_data: list[str] | None = None) -> dict:
    from sleeptrain.presets import load_config
    from sleeptrain.lm.train import train

    cfg = load_config([*(BENCH_DATA if bench_data is None else bench_data), *overrides, f"run.dir={run_dir}"]).config
    device = run_device(cfg)
    start = time.perf_counter()
    with peak_memory(device) as mem:
        result = train(cfg)
    wall = time.perf_counter() - start
    records = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["event"] == "train"]
    # intervals after the first (warm-up): tokens between consecutive records, at each record's measured rate
    tokens = [b["tokens"] - a["tokens"] for a, b in zip(records, records[1:])]
    seconds = sum(t / r["tokens_per_s"] for t, r in zip(tokens, records[1:]))
    steps = records[-1]["step"] - records[0]["step"]
    return {"tokens_per_s": sum(tokens) / seconds, "steps_per_s": steps / seconds, "steps": result.steps,
            "wall_s": wall, "final_loss": records[-1]["loss"], **mem}


def trainer_inputs(cfg, attention: str | None):
    """The model, the packed training samples as a Dataset and the collator, built as sleeptrain builds them."""
    from sleeptrain.data.corpus import load_corpus
    from sleeptrain.data.samples import make_batcher, make_samples
    from sleeptrain.data.token_store import get_token_stores
    from sleeptrain.data.tokenizer import get_tokenizer
    from sleeptrain.lm.models import build_model, special_token_ids

    corpus = load_corpus(cfg.data)
    tokenizer = get_tokenizer(cfg.tokenizer, corpus, cfg.data)
    store = get_token_stores(corpus, tokenizer, cfg.data)["train"]
    samples = make_samples(store, cfg.data.seq_len, tokenizer.pad_token_id)
    batcher = make_batcher(tokenizer, False)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, len(tokenizer), cfg.data.seq_len, special_token_ids(tokenizer))
    if attention is not None:
        model.set_attn_implementation(attention)

    class Samples(torch.utils.data.Dataset):
        def __len__(self):
            return len(samples)

        def __getitem__(self, i):
            ids, mask = samples.get([i])
            return {"input_ids": ids[0], "attention_mask": mask[0]}

    def collate(rows):
        return batcher(torch.stack([r["input_ids"] for r in rows]), torch.stack([r["attention_mask"] for r in rows]))

    return model, Samples(), collate


def hf_trainer_run(overrides: list[str], steps: int, precision: str, run_dir: Path, compile: bool = False,
                   attention: str | None = None, bench_data: list[str] | None = None) -> dict:
    """The same model and packed samples through `transformers.Trainer` (its default attention kernel, SDPA, unless
    `attention` names another: the like-with-like comparison of the two loops), on the device `train.device` and
    CUDA's presence give sleeptrain, with the same per-device batch and gradient accumulation."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from sleeptrain.presets import load_config

    cfg = load_config([*(BENCH_DATA if bench_data is None else bench_data), *overrides]).config
    tc = cfg.train
    device = run_device(cfg)
    stamps: list[float] = []
    warm = tc.log_every  # the same warm-up as the sleeptrain figure (its first log interval)

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (warm, steps):  # CUDA runs ahead of the host: wait at the measured ends only
                sync(device)
            stamps.append(time.perf_counter())

    with contextlib.ExitStack() as measure:  # peak memory from the data on, as sleeptrain_run measures train()
        mem = measure.enter_context(peak_memory(device))
        model, dataset, collate = trainer_inputs(cfg, attention)
        micro = tc.micro_batch_size or tc.batch_size
        args = TrainingArguments(output_dir=str(run_dir), per_device_train_batch_size=micro,
                                 gradient_accumulation_steps=tc.batch_size // micro, max_steps=steps,
                                 learning_rate=tc.lr, weight_decay=tc.weight_decay, adam_beta1=tc.beta1,
                                 adam_beta2=tc.beta2, max_grad_norm=tc.clip_grad or 0.0,
                                 warmup_steps=tc.warmup_steps, lr_scheduler_type="cosine", bf16=precision == "bf16",
                                 use_cpu=device == "cpu", report_to=[], save_strategy="no",
                                 logging_steps=tc.log_every, dataloader_num_workers=0,
                                 disable_tqdm=True, seed=cfg.seed, optim="adamw_torch", torch_compile=compile)
        trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collate, callbacks=[Clock()])
        start = time.perf_counter()
        trainer.train()
    wall = time.perf_counter() - start
    tokens_per_step = tc.batch_size * cfg.data.seq_len  # packed blocks: every row is full but the last
    seconds = stamps[-1] - stamps[warm - 1]
    return {"tokens_per_s": tokens_per_step * (len(stamps) - warm) / seconds, "steps": len(stamps), "wall_s": wall,
            "flops_per_token": flops_per_token(model, cfg.data.seq_len), **mem}


def best(runs: list[dict]) -> dict:
    """The fastest of repeated runs: the one least disturbed by other load on the machine."""
    return max(runs, key=lambda r: r["tokens_per_s"])


def measure(call, over: list[str], steps: int, precision: str, tmp: Path, repeats: int, compile: bool,
            kernel: str, data: list[str]) -> dict[str, list[dict]]:
    """Every variant `repeats` times, interleaved, so slow phases of the machine hit every variant alike."""
    sleep_schedule = ["schedule=sleep_strict", "schedule.n_cycles=20", "schedule.sleep_wake_ratio=0.5"]
    runs: dict[str, list[dict]] = {"ours": [], "for_loop": [], "hf": [], "sleep": []}
    for r in range(repeats):
        def st(extra: list[str], name: str) -> dict:
            return call(sleeptrain_run, [*over, *extra], tmp / f"{name}-{precision}-{r}", bench_data=data)

        def hf_run(name: str, compiled: bool = False, attention: str | None = None) -> dict:
            return call(hf_trainer_run, over, steps, precision, tmp / f"{name}-{precision}-{r}", compiled,
                        attention, bench_data=data)

        runs["ours"].append(st(["schedule=single_pass"], "single"))
        runs["hf"].append(hf_run("hf"))
        runs["sleep"].append(st(sleep_schedule, "sleep"))
        runs["for_loop"].append(st(["schedule=single_pass", "train.adamw_impl=for_loop"], "loop"))
        if compile:  # both compiled: torch.compile time is outside the measured (post-warm-up) interval
            runs.setdefault("compiled", []).append(st(["schedule=single_pass", "train.compile=true"], "compiled"))
            runs.setdefault("hf_compiled", []).append(hf_run("hfc", True))
        if kernel != "sdpa":  # the Trainer also with sleeptrain's kernel: the loops compared like with like
            runs.setdefault("hf_same_kernel", []).append(hf_run("hfk", attention=kernel))
            if compile:
                runs.setdefault("hf_compiled_same_kernel", []).append(hf_run("hfck", True, kernel))
    return runs


def throughput_row(runs: dict[str, list[dict]], precision: str, peak: float, kernel: str) -> dict:
    """One precision's figures, each variant at its fastest repeat."""
    fast = {k: best(v)["tokens_per_s"] for k, v in runs.items()}
    ours, hf, sleep = best(runs["ours"]), best(runs["hf"]), best(runs["sleep"])
    fpt = hf["flops_per_token"]
    row = {"precision": precision, "sleeptrain_tokens_per_s": fast["ours"], "hf_trainer_tokens_per_s": fast["hf"],
           "sleeptrain_vs_hf": fast["ours"] / fast["hf"], "sleep_strict_tokens_per_s": fast["sleep"],
           "sleep_overhead": 1 - fast["sleep"] / fast["ours"],
           "sleep_overhead_steps": 1 - sleep["steps_per_s"] / ours["steps_per_s"],
           "flops_per_token": fpt, "peak_flops": peak,
           "mfu_sleeptrain": fpt * fast["ours"] / peak, "mfu_hf": fpt * fast["hf"] / peak,
           "fused_adamw_vs_for_loop": fast["ours"] / fast["for_loop"]}
    if "compiled" in runs:
        row.update({"compiled_tokens_per_s": fast["compiled"], "hf_compiled_tokens_per_s": fast["hf_compiled"],
                    "compiled_vs_hf": fast["compiled"] / fast["hf"],
                    "compiled_vs_hf_compiled": fast["compiled"] / fast["hf_compiled"]})
    row["attention"] = kernel
    if "hf_same_kernel" in runs:
        row.update({"hf_same_kernel_tokens_per_s": fast["hf_same_kernel"],
                    "sleeptrain_vs_hf_same_kernel": fast["ours"] / fast["hf_same_kernel"]})
    if "hf_compiled_same_kernel" in runs:
        row.update({"hf_compiled_same_kernel_tokens_per_s": fast["hf_compiled_same_kernel"],
                    "compiled_vs_hf_compiled_same_kernel": fast["compiled"] / fast["hf_compiled_same_kernel"]})
    row.update({"final_loss_sleeptrain": ours["final_loss"],
                "all_runs_tokens_per_s": {k: [r["tokens_per_s"] for r in v] for k, v in runs.items()},
                "peak_memory_mib": {k: max(r["peak_memory_mib"] for r in v) for k, v in runs.items()}})
    return row


def print_row(model: str, row: dict) -> None:
    precision, peak, fpt = row["precision"], row["peak_flops"], row["flops_per_token"]
    print(f"{model} {precision}: sleeptrain {row['sleeptrain_tokens_per_s']:,.0f} tok/s, HF Trainer "
          f"{row['hf_trainer_tokens_per_s']:,.0f} tok/s (ratio {row['sleeptrain_vs_hf']:.2f}); "
          f"sleep_strict {row['sleep_strict_tokens_per_s']:,.0f} tok/s (overhead "
          f"{100 * row['sleep_overhead']:.1f} % in tokens/s, {100 * row['sleep_overhead_steps']:.1f} % in "
          f"steps/s); MFU {100 * row['mfu_sleeptrain']:.1f} % of a measured "
          f"{peak / 1e9:.0f} GFLOP/s ({fpt / 1e6:.1f} MFLOP/token); fused AdamW "
          f"{row['fused_adamw_vs_for_loop']:.2f}x the for-loop one; peak memory (MiB) "
          + ", ".join(f"{k} {v:,.0f}" for k, v in row["peak_memory_mib"].items()))
    compiled = "compiled_tokens_per_s" in row
    if compiled:
        print(f"{model} {precision} compiled: sleeptrain train.compile=true {row['compiled_tokens_per_s']:,.0f} "
              f"tok/s = {row['compiled_vs_hf']:.2f}x the Trainer's default, "
              f"{row['compiled_vs_hf_compiled']:.2f}x the Trainer with torch_compile=True "
              f"({row['hf_compiled_tokens_per_s']:,.0f} tok/s)")
    if row["attention"] != "sdpa":
        print(f"{model} {precision}: sleeptrain attention={row['attention']} (train.attention=auto); the Trainer with "
              f"the same kernel {row['hf_same_kernel_tokens_per_s']:,.0f} tok/s (sleeptrain "
              f"{row['sleeptrain_vs_hf_same_kernel']:.2f}x)" + (
                  f", compiled {row['hf_compiled_same_kernel_tokens_per_s']:,.0f} tok/s (compiled sleeptrain "
                  f"{row['compiled_vs_hf_compiled_same_kernel']:.2f}x)" if compiled else ""))


def run(model: str, steps: int, precisions: list[str], repeats: int = 2, compile: bool = False,
        device: str = "auto", overrides: list[str] | None = None, isolate: bool = True) -> dict:
    """`isolate=False` runs every configuration in this process (faster; peak memory then mixes runs)."""
    from sleeptrain.presets import load_config

    device = resolve_device(device)
    call = isolated if isolate else in_process
    data = list(BENCH_DATA)
    for precision in precisions:  # a bad override stops here, in one line, before any run (main catches it)
        load_config([*data, f"model={model}", f"train.max_steps={steps}", *(overrides or []),
                     f"train.precision={precision}"])
    out: dict = {"benchmark": "train_throughput", "model": model, "steps": steps, "repeats": repeats,
                 "device": device, "overrides": list(overrides or []), "rows": []}
    common = [f"model={model}", f"train.max_steps={steps}", f"train.device={device}", *(overrides or [])]
    with tempfile.TemporaryDirectory() as tmp:
        for precision in precisions:
            peak = peak_flops(torch.bfloat16 if precision == "bf16" else torch.float32, device)
            # the kernel sleeptrain's train.attention=auto takes here; where it is not the Trainer's default (SDPA),
            # the Trainer also runs with it, so the loops are compared like with like as well
            kernel = resolve_attention("auto", precision, on_cuda=device == "cuda")[0]
            runs = measure(call, [*common, f"train.precision={precision}"], steps, precision, Path(tmp), repeats,
                           compile, kernel, data)
            out["rows"].append(throughput_row(runs, precision, peak, kernel))
            print_row(model, out["rows"][-1])
    if len(out["rows"]) == 2:  # bf16 numerics: the same run's training loss in both precisions
        fp32, bf16 = out["rows"]
        out["bf16_final_loss_diff"] = bf16["final_loss_sleeptrain"] - fp32["final_loss_sleeptrain"]
        out["bf16_speedup"] = bf16["sleeptrain_tokens_per_s"] / fp32["sleeptrain_tokens_per_s"]
        print(f"bf16 vs fp32: {out['bf16_speedup']:.2f}x tokens/s, final training loss "
              f"{bf16['final_loss_sleeptrain']:.4f} vs {fp32['final_loss_sleeptrain']:.4f}")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also both loops under torch.compile")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for both loops")
    args = parser.parse_args()
    from sleeptrain.errors import SleeptrainError

    try:
        result = run(args.model, args.steps, args.precisions, args.repeats, args.compile, args.device, args.set)
    except SleeptrainError as err:  # a config the user gave (--model, --set, --precisions): one line, no traceback
        raise SystemExit(f"train_throughput: {err}") from None
    tag = "_compiled" if args.compile else ""
    print(write_json(f"train_throughput_{args.model}{tag}{'_cuda' if result['device'] == 'cuda' else ''}", result))
