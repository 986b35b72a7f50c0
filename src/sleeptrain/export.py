"""`sleeptrain export RUN_DIR DEST [--push REPO_ID]`: a run's model folders as a model repository, one branch each.

The BabyLM organisers expect the final model on `main` and the word-count checkpoints as branches `chck_1M`, ...,
`chck_100M` of one Hugging Face model repository. DEST becomes a git repository laid out that way: `main` holds
RUN_DIR/final, and each RUN_DIR/chck_<N> folder is a branch of that name (made from `main`, its files replacing the
model's), in order of words seen; a model card (README.md) on every branch says what it is. `.gitattributes` routes
weights through Git LFS as the Hub does, so `git push` to the Hub needs git-lfs; `--push REPO_ID` uploads the same
branches over HTTP with `huggingface_hub` instead (a token from `huggingface-cli login` or $HF_TOKEN; never needed
for the local layout).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from sleeptrain.errors import SleeptrainError

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


def model_card(run_dir: Path, branch: str, branches: list[str]) -> str:
    words = "the end of training" if branch == "main" else f"{branch[5:]} words of training text"
    others = ", ".join(f"`{b}`" for b in branches)
    return (f"---\nlibrary_name: transformers\ntags: [babylm, sleeptrain]\n---\n\n# {run_dir.name} — `{branch}`\n\n"
            f"Trained with sleeptrain and laid out by `sleeptrain export`. This revision is the model at "
            f"{words}. Revisions of this repository: {others}.\n\n```python\nfrom transformers import AutoModel, "
            f"AutoTokenizer\nmodel = AutoModel.from_pretrained(REPO, revision=\"{branch}\")\ntokenizer = "
            f"AutoTokenizer.from_pretrained(REPO, revision=\"{branch}\")\n```\n")


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


def _fill(dest: Path, folder: Path, card: str) -> None:
    """DEST's working tree := the files of `folder` + the model card + .gitattributes."""
    for item in dest.iterdir():
        if item.name != ".git":
            shutil.rmtree(item) if item.is_dir() else item.unlink()
    for item in folder.iterdir():
        if item.is_file():
            shutil.copy2(item, dest / item.name)
    (dest / "README.md").write_text(card)
    (dest / ".gitattributes").write_text("".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS))


def export_repository(run_dir: Path, dest: Path) -> list[str]:
    """Lay RUN_DIR's model folders out in DEST as a git repository, one branch each; returns the branches."""
    if shutil.which("git") is None:
        raise ExportError("export: git is not installed (it builds the branches); install git, or use --push alone")
    folders = model_folders(run_dir)
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise ExportError(f"DEST: {str(dest)!r} exists and is not empty; choose a new folder (nothing was changed)")
    dest.mkdir(parents=True, exist_ok=True)
    branches = [b for b, _ in folders]
    env = git_env(dest)
    _git(dest, env, "init", "-q", "-b", "main")
    for branch, folder in folders:
        if branch != "main":
            _git(dest, env, "checkout", "-q", "-B", branch, "main")
        _fill(dest, folder, model_card(Path(run_dir), branch, branches))
        _git(dest, env, "add", "-A")
        _git(dest, env, "commit", "-q", "-m", f"{branch}: {folder.name} of {Path(run_dir).name}")
    _git(dest, env, "checkout", "-q", "main")
    return branches


def push(run_dir: Path, repo_id: str, private: bool = False, api=None) -> list[str]:
    """Upload final/ to `main` of REPO_ID and every chck_<N> folder to a branch of its name (huggingface_hub)."""
    folders = model_folders(run_dir)
    if api is None:
        from huggingface_hub import HfApi, get_token

        if get_token() is None:
            raise ExportError("--push: no Hugging Face token; run `huggingface-cli login` or set HF_TOKEN (the local "
                              "layout needs none: leave out --push)")
        api = HfApi()
    branches = [b for b, _ in folders]
    api.create_repo(repo_id, private=private, exist_ok=True)
    for branch, folder in folders:
        if branch != "main":
            api.create_branch(repo_id, branch=branch, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=branch,
                          commit_message=f"{branch}: {folder.name} of {Path(run_dir).name}")
        api.upload_file(path_or_fileobj=model_card(Path(run_dir), branch, branches).encode(), path_in_repo="README.md",
                        repo_id=repo_id, revision=branch)
    return branches
