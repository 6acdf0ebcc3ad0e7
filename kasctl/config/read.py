"""The configs a command names, read: files, repository, build system; menu's and Kconfig's."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from kasctl.build_system import BuildSystem
from kasctl.config.files import ConfigFile, load_file, read_config_text
from kasctl.config.includes import check_includes, resolve_build_system, warn_if_kas_disagrees
from kasctl.config.repo import repo_dir_of, vcs_root
from kasctl.errors import ConfigError
from kasctl.layout import mountable

REAL_PATH_FIX = "rename or move it (kasctl mounts its real path, so a symlink does not help)"


@dataclass(frozen=True)
class Config:
    """What the planner needs from the configs: files, their repo, the build system."""

    files: tuple[ConfigFile, ...]
    repo_dir: Path
    build_system: BuildSystem

    def container_paths(self, repo_mount: str) -> list[str]:
        """The config files as the container sees them, below the repo mount."""
        return [f"{repo_mount}/{f.path.relative_to(self.repo_dir).as_posix()}" for f in self.files]


#: Characters a bind-mount source may not hold: --mount splits on ',', and a
#: newline breaks every engine's option parsing.
def split_config_arg(arg: str) -> list[Path]:
    """`a.yml:b.yml` -> [a.yml, b.yml]; an empty part is an error, not ignored."""
    parts = arg.split(":")
    if any(not p.strip() for p in parts):
        raise ConfigError(
            f"config list {arg!r} has an empty part",
            fix="join config files with ':' and no empty entries, e.g. base.yml:extra.yml",
        )
    return [Path(p) for p in parts]


def load(arg: str, build_system_override: BuildSystem | None = None) -> Config:
    """Load and validate every file of a CONFIG argument and the local files they include.

    The build system is kas's: the last value in kas's merge order of all of
    them (see resolve_build_system), unless the command line overrides it.
    """
    files = tuple(load_file(p) for p in split_config_arg(arg))
    first_dir = files[0].path.resolve().parent
    first_root = vcs_root(first_dir)
    repo = first_root or first_dir
    for f in files[1:]:
        if not f.path.resolve().is_relative_to(repo):
            raise ConfigError(
                f"config file is outside the first file's repository {repo}",
                where=str(f.path),
                fix="all files of a:b:c must live in the first file's repository",
            )
        root = vcs_root(f.path.resolve().parent)
        if root != first_root:  # kas's own rule: one repository (or none) for all
            raise ConfigError(
                f"config file belongs to {'repository ' + str(root) if root else 'no repository'}"
                f", the first file to {'repository ' + str(first_root) if first_root else 'none'}",
                where=str(f.path),
                fix="kas takes all files of a:b:c from one repository: move them into one",
            )
    mountable(repo, "the config's repository", fix=REAL_PATH_FIX, error=ConfigError)
    merged = check_includes(files, repo)
    if build_system_override is not None:
        build_system = build_system_override
        warn_if_kas_disagrees(build_system_override, merged)
    else:
        build_system = resolve_build_system(merged, files[-1])
    files = tuple(ConfigFile(path=f.path.resolve(), data=f.data, lines=f.lines) for f in files)
    return Config(files=files, repo_dir=repo, build_system=build_system)


MENU_CONFIG = ".config.yaml"

#: Where `kasctl menu` records the host directory of the Kconfig's repository.
SOURCE_DIR_HOST = "_source_dir_host"


def default_config(work_dir: Path, override: BuildSystem | None) -> Config | None:
    """kas's default config, KAS_WORK_DIR/.config.yaml, written by `menu`.

    kas reads it from /work itself; kasctl validates it and mounts the
    repository `menu` recorded in it, so a plain `kasctl build` works.
    """
    path = work_dir / MENU_CONFIG
    if not path.is_file():
        return None
    loaded = load_file(path)
    source = loaded.data.get(SOURCE_DIR_HOST)
    repo = Path(source) if isinstance(source, str) and Path(source).is_dir() else work_dir
    build_system = override or BuildSystem.parse(
        str(loaded.data.get("build_system", "openembedded")), str(path)
    )
    mountable(
        repo.resolve(),
        "the repository recorded in .config.yaml",
        fix=REAL_PATH_FIX,
        error=ConfigError,
    )
    return Config(files=(loaded,), repo_dir=repo.resolve(), build_system=build_system)


def load_kconfig(arg: str, override: BuildSystem | None) -> Config:
    """menu's Kconfig: its repository is mounted; KAS_BUILD_SYSTEM's default names the mode."""
    path = Path(arg)
    text = read_config_text(path, "Kconfig file")
    found = re.search(r"config\s+KAS_BUILD_SYSTEM\b(.*?)(?:^config\s|\Z)", text, re.S | re.M)
    default = re.search(r'default\s+"([^"]+)"', found.group(1)) if found else None
    build_system = override or (
        BuildSystem.parse(default.group(1), arg) if default else BuildSystem.OPENEMBEDDED
    )
    file = ConfigFile(path=path.resolve(), data={})
    repo = repo_dir_of(path)
    mountable(repo, "the Kconfig's repository", fix=REAL_PATH_FIX, error=ConfigError)
    return Config(files=(file,), repo_dir=repo, build_system=build_system)


def remember_source_dir(work_dir: Path, repo_dir: Path) -> None:
    """After `menu`: record the host repository in .config.yaml for a later plain build."""
    path = work_dir / MENU_CONFIG
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if not line.startswith(SOURCE_DIR_HOST)]
    lines.append(f"{SOURCE_DIR_HOST}: {json.dumps(str(repo_dir))}")
    path.write_text("\n".join(lines) + "\n")
