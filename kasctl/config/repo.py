"""The repository a config lives in (git or mercurial), and a git worktree's common dir."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def vcs_root(directory: Path) -> Path | None:
    """The git or hg top level that holds a directory; None outside any repository."""
    for probe in (["git", "rev-parse", "--show-toplevel"], ["hg", "root"]):
        try:
            out = subprocess.run(probe, cwd=directory, capture_output=True, text=True, check=False)
        except OSError:  # that tool is not installed (or not runnable): try the next
            continue
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip()).resolve()
    return None


def repo_dir_of(path: Path) -> Path:
    """The repository a config lives in: its git/hg top level, else its directory."""
    directory = path.resolve().parent
    return vcs_root(directory) or directory


@dataclass(frozen=True)
class Worktree:
    """A git worktree: its .git is a file pointing into another repository's .git."""

    common_dir: Path
    #: The worktree's own directory, relative to common_dir (worktrees/NAME).
    gitdir: str


def worktree_of(repo_dir: Path) -> Worktree | None:
    """Read repo_dir/.git when it is a file (`gitdir: ...`); None for a plain repo."""
    dotgit = repo_dir / ".git"
    if not dotgit.is_file():
        return None
    text = dotgit.read_text().strip()
    if not text.startswith("gitdir:"):
        return None
    gitdir = (repo_dir / text.split(":", 1)[1].strip()).resolve()
    commondir = gitdir / "commondir"
    common = (gitdir / commondir.read_text().strip()).resolve() if commondir.is_file() else None
    if common is None or not gitdir.is_relative_to(common):
        return None
    return Worktree(common_dir=common, gitdir=gitdir.relative_to(common).as_posix())
