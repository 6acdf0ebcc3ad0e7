"""`kasctl completion SHELL`, driven in each real shell: bash, zsh and fish.

No engine is needed: the real kasctl prints the script, the real shell loads
it and completes a command line the way it does at a prompt, and what it
offers is read back:

- bash: bash-completion's machinery (its bash_completion sourced first),
  the function `complete -p kasctl` names called with COMP_WORDS and
  COMP_CWORD set, COMPREPLY read;
- zsh: an interactive `zsh -i` on a pseudo-terminal, with compinit and the
  script installed as `_kasctl` in $fpath (autoloaded as users install it);
  Tab is bound to a completion widget that runs `_main_complete`, and a
  `compadd` wrapper writes every match it is given to a file;
- fish: `complete -C LINE` after sourcing the script.

Outside CI a missing shell skips its tests; under CI=true it fails them
(.ci/setup-engines.sh installs zsh, fish and bash-completion).
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kasctl.spec import COMMAND_WORDS

from .harness import IN_CI, kasctl_bin

pytestmark = pytest.mark.e2e

BASH_COMPLETION = Path("/usr/share/bash-completion/bash_completion")
TIMEOUT = 20.0


def need(shell: str) -> str:
    found = shutil.which(shell)
    if found is None:
        if IN_CI:
            pytest.fail(f"{shell} is not installed: run .ci/setup-engines.sh")
        pytest.skip(f"{shell} is not installed")
    return found


def generated(shell: str, where: Path) -> Path:
    """The script as the real `kasctl completion SHELL` prints it, saved in `where`."""
    result = subprocess.run(
        [kasctl_bin(), "completion", shell], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    name = {"bash": "kasctl.bash", "zsh": "_kasctl", "fish": "kasctl.fish"}[shell]
    path = where / name
    path.write_text(result.stdout)
    return path


def bash_complete(tmp: Path, project: Path) -> Callable[[str], list[str]]:
    need("bash")
    if not BASH_COMPLETION.exists():
        if IN_CI:
            pytest.fail("bash-completion is not installed: run .ci/setup-engines.sh")
        pytest.skip("bash-completion is not installed")
    script = generated("bash", tmp)
    program = f"""
source {shlex.quote(str(BASH_COMPLETION))}
source {shlex.quote(str(script))}
read -r -a spec <<< "$(complete -p kasctl)"
for ((i = 0; i < ${{#spec[@]}}; i++)); do
    [[ ${{spec[i]}} == -F ]] && func=${{spec[i+1]}}
done
COMP_WORDS=("$@")
COMP_CWORD=$(( $# - 1 ))
COMP_LINE="$*"
COMP_POINT=${{#COMP_LINE}}
COMPREPLY=()
"$func" kasctl "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\\n' "${{COMPREPLY[@]}}"
"""

    def complete(line: str) -> list[str]:
        words = line.split() + ([""] if line.endswith(" ") else [])
        result = subprocess.run(
            ["bash", "--norc", "--noprofile", "-c", program, "bash", *words],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return [w for w in result.stdout.splitlines() if w]

    return complete


ZSHRC = """
PS1='> '
fpath=({zdot} $fpath)
autoload -U compinit && compinit -u -d {zdot}/.zcompdump
LISTMAX=100000
compadd() {{
    # compadd used to query (-O, -A, -D) is left alone; every other call's matches are kept
    if [[ ${{@[1,(i)(-|--)]}} == *-(O|A|D)\\ * ]]; then
        builtin compadd "$@"
        return $?
    fi
    local -a __hits
    builtin compadd -O __hits "$@"
    (( $#__hits )) && print -rl -- $__hits >> {capture}
    builtin compadd "$@"
}}
_kasctl_test_complete() {{
    _main_complete
    print -r -- __DONE__ >> {capture}
}}
zle -C kasctl-test-complete complete-word _kasctl_test_complete
bindkey '^I' kasctl-test-complete
print -r -- __READY__ >> {capture}
"""


def zsh_complete(tmp: Path, project: Path) -> Callable[[str], list[str]]:
    zsh = need("zsh")
    zdot = tmp / "zdot"
    zdot.mkdir()
    generated("zsh", zdot)  # as users install it: a `_kasctl` file in $fpath
    (zdot / ".zshenv").write_text("unsetopt GLOBAL_RCS\n")  # no /etc/zsh/zshrc

    def complete(line: str) -> list[str]:
        capture = zdot / "capture"
        capture.unlink(missing_ok=True)
        (zdot / ".zshrc").write_text(ZSHRC.format(zdot=zdot, capture=capture))
        env = {"PATH": os.environ["PATH"], "HOME": str(zdot), "ZDOTDIR": str(zdot)}
        pid, fd = pty.fork()
        if pid == 0:  # the child: an interactive zsh at a prompt in the project
            os.chdir(project)
            os.execve(zsh, [zsh, "-i"], {**env, "TERM": "dumb"})

        def wait_for(marker: str) -> bool:
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline:
                ready, _, _ = select.select([fd], [], [], 0.05)
                if ready:
                    with contextlib.suppress(OSError):
                        os.read(fd, 65536)  # the terminal's output, not needed
                if capture.exists() and marker in capture.read_text():
                    return True
            return False

        try:
            assert wait_for("__READY__"), "zsh did not reach its prompt"
            os.write(fd, line.encode() + b"\t")
            assert wait_for("__DONE__"), f"zsh did not complete {line!r}"
            text = capture.read_text()
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(fd)
        hits = text.split("__READY__\n", 1)[1].split("__DONE__", 1)[0]
        return [w for w in hits.splitlines() if w]

    return complete


def fish_complete(tmp: Path, project: Path) -> Callable[[str], list[str]]:
    need("fish")
    script = generated("fish", tmp)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp),
        "XDG_CONFIG_HOME": str(tmp / "config"),
        "XDG_DATA_HOME": str(tmp / "data"),
        "XDG_CACHE_HOME": str(tmp / "cache"),
    }

    def complete(line: str) -> list[str]:
        result = subprocess.run(
            ["fish", "--no-config", "-c", f'source {script}; complete -C "$KASCTL_LINE"'],
            cwd=project,
            env={**env, "KASCTL_LINE": line},
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return [w.split("\t", 1)[0] for w in result.stdout.splitlines() if w]

    return complete


DRIVERS = {"bash": bash_complete, "zsh": zsh_complete, "fish": fish_complete}


@pytest.fixture(params=sorted(DRIVERS))
def complete(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], list[str]]:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("kas.yml", "other.yaml", "notes.txt"):
        (project / name).write_text("header:\n  version: 14\n")
    (project / "sub").mkdir()
    driver: Callable[[Path, Path], Callable[[str], list[str]]] = DRIVERS[request.param]
    return driver(tmp_path, project)


def test_command_names_complete(complete: Callable[[str], list[str]]) -> None:
    assert complete("kasctl bu") == ["build"]
    assert set(complete("kasctl ")) >= set(COMMAND_WORDS)
    assert "build" in complete("kasctl --engine docker -l debug bu")


def test_an_option_after_build_completes(complete: Callable[[str], list[str]]) -> None:
    assert complete("kasctl build --dr") == ["--dry-run"]
    assert complete("kasctl build --exp") == ["--explain"]
    assert complete("kasctl --exp") == []  # --explain is taken after the command only


def test_engine_values_complete(complete: Callable[[str], list[str]]) -> None:
    assert sorted(complete("kasctl --engine ")) == ["docker", "podman"]
    assert sorted(complete("kasctl build --engine ")) == ["docker", "podman"]


def test_the_config_argument_offers_kas_files_only(complete: Callable[[str], list[str]]) -> None:
    offered = complete("kasctl build ")
    assert "kas.yml" in offered and "other.yaml" in offered
    assert "notes.txt" not in offered
    assert complete("kasctl build k") == ["kas.yml"]
    assert complete("kasctl build n") == []


def test_kasctls_own_commands_complete(complete: Callable[[str], list[str]]) -> None:
    assert sorted(complete("kasctl completion ")) == ["bash", "fish", "zsh"]
    assert complete("kasctl image ") == ["build"]
    assert "--bootstrap-base" in complete("kasctl image build --")
