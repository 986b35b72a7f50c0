"""`sleeptrain export RUN_DIR DEST [--push REPO_ID]`: a run's model folders as a model repository, one branch each.

The BabyLM organisers expect the final model on `main` and the word-count checkpoints as branches `chck_1M`, ...,
`chck_100M` of one Hugging Face model repository. DEST becomes a git repository laid out that way, its history in
order of words seen: the first commit is the smallest RUN_DIR/chck_<N> folder on branch `chck_<N>`, each later
checkpoint a commit on top of the one before (its own files replacing the model's), and `main` — RUN_DIR/final — the
last. Every branch carries a model card (model_card.py: the run's config, data, words seen, results, licence).

Weights go through Git LFS, as the Hub requires: `.gitattributes` routes them to LFS and the repository's LFS filter
is installed before anything is added, so the commits hold LFS pointers (checked after the last commit). Without
git-lfs the export is refused before anything is written — install it, build a plain local repository with
`--no-lfs` (weights as ordinary git blobs, no LFS routing: fine locally, refused by the Hub), or use `--push REPO_ID`
alone, which uploads the same branches over HTTP with `huggingface_hub` (a token from `huggingface-cli login` or
$HF_TOKEN).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from sleeptrain.errors import SleeptrainError
from sleeptrain.lm.hf_folder import causal_template, make_portable
from sleeptrain.model_card import model_card

MILESTONE = re.compile(r"^chck_(\d+)([KM]?)$")
UNITS = {"": 1, "K": 1_000, "M": 1_000_000}
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack", "*.onnx")
IDENTITY = {"GIT_AUTHOR_NAME": "sleeptrain", "GIT_AUTHOR_EMAIL": "sleeptrain@localhost",
            "GIT_COMMITTER_NAME": "sleeptrain", "GIT_COMMITTER_EMAIL": "sleeptrain@localhost"}


class ExportError(SleeptrainError):
    """A run that cannot be exported, or a destination that would be overwritten."""


def model_folders(run_dir: Path) -> list[tuple[str, Path]]:
    """(branch, folder): `main` <- final/, then every chck_<N> folder in order of words seen."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ExportError(f"RUN_DIR: {str(run_dir)!r} is not a folder")
    milestones = []
    for folder in run_dir.iterdir():
        match = MILESTONE.match(folder.name)
        if match and (folder / "config.json").is_file():
            milestones.append((int(match.group(1)) * UNITS[match.group(2)], folder.name, folder))
    final = run_dir / "final"
    out = [("main", final)] if (final / "config.json").is_file() else []
    out += [(name, folder) for _, name, folder in sorted(milestones)]
    if not out or out[0][0] != "main":
        found = ", ".join(name for name, _ in out) or "none"
        raise ExportError(f"RUN_DIR: {str(run_dir)!r} has no final/ model folder (a finished run writes it; word "
                          f"checkpoints found: {found})")
    return out


def git_env(dest: Path) -> dict[str, str]:
    """The environment for git in `dest`: the user's identity when git has one (config or environment), else ours."""
    configured = subprocess.run(["git", "-C", str(dest), "config", "user.email"], capture_output=True, text=True)
    known = configured.returncode == 0 and bool(configured.stdout.strip()) or "GIT_AUTHOR_EMAIL" in os.environ
    return dict(os.environ) if known else {**IDENTITY, **os.environ}


def _git(dest: Path, env: dict[str, str], *args: str) -> None:
    result = subprocess.run(["git", "-C", str(dest), *args], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise ExportError(f"git {' '.join(args[:2])} failed in {dest}: {detail[0] if detail else 'no output'}")


def lfs_available() -> bool:
    """Whether `git lfs` runs here."""
    try:
        return subprocess.run(["git", "lfs", "version"], capture_output=True).returncode == 0
    except OSError:
        return False


def _fill(dest: Path, folder: Path, card: str, lfs: bool) -> None:
    """DEST's working tree := the files of `folder` + the model card (+ .gitattributes routing weights to LFS)."""
    for item in dest.iterdir():
        if item.name != ".git":
            shutil.rmtree(item) if item.is_dir() else item.unlink()
    for item in folder.iterdir():
        if item.is_file():
            shutil.copy2(item, dest / item.name)
    make_portable(dest)  # a folder saved before these keys existed: readable by transformers 4 as well
    if causal_template(dest):
        print(f"export: {folder.name}: its tokenizer appended </s> to every text (saved before 2026-12-02); the "
              "exported copy adds <s> only, as causal runs save it now (the run's own folder is unchanged)")
    (dest / "README.md").write_text(card)
    if lfs:
        (dest / ".gitattributes").write_text("".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n"
                                                     for p in LFS_PATTERNS))


def word_order(folders: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """The commits' order: every chck_<N> by words seen, then `main` (final/)."""
    return folders[1:] + folders[:1]


def export_repository(run_dir: Path, dest: Path, lfs: bool = True, license_id: str = "unknown") -> list[str]:
    """Lay RUN_DIR's model folders out in DEST as a git repository, one branch each, history in word order; returns
    the branches (`main` first). `lfs=False`: weights as plain blobs, no LFS routing (a local repository only)."""
    folders = model_folders(run_dir)  # the user's arguments first, then the tools: the same error on every machine
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise ExportError(f"DEST: {str(dest)!r} exists and is not empty; choose a new folder (nothing was changed)")
    if shutil.which("git") is None:
        raise ExportError("export: git is not installed (it builds the branches); install git, or use --push alone")
    if lfs and not lfs_available():
        raise ExportError("export: git-lfs is not installed, and the Hub takes weights only through LFS; install it "
                          "(https://git-lfs.com, e.g. apt install git-lfs), pass --no-lfs for a plain local "
                          "repository, or use --push REPO_ID alone (nothing was written)")
    dest.mkdir(parents=True, exist_ok=True)
    branches = [b for b, _ in folders]
    ordered = word_order(folders)
    env = git_env(dest)
    _git(dest, env, "init", "-q", "-b", ordered[0][0])
    if lfs:
        _git(dest, env, "lfs", "install", "--local")
    for i, (branch, folder) in enumerate(ordered):
        if i:
            _git(dest, env, "checkout", "-q", "-b", branch)
        _fill(dest, folder, model_card(Path(run_dir), branch, branches, folder, license_id), lfs)
        _git(dest, env, "add", "-A")
        _git(dest, env, "commit", "-q", "-m", f"{branch}: {folder.name} of {Path(run_dir).name}")
    if lfs:
        check_pointers(dest)
    return branches


def check_pointers(dest: Path) -> None:
    """Every weight file of `main` is an LFS pointer in the commit, not a raw blob."""
    listed = subprocess.run(["git", "-C", str(dest), "lfs", "ls-files", "--name-only"], capture_output=True,
                            text=True).stdout.split()
    weights = [p.name for p in dest.iterdir() if any(p.match(pattern) for pattern in LFS_PATTERNS)]
    missing = sorted(set(weights) - set(listed))
    if missing:
        raise ExportError(f"export: {', '.join(missing)} went into {dest} as raw git blobs, not LFS pointers (is the "
                          f"git-lfs filter disabled in your git config?); remove {dest} and export again")


def push(run_dir: Path, repo_id: str, private: bool = False, api=None, license_id: str = "unknown") -> list[str]:
    """Upload every chck_<N> folder to a branch of its name, each branch made from the one before (word order), then
    final/ to `main` of REPO_ID (huggingface_hub)."""
    folders = model_folders(run_dir)
    if api is None:
        from huggingface_hub import HfApi, get_token

        if get_token() is None:
            raise ExportError("--push: no Hugging Face token; run `huggingface-cli login` or set HF_TOKEN (the local "
                              "layout needs none: leave out --push)")
        api = HfApi()
    branches = [b for b, _ in folders]
    api.create_repo(repo_id, private=private, exist_ok=True)
    previous = None
    for branch, folder in word_order(folders):
        if branch != "main":
            api.create_branch(repo_id, branch=branch, revision=previous, exist_ok=True)
            previous = branch
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=branch, ignore_patterns=["eval/*"],
                          commit_message=f"{branch}: {folder.name} of {Path(run_dir).name}")
        card = model_card(Path(run_dir), branch, branches, folder, license_id)
        api.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=repo_id, revision=branch)
    return branches
