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


@dataclass(frozen=True)
class Published:
    """Where a pod finds the config's repository: a git remote's URL and a commit."""

    remote: str
    commit: str
    #: The config files' paths inside the repository.
    paths: tuple[str, ...] = ()


def _git(repo_dir: Path, *args: str) -> str | None:
    out = subprocess.run(["git", "-C", str(repo_dir), *args], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def published(repo_dir: Path) -> Published:
    """The repository as a remote holds it; refused when the pod could not get this tree.

    A pod clones the remote and checks the commit out, so the tree must be
    committed (no changes to tracked files, no untracked files) and the commit
    on the remote as far as this clone knows (a remote-tracking branch holds it).
    """
    from kasctl.errors import UsageError

    commit = _git(repo_dir, "rev-parse", "--verify", "HEAD^{commit}")
    if commit is None:
        raise UsageError(
            f"{repo_dir} is not a git repository with a commit: a pod gets the config's "
            "repository by cloning it",
            fix="commit it to a git repository with a remote, and push",
        )
    status = _git(repo_dir, "status", "--porcelain", "--untracked-files=normal")
    if status:
        # "XY path" (the output is stripped, so a first " M" loses its space)
        first = status.splitlines()[0].split(maxsplit=1)[-1]
        raise UsageError(
            f"{repo_dir} has changes that are not committed (e.g. {first}): the pod would "
            "build the commit, not this tree",
            fix="commit (or stash) them and push, then emit again",
        )
    holders = _git(repo_dir, "branch", "-r", "--contains", commit, "--format=%(refname:short)")
    if not holders:
        raise UsageError(
            f"commit {commit[:12]} of {repo_dir} is on no remote-tracking branch: the remote "
            "may not have it",
            fix="push it (git push), then emit again",
        )
    remote_name = holders.splitlines()[0].split("/", 1)[0]
    # get-url applies the user's url.*.insteadOf, but answers a remote without
    # a URL with its bare name: only a configured URL counts
    url = _git(repo_dir, "remote", "get-url", remote_name)
    if not url or not _git(repo_dir, "config", "--get", f"remote.{remote_name}.url"):
        raise UsageError(
            f"remote {remote_name!r} of {repo_dir} has no URL", fix="git remote set-url ..."
        )
    return Published(remote=url, commit=commit)
