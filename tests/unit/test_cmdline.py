"""The command line: kasctl's options before or after the command, the rest for kas and bitbake."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kasctl import __version__, cmdline
from kasctl.commands import COMMANDS
from kasctl.errors import UsageError


def test_options_before_and_after_the_command() -> None:
    parsed = cmdline.parse(
        ["--engine", "docker", "--isar-rootless", "-l", "debug", "build", "--engine=podman",
         "--dry-run", "kas.yml"]
    )  # fmt: skip
    assert parsed.command == "build"
    assert parsed.before == {"engine": "docker", "isar_rootless": True, "log_level": "debug"}
    assert parsed.after == {"engine": "podman", "dry_run": True}
    assert parsed.options() == {
        "engine": "podman", "isar_rootless": True, "log_level": "debug", "dry_run": True
    }  # fmt: skip
    assert parsed.args == ("kas.yml",)


def test_repo_ro_after_repo_rw_wins() -> None:
    parsed = cmdline.parse(["--repo-rw", "shell", "--repo-ro", "kas.yml"])
    assert parsed.options()["repo_rw"] is False


def test_everything_not_ours_goes_to_kas_in_order() -> None:
    parsed = cmdline.parse(
        ["build", "--update", "--target", "img", "kas.yml:x.yml", "--dry-run", "--task", "fetch"]
    )
    assert parsed.args == ("--update", "--target", "img", "kas.yml:x.yml", "--task", "fetch")
    assert parsed.after == {"dry_run": True}
    assert parsed.bitbake == ()


def test_after_double_dash_all_is_bitbakes_even_our_option_names() -> None:
    parsed = cmdline.parse(["build", "kas.yml", "--", "-c", "fetch", "--help", "--", "--dry-run"])
    assert parsed.args == ("kas.yml",)
    assert parsed.bitbake == ("-c", "fetch", "--help", "--", "--dry-run")
    assert parsed.after == {}


@pytest.mark.parametrize(
    "argv", [["shell", "-c", "make"], ["shell", "-cmake"], ["shell", "--cmd=make"],
             ["shell", "--command", "make"]]
)  # fmt: skip
def test_value_spellings(argv: list[str]) -> None:
    assert cmdline.parse(argv).after == {"cmd": "make"}


def test_a_value_may_look_like_an_option() -> None:
    parsed = cmdline.parse(["build", "--runtime-args", "--cpus 2", "kas.yml"])
    assert parsed.after == {"runtime_args": "--cpus 2"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["shell", "-c"], "option -c requires an argument"),
        (["build", "kas.yml", "--engine"], "option --engine requires an argument"),
        (["-l"], "option -l requires an argument"),
        (["build", "--dry-run=yes"], "option --dry-run takes no value"),
        (["--dryrun", "build", "kas.yml"], "no such option: --dryrun"),
        (["--explain", "build"], "no such option: --explain"),  # a command option only
        (["biuld", "kas.yml"], "no such command 'biuld'; did you mean 'build'?"),
        (["xyzzy"], "no such command 'xyzzy'"),
        (["image", "push"], "no such command 'image push'"),
        (["image", "build", "extra"], "kasctl image build does not take 'extra'"),
        (["doctor", "a.yml", "b.yml"], "kasctl doctor does not take 'b.yml'"),
        (["doctor", "--dry-run"], "kasctl doctor does not take '--dry-run'"),
    ],
)
def test_mistakes_are_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as info:
        cmdline.parse(argv)
    assert info.value.message == message or info.value.message.startswith(message)
    assert info.value.exit_code == 2
    assert info.value.fix


def test_version_and_help() -> None:
    with pytest.raises(cmdline.Shown) as shown:
        cmdline.parse(["--version"])
    assert (shown.value.text, shown.value.status) == (f"kasctl {__version__}", 0)
    for argv, usage, status in [
        (["-h"], "Usage: kasctl [OPTIONS] COMMAND", 0),
        (["--engine", "docker", "--help"], "Usage: kasctl [OPTIONS] COMMAND", 0),
        ([], "Usage: kasctl [OPTIONS] COMMAND", 2),
        (["build", "kas.yml", "-h"], "Usage: kasctl build [OPTIONS]", 0),
        (["image"], "Usage: kasctl image COMMAND", 2),
        (["image", "--help"], "Usage: kasctl image COMMAND", 0),
        (["image", "build", "-h"], "Usage: kasctl image build", 0),
        (["doctor", "-h"], "Usage: kasctl doctor [OPTIONS] [CONFIG]", 0),
    ]:
        with pytest.raises(cmdline.Shown) as shown:
            cmdline.parse(argv)
        assert shown.value.text.startswith(usage), argv
        assert shown.value.status == status, argv


def test_help_lists_every_command_and_visible_option() -> None:
    main = cmdline.main_help()
    for name in [*COMMANDS, "doctor", "image"]:
        assert f"\n  {name} " in main
    for options, text in [
        (cmdline.GLOBAL, main),
        (cmdline.KAS, cmdline.command_help("shell")),
    ]:
        for option in options:
            for name in option.names:
                shown = re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text)
                assert bool(shown) != option.hidden, name


def test_doctor() -> None:
    parsed = cmdline.parse(["--engine", "docker", "doctor", "--json", "kas.yml", "--isar-rootless"])
    assert parsed.command == "doctor"
    assert parsed.options() == {"engine": "docker", "as_json": True, "isar_rootless": True}
    assert parsed.args == ("kas.yml",)
    assert cmdline.parse(["doctor"]).args == ()


def test_image_build() -> None:
    parsed = cmdline.parse(["--engine", "docker", "image", "build", "--bootstrap-base"])
    assert parsed.command == "image build"
    assert parsed.options() == {"engine": "docker", "bootstrap_base": True}


OURS = {name for option in cmdline.KAS for name in option.names}
kas_token = st.text(min_size=1).filter(
    lambda t: t != "--" and not any(t == n or t.startswith(n) for n in OURS)
)


@given(
    command=st.sampled_from(sorted(COMMANDS)),
    args=st.lists(kas_token, max_size=8),
    bitbake=st.lists(st.text(), max_size=5),
)
def test_kas_and_bitbake_arguments_pass_unchanged(
    command: str, args: list[str], bitbake: list[str]
) -> None:
    parsed = cmdline.parse([command, *args, "--", *bitbake])
    assert (parsed.args, parsed.bitbake, parsed.after) == (tuple(args), tuple(bitbake), {})
