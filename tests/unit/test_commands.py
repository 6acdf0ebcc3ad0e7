"""Which arguments of a kas command are configs, and which commands write into the repo."""

from __future__ import annotations

import pytest

from kasctl.errors import UsageError
from kasctl.input.commands import COMMANDS, parse


@pytest.mark.parametrize(
    ("command", "args", "configs", "bitbake"),
    [
        ("build", ["kas.yml"], ["kas.yml"], []),
        ("build", ["--target", "img", "a.yml:b.yml"], ["a.yml:b.yml"], ["-k", "--", "x"]),
        ("build", ["--update", "kas.yml", "--task", "fetch"], ["kas.yml"], []),
        ("build", [], [], []),
        ("diff", ["a.yml", "b.yml", "--format", "json"], ["a.yml", "b.yml"], []),
        ("for-all-repos", ["kas.yml", "git status"], ["kas.yml"], []),
        ("dump", ["--indent", "4", "kas.yml"], ["kas.yml"], []),
        ("menu", ["Kconfig"], ["Kconfig"], []),
    ],
)
def test_configs_are_found_in_place(
    command: str, args: list[str], configs: list[str], bitbake: list[str]
) -> None:
    parsed = parse(COMMANDS[command], args, bitbake)
    assert parsed.configs() == configs
    assert list(parsed.bitbake) == bitbake
    rewritten = parsed.with_configs([f"/repo/{c}" for c in configs])
    assert [a for a in rewritten if a.startswith("/repo/")] == [f"/repo/{c}" for c in configs]
    assert len(rewritten) == len(parsed.args)


@pytest.mark.parametrize(
    ("command", "args", "writes"),
    [
        ("build", ["kas.yml"], False),
        ("dump", ["kas.yml"], False),
        ("dump", ["--inplace", "kas.yml"], True),
        ("dump", ["-i", "kas.yml"], True),
        ("lock", ["kas.yml"], True),
        ("shell", ["kas.yml"], True),
        ("for-all-repos", ["kas.yml", "git status"], False),
    ],
)
def test_commands_that_write_into_the_repo(command: str, args: list[str], writes: bool) -> None:
    spec = COMMANDS[command]
    assert parse(spec, args).writes_repo(spec) is writes


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("build", ["-E", "kas.yml"], "-E is not supported"),
        ("build", ["--preserve-env", "kas.yml"], "--preserve-env is not supported"),
        ("diff", ["a.yml"], "needs two configs"),
        ("for-all-repos", ["kas.yml"], "needs a config and a command"),
    ],
)
def test_refused(command: str, args: list[str], message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse(COMMANDS[command], args)
    assert message in info.value.message
    assert info.value.exit_code == 2


def test_every_kas_container_command_is_there() -> None:
    expected = {
        "build", "checkout", "dump", "lock", "shell", "diff", "for-all-repos",
        "clean", "cleansstate", "cleanall", "purge", "menu",
    }  # fmt: skip
    assert set(COMMANDS) == expected
