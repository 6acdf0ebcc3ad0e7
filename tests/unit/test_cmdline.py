"""The command line: kasctl's options before or after the command, the rest for kas and bitbake."""

from __future__ import annotations

import re
import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kasctl import __version__, spec
from kasctl.errors import UsageError
from kasctl.input import cmdline
from kasctl.input.commands import COMMANDS


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
    for options, text, where in [
        (spec.BEFORE, main, None),
        (spec.options_after("shell"), cmdline.command_help("shell"), "shell"),
    ]:
        for option in options:
            for name in option.names:
                shown = re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text)
                assert bool(shown) != option.hidden, name
                assert bool(shown) == bool(option.help_for(where)), name


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


OURS = {name for c in spec.KAS_COMMANDS for o in spec.options_after(c) for name in o.names}
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


# --------------------------------------------------------------------------
# kas-container 5.5's options before the command, as CI files write them
# --------------------------------------------------------------------------


def ci(line: str) -> list[str]:
    """A CI script's `kasctl ...` line as the shell hands it over (quotes removed)."""
    words = shlex.split(line)
    assert words[0] == "kasctl"
    return words[1:]


#: Every option kas-container 5.5 takes before the command (its `while` loop), with a
#: value for those that take one; --version and -h/--help show something instead (below).
KAS_CONTAINER_55 = {
    "--isar": None,
    "--isar-privileged": None,
    "--isar-rootless": None,
    "--kvm": None,
    "--runtime-args": "--cpus 2",
    "--docker-args": "--cpus 2",
    "--ssh-dir": "/ci/ssh",
    "--ssh-agent": None,
    "--aws-dir": "/ci/aws",
    "--git-credential-store": "/ci/git-credentials",
    "--git-credential-socket": "/ci/git-socket",
    "--no-proxy-from-env": None,
    "--repo-ro": None,
    "--repo-rw": None,
    "-l": "debug",
    "--log-level": "debug",
}


@pytest.mark.parametrize("name", sorted(KAS_CONTAINER_55))
def test_every_kas_container_option_is_taken_before_the_command(name: str) -> None:
    value = KAS_CONTAINER_55[name]
    argv = [name, *([value] if value is not None else []), "build", "kas.yml"]
    parsed = cmdline.parse(argv)
    assert (parsed.command, parsed.args, parsed.after) == ("build", ("kas.yml",), {})
    assert len(parsed.before) == 1
    assert list(parsed.before.values()) == [value if value is not None else name != "--repo-ro"]


def test_ci_isar_rootless_with_ssh_dir_and_runtime_args() -> None:
    parsed = cmdline.parse(
        ci('kasctl --isar-rootless --ssh-dir /home/ci/.ssh --runtime-args "--cpus 2" '
           '--runtime-args "-e X=1" build kas.yml')
    )  # fmt: skip
    assert parsed.command == "build"
    assert parsed.args == ("kas.yml",)
    assert parsed.options() == {
        "isar_rootless": True,
        "ssh_dir": "/home/ci/.ssh",
        "runtime_args": "--cpus 2 -e X=1",  # appended, as kas-container does
    }


def test_ci_repo_rw_shell_with_a_command() -> None:
    parsed = cmdline.parse(ci("kasctl --repo-rw shell kas.yml -c 'ls'"))
    assert parsed.command == "shell"
    assert parsed.before == {"repo_rw": True}
    assert parsed.after == {"cmd": "ls"}
    assert parsed.args == ("kas.yml",)


def test_ci_log_level_and_no_proxy_checkout() -> None:
    parsed = cmdline.parse(ci("kasctl -l debug --no-proxy-from-env checkout kas.yml"))
    assert parsed.command == "checkout"
    assert parsed.options() == {"log_level": "debug", "no_proxy_from_env": True}
    assert parsed.args == ("kas.yml",)


def test_ci_credential_store_and_aws_dir_dump() -> None:
    parsed = cmdline.parse(
        ci("kasctl --git-credential-store /ci/git-credentials --aws-dir /ci/aws dump kas.yml")
    )
    assert parsed.command == "dump"
    assert parsed.options() == {"git_credential_store": "/ci/git-credentials", "aws_dir": "/ci/aws"}
    assert parsed.args == ("kas.yml",)


def test_ci_ssh_agent_socket_and_docker_args_lock() -> None:
    parsed = cmdline.parse(
        ci("kasctl --isar-privileged --ssh-agent --git-credential-socket /run/git.sock "
           "--docker-args --network=host --repo-ro lock kas.yml")
    )  # fmt: skip
    assert parsed.command == "lock"
    assert parsed.options() == {
        "isar_privileged": True,
        "ssh_agent": True,
        "git_credential_socket": "/run/git.sock",
        "runtime_args": "--network=host",
        "repo_rw": False,
    }


def test_runtime_args_add_up_before_and_after_the_command() -> None:
    parsed = cmdline.parse(
        ci('kasctl --runtime-args "--cpus 2" --docker-args -t build --runtime-args "-e X=1" '
           'kas.yml --runtime-args "--env \'A=b c\'"')
    )  # fmt: skip
    assert parsed.before == {"runtime_args": "--cpus 2 -t"}
    assert parsed.after == {"runtime_args": "-e X=1 --env 'A=b c'"}
    assert parsed.options()["runtime_args"] == "--cpus 2 -t -e X=1 --env 'A=b c'"


def test_a_runtime_args_quote_never_spans_two_values() -> None:
    with pytest.raises(UsageError) as info:
        cmdline.parse(["--runtime-args", "-e 'A=b", "--runtime-args", "c'", "build"])
    assert info.value.message.startswith('--runtime-args "-e \'A=b" cannot be split')
    assert info.value.exit_code == 2


def test_after_the_command_wins_over_before() -> None:
    parsed = cmdline.parse(
        ci("kasctl --ssh-dir /a --repo-rw -l debug --aws-dir /x build --ssh-dir /b --repo-ro "
           "-l error kas.yml")
    )  # fmt: skip
    assert parsed.options() == {
        "ssh_dir": "/b", "repo_rw": False, "log_level": "error", "aws_dir": "/x"
    }  # fmt: skip
    assert parsed.args == ("kas.yml",)


def test_log_level_spellings_before_the_command() -> None:
    for argv in (["-l", "info"], ["--log-level", "info"], ["--log-level=info"], ["-linfo"]):
        assert cmdline.parse([*argv, "build"]).before == {"log_level": "info"}, argv


@pytest.mark.parametrize(
    "argv",
    [["--version"], ["-l", "debug", "--version", "build", "kas.yml"],
     ["--isar-rootless", "--version"], ["build", "kas.yml", "--version"]],
)  # fmt: skip
def test_version_wherever_it_stands(argv: list[str]) -> None:
    with pytest.raises(cmdline.Shown) as shown:
        cmdline.parse(argv)
    assert (shown.value.text, shown.value.status) == (f"kasctl {__version__}", 0)


def test_help_before_the_command_stops_there_as_kas_container() -> None:
    with pytest.raises(cmdline.Shown) as shown:
        cmdline.parse(["--ssh-dir", "/ci/ssh", "-h", "build", "--bogus-is-never-read"])
    assert shown.value.status == 0
    assert "--git-credential-socket SOCKET" in shown.value.text


VALUED_BEFORE = [name for option in spec.BEFORE if option.metavar for name in option.names]


@pytest.mark.parametrize("name", VALUED_BEFORE)
def test_a_value_missing_at_the_end_names_the_option(name: str) -> None:
    with pytest.raises(UsageError) as info:
        cmdline.parse(["--isar-rootless", name])
    assert info.value.message == f"option {name} requires an argument"
    assert info.value.exit_code == 2


@pytest.mark.parametrize("name", VALUED_BEFORE)
def test_a_value_missing_before_the_command_names_the_option(name: str) -> None:
    # `kasctl --ssh-dir $SSH_DIR build kas.yml` with SSH_DIR unset
    for rest in (["build", "kas.yml"], ["build"], ["doctor", "kas.yml"]):
        with pytest.raises(UsageError) as info:
            cmdline.parse([name, *rest])
        assert info.value.message == (
            f"option {name} requires an argument (it took the command {rest[0]!r} as its value)"
        ), rest
        assert info.value.exit_code == 2
        assert info.value.fix.startswith(f"give it one before the command: {name} ")


def test_a_value_that_names_a_command_is_fine_when_a_command_follows() -> None:
    parsed = cmdline.parse(["--ssh-dir", "build", "build", "kas.yml"])
    assert (parsed.command, parsed.before) == ("build", {"ssh_dir": "build"})
