"""The completion scripts, generated from kasctl.spec: every entry of the table is in each.

tests/e2e/test_completion.py drives the real shells; these tests read the
generated text, so they need no shell but bash (and check the others'
syntax where they are installed).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kasctl import cli as kasctl_cli
from kasctl.errors import UsageError
from kasctl.input import cmdline, completion
from kasctl.spec import BEFORE, COMMAND_TABLE, COMMAND_WORDS, GROUPS, Option, options_after

SHELLS = completion.SHELLS


def visible(command: str | None) -> list[Option]:
    options = BEFORE if command is None else options_after(command)
    return [o for o in options if o.help_for(command)]


def test_every_command_has_a_visible_option_list() -> None:
    for c in COMMAND_TABLE:
        assert any(o.names == ("-h", "--help") for o in visible(c.name)), c
    assert completion.shown(options_after("dump"), "dump") == visible("dump")
    assert "-c" not in {n for o in visible("dump") for n in o.names}  # dump has no -c
    assert "-c" in {n for o in visible("build") for n in o.names}


@pytest.mark.parametrize("shell", SHELLS)
def test_every_command_option_and_value_is_in_the_script(shell: str) -> None:
    text = completion.script(shell)
    for word in COMMAND_WORDS:
        assert re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text), word
    for c in COMMAND_TABLE:
        assert c.name.split()[-1] in text, c
        for choice in c.choices:
            assert choice in text
    for command in (None, *(c.name for c in COMMAND_TABLE)):
        for option in visible(command):
            for name in option.names:
                short = name.lstrip("-") if shell == "fish" else name
                assert short in text, (shell, command, name)
            for value in option.values:
                assert value in text, (shell, option, value)
    for suffix in completion.CONFIG_SUFFIXES:
        assert suffix in text


def _bash_case(text: str, command: str) -> set[str]:
    """The option names bash offers after `command` (its case branch)."""
    match = re.search(rf'\n        "{re.escape(command)}"\)\n.*?compgen -W "([^"]*)"', text, re.S)
    assert match, command
    return set(match.group(1).split())


def test_bash_offers_each_commands_options_exactly() -> None:
    text = completion.bash()
    for c in COMMAND_TABLE:
        assert _bash_case(text, c.name) == {n for o in visible(c.name) for n in o.names}, c
    before = re.search(
        r'if \[\[ \$cur == -\* \]\]; then COMPREPLY=\(\$\(compgen -W "([^"]*)"', text
    )
    assert before and set(before.group(1).split()) == {n for o in visible(None) for n in o.names}
    # the values of the options taking one before the command are skipped to find it
    for o in BEFORE:
        if o.metavar:
            assert "|".join(o.names) in text


def test_fish_offers_each_commands_options_under_its_condition() -> None:
    text = completion.fish()
    for c in COMMAND_TABLE:
        condition = f"-n '__kasctl_is \\'{c.name}\\''"
        lines = [line for line in text.splitlines() if condition in line]
        for o in visible(c.name):
            name = o.names[0]
            flag = f"-l {name[2:]}" if name.startswith("--") else f"-s {name[1:]}"
            assert any(flag in line for line in lines), (c, name)


def test_zsh_has_a_branch_per_command_with_its_options() -> None:
    text = completion.zsh()
    for c in COMMAND_TABLE:
        *group, word = c.name.split()
        where = text.split(f"\n        {group[0]})\n", 1)[1] if group else text
        branch = re.search(rf"\n +{re.escape(word)}\) _arguments (.*)", where)
        assert branch, c
        for o in visible(c.name):
            for name in o.names:
                assert f"'{name}" in branch.group(1) or f"'*{name}" in branch.group(1), (c, name)
    for group in GROUPS:
        assert f"        {group})\n" in text


def test_value_kinds_come_from_the_table() -> None:
    kinds = {n: completion.value_kind(o) for o in BEFORE for n in o.names}
    assert kinds["--engine"] == ("docker", "podman")
    assert kinds["-l"] == ("debug", "info", "warning", "error", "critical")
    assert kinds["--ssh-dir"] == kinds["--aws-dir"] == "dirs"
    assert kinds["--git-credential-store"] == "files"
    assert kinds["--dry-run"] is None


@pytest.mark.parametrize("shell", SHELLS)
def test_the_script_is_valid_syntax_for_its_shell(shell: str, tmp_path: Path) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    path = tmp_path / f"kasctl.{shell}"
    path.write_text(completion.script(shell))
    argv = [shell, "--no-execute", str(path)] if shell == "fish" else [shell, "-n", str(path)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_kasctl_completion_prints_the_script(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        kasctl_cli.main(["completion", "fish"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == completion.fish()


@pytest.mark.parametrize("argv", [["completion", "tcsh"], ["completion", "Bash"]])
def test_an_unknown_shell_is_a_usage_error_naming_the_three(argv: list[str]) -> None:
    with pytest.raises(UsageError) as info:
        cmdline.parse(argv)
    assert info.value.exit_code == 2
    assert info.value.message == f"unknown shell {argv[1]!r} for kasctl completion"
    assert info.value.fix == "use one of: bash, zsh, fish"
    with pytest.raises(UsageError) as direct:
        completion.script(argv[1])
    assert direct.value.fix == "use one of: bash, zsh, fish"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["completion"], "kasctl completion needs a shell"),
        (["completion", "bash", "zsh"], "kasctl completion does not take 'zsh'"),
        (["completion", "--dry-run", "bash"], "kasctl completion does not take '--dry-run'"),
    ],
)
def test_completion_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as info:
        cmdline.parse(argv)
    assert info.value.message == message
    assert info.value.exit_code == 2


def test_completion_help() -> None:
    with pytest.raises(cmdline.Shown) as shown:
        cmdline.parse(["completion", "-h"])
    assert shown.value.text.startswith("Usage: kasctl completion [OPTIONS] { bash | zsh | fish }")
