"""Do sleeptrain's model folders load the same under transformers 4 (the BabyLM evaluation pipeline's pin)?

    .venv/bin/python tools/check_transformers4.py [--venv .venv-tf4] [--transformers 4.51.3]

For every architecture sleeptrain builds (llama, gemma, gpt2, roberta, roberta_prelayernorm) it saves a small model
with sleeptrain's own BPE exactly as a run saves `final/` and `chck_*` (lm/run_setup.save_final), records the token
ids `tokenizer(text)` gives and the logits on them under this venv's transformers 5, then loads each folder with the
Auto classes in a second venv holding the pipeline's transformers / tokenizers / huggingface-hub pins (created on first
use: those three packages only, everything else — torch included — read from this venv through a .pth file; ~15 s)
and compares: ids identical, logits within 1e-4. Exit 0 when every folder matches, 1 otherwise. The pins default to
`babylm/evaluation-pipeline-2025`'s requirements.txt (transformers 4.51.3, tokenizers 0.21.1, huggingface-hub 0.31.0).
"""

from __future__ import annotations

import argparse
import json
import site
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"llama": "tiny", "gemma": "mingemma-cpu", "gpt2": "gpt2-tiny", "roberta": "roberta-tiny",
          "roberta_prelayernorm": "roberta-pln-tiny"}
TEXTS = ["the dog runs .", "a cat sleeps on the mat .", "the birds sing"]
TOLERANCE = 1e-4


def save_folders(out: Path) -> dict:
    """One saved folder per architecture under `out`, and the reference ids and logits (transformers 5)."""
    import torch

    from sleeptrain.data.grammar import generate_splits
    from sleeptrain.data.tokenizer import train_bpe, use_causal_template
    from sleeptrain.lm.models import build_model, special_token_ids
    from sleeptrain.lm.run_setup import save_final
    from sleeptrain.presets import load_config

    lines = generate_splits(800, 10, 10, seed=0)["train"]
    reference = {}
    for arch, preset in MODELS.items():
        cfg = load_config([f"model={preset}"]).config
        tokenizer = train_bpe(lines, vocab_size=400)
        if not cfg.model.is_masked_lm:
            tokenizer = use_causal_template(tokenizer)
        torch.manual_seed(0)
        model = build_model(cfg.model, len(tokenizer), 32, special_token_ids(tokenizer)).eval()
        save_final(model, tokenizer, out / arch, seq_len=32)
        ids = [tokenizer(text)["input_ids"] for text in TEXTS]
        with torch.no_grad():
            logits = [model(input_ids=torch.tensor([x])).logits[0].tolist() for x in ids]
        reference[arch] = {"masked": cfg.model.is_masked_lm, "ids": ids, "logits": logits}
    (out / "reference.json").write_text(json.dumps(reference))
    return reference


def check_folders(out: Path) -> int:
    """Run under the second venv: load each folder with the Auto classes and compare with reference.json."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    reference = json.loads((out / "reference.json").read_text())
    failures = 0
    print(f"transformers {transformers.__version__} (reference: the saving venv's transformers 5)")
    for arch, ref in reference.items():
        auto = AutoModelForMaskedLM if ref["masked"] else AutoModelForCausalLM
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(out / arch))
            model = auto.from_pretrained(str(out / arch)).eval()
        except Exception as exc:  # noqa: BLE001 — any failure to load is the finding
            failures += 1
            print(f"{arch:22s} cannot be loaded: {type(exc).__name__}: {str(exc).splitlines()[0]}  FAIL")
            continue
        ids = [tokenizer(text)["input_ids"] for text in TEXTS]
        same_ids = ids == ref["ids"]
        gap = float("inf")
        if same_ids:
            with torch.no_grad():
                gap = max(float((model(input_ids=torch.tensor([x])).logits[0] - torch.tensor(r)).abs().max())
                          for x, r in zip(ids, ref["logits"]))
        ok = same_ids and gap <= TOLERANCE
        failures += not ok
        print(f"{arch:22s} {type(tokenizer).__name__:24s} ids {'identical' if same_ids else 'DIFFER'}"
              f"{'' if not same_ids else f', max |logit diff| {gap:.2e}'}  {'ok' if ok else 'FAIL'}"
              + ("" if same_ids else f"\n    transformers 5: {ref['ids'][0]}\n    here:           {ids[0]}"))
    return 1 if failures else 0


def ensure_venv(venv: Path, pins: list[str]) -> Path:
    """A venv holding only `pins`, reading every other package from this interpreter's site-packages."""
    python = venv / "bin" / "python"
    marker = venv / ".pins"
    if python.exists() and marker.exists() and marker.read_text() == " ".join(pins):
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    inner = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"], check=True,
                           capture_output=True, text=True).stdout.strip()
    # after the venv's own site-packages on sys.path: its pins shadow this venv's versions, torch etc. come from here
    Path(inner, "zz_sleeptrain_main_venv.pth").write_text(site.getsitepackages()[0] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins], check=True)
    marker.write_text(" ".join(pins))
    return python


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv-tf4", help="the second venv (made on first use)")
    parser.add_argument("--transformers", default="4.51.3")
    parser.add_argument("--tokenizers", default="0.21.1")
    parser.add_argument("--hub", default="0.31.0", help="huggingface-hub version")
    parser.add_argument("--check", type=Path, help=argparse.SUPPRESS)  # internal: the second venv's half
    args = parser.parse_args()
    if args.check:
        return check_folders(args.check)
    pins = [f"transformers=={args.transformers}", f"tokenizers=={args.tokenizers}", f"huggingface-hub=={args.hub}"]
    python = ensure_venv(args.venv, pins)
    with tempfile.TemporaryDirectory() as tmp:
        save_folders(Path(tmp))
        return subprocess.run([str(python), __file__, "--check", tmp]).returncode


if __name__ == "__main__":
    sys.exit(main())
