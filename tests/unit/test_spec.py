"""kasctl.spec is the one place an option or a command is declared; everything reads it.

The parser accepts exactly the table's options where the table says, the
Options kasctl.cli builds have exactly the table's fields, cli carries out
exactly the table's commands, and the image's entrypoint accepts exactly its
kas commands (and imports nothing that would slow each container start).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from kasctl import cli as kasctl_cli
from kasctl import flow, spec
from kasctl.decide.credentials import CredentialOptions
from kasctl.decide.plan import Request
from kasctl.errors import UsageError
from kasctl.host.facts import EngineFacts, EngineMode
from kasctl.input import cmdline, commands
from kasctl.input.options import Options
from kasctl.inside import clean
from kasctl.inside import entrypoint as ep
from kasctl.spec import COMMAND_TABLE, KAS, OPTION_TABLE, OWN
from tests.unit.test_plan import IR, make_plan

ROOT = Path(__file__).resolve().parent.parent.parent
ENTRYPOINT = ROOT / "kasctl" / "inside" / "entrypoint.py"
SOURCES = sorted((ROOT / "kasctl").rglob("*.py"))
ALL_NAMES = {n for o in OPTION_TABLE for n in o.names}
COMMAND_NAMES = {c.name for c in COMMAND_TABLE}


def _value(option: spec.Option) -> list[str]:
    return [option.values[0] if option.values else "x"] if option.metavar else []


# --------------------------------------------------------------------------
# declared only in the table
# --------------------------------------------------------------------------


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_option_or_command_is_declared_outside_the_table(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and path.name != "spec.py"
        ):
            assert node.func.id not in ("Option", "Command"), f"{path.name}:{node.lineno}"
        # a hand-written list of command names (as the entrypoint's KAS_COMMANDS was)
        if isinstance(node, ast.Set | ast.Tuple | ast.List) and path.name != "spec.py":
            names = [e.value for e in node.elts if isinstance(e, ast.Constant)]
            listed = [n for n in names if n in COMMAND_NAMES]
            assert len(listed) < 3, f"{path.name}:{node.lineno} lists commands {listed}"


def test_the_table_is_consistent() -> None:
    names = [n for o in OPTION_TABLE for n in o.names]
    assert len(names) == len(set(names)), "an option name is declared twice"
    assert len(COMMAND_NAMES) == len(COMMAND_TABLE)
    by_dest: dict[str, Any] = {}
    for o in OPTION_TABLE:
        assert o.default == by_dest.setdefault(o.dest, o.default), o  # one default per field
        assert set(o.commands) <= COMMAND_NAMES, o
        assert set(o.helps) <= set(o.commands), o
        assert o.before or o.commands, o
    for c in COMMAND_TABLE:
        assert c.runs in (KAS, OWN)
        assert c.name.split()[0] in spec.COMMAND_WORDS
        assert (" " in c.name) == (c.name.split()[0] in spec.GROUPS)
        assert not c.required or (c.needs and c.example), c


@pytest.mark.parametrize("option", OPTION_TABLE, ids=repr)
def test_every_option_is_accepted_where_the_table_says_and_only_there(
    option: spec.Option,
) -> None:
    for name in option.names:
        if name in ("-h", "--help", "--version"):
            continue  # they show something: test_cmdline
        argv = [name, *_value(option)]
        if option.before:
            parsed = cmdline.parse([*argv, "build"])
            assert parsed.before == {option.dest: parsed.before[option.dest]}, name
        else:
            with pytest.raises(UsageError, match="no such option"):
                cmdline.parse([*argv, "build"])
        for c in COMMAND_TABLE:
            words = [*c.name.split(), *argv, *c.choices[:1]]
            if c.runs == OWN and c.name not in option.commands:
                with pytest.raises(UsageError, match="does not take"):
                    cmdline.parse(words)
                continue
            if c.name == "for-all-repos":
                words += ["kas.yml", "true"]
            parsed = cmdline.parse(words)
            if c.name in option.commands:
                assert set(parsed.after) == {option.dest}, (name, c.name)
                assert name not in parsed.args
            else:  # a kas command: not ours, so it is kas's
                assert parsed.after == {} and name in parsed.args, (name, c.name)


def test_every_name_the_parser_accepts_comes_from_the_table() -> None:
    # before the command: nothing but the table's names
    for word in ("--kvmm", "--isar-rootles", "-x", "--json", "--explain", "-c"):
        with pytest.raises(UsageError, match="no such option"):
            cmdline.parse([word, "build"])
    # after a kas command, a name not in the table is kas's
    for word in ("--update", "--force-checkout", "-E2", "--kv"):
        assert cmdline.parse(["build", word]).args == (word,)
    # commands: only the table's words
    for word in ("bild", "images", "completions", "help"):
        with pytest.raises(UsageError, match="no such command"):
            cmdline.parse([word])


# --------------------------------------------------------------------------
# cli.Options: derived from the table
# --------------------------------------------------------------------------


def test_options_has_exactly_the_table_fields_with_their_defaults() -> None:
    opts = Options()
    for option in OPTION_TABLE:
        assert getattr(opts, option.dest) == option.default
    with pytest.raises(AttributeError):
        _ = opts.not_an_option
    with pytest.raises(TypeError, match="not an option's field: bogus"):
        Options({"bogus": 1})
    assert opts.credentials == CredentialOptions()


def test_every_options_attribute_cli_reads_is_a_table_field() -> None:
    own = {n for n in vars(Options) if not n.startswith("__")}
    tree = ast.parse((ROOT / "kasctl" / "cli.py").read_text())
    read = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "opts"
    }
    assert read - own <= set(spec.DEFAULTS), read - own - set(spec.DEFAULTS)
    # CredentialOptions' fields are the table's fields of the same names
    assert set(CredentialOptions.__dataclass_fields__) <= set(spec.DEFAULTS)


def test_a_parsed_command_line_fills_only_table_fields() -> None:
    parsed = cmdline.parse(
        ["--isar", "--kvm", "-l", "info", "--ssh-dir", "/s", "build", "--json", "-c", "t"]
    )
    opts = Options.given(parsed.options())
    assert (opts.isar_privileged, opts.kvm, opts.log_level, opts.as_json, opts.cmd) == (
        True, True, "info", True, "t",
    )  # fmt: skip
    assert opts.credentials == CredentialOptions(ssh_dir="/s")
    assert parsed.warnings == ("--isar is deprecated and means --isar-privileged",)


# --------------------------------------------------------------------------
# what reads the commands
# --------------------------------------------------------------------------


def test_cli_carries_out_exactly_the_tables_commands() -> None:
    own = {c.name for c in COMMAND_TABLE if c.runs == OWN}
    assert set(flow.OWN_COMMANDS) == own
    assert set(commands.COMMANDS) == {c.name for c in COMMAND_TABLE if c.runs == KAS}


def test_clean_and_the_entrypoint_read_the_cleaner_commands() -> None:
    cleaners = {c.name for c in COMMAND_TABLE if c.cleaner}
    assert set(clean.COMMANDS) == cleaners == set(ep.CLEANS)
    assert cleaners <= {c.name for c in COMMAND_TABLE if c.cleans}


@pytest.mark.parametrize("command", COMMAND_TABLE, ids=repr)
def test_the_entrypoint_accepts_exactly_the_kas_commands(command: spec.Command) -> None:
    argv = [command.name, "/repo/kas.yml"]
    if command.runs == KAS:
        assert ep.command_line(argv) == ["kas", *argv]
        assert ep.command_line(["-l", "debug", *argv]) == ["kas", "-l", "debug", *argv]
        assert ep.kas_command(ep.command_line(["-l", "debug", *argv])) == command.name
    else:
        with pytest.raises(ep.EntrypointError, match="not a kas command"):
            ep.command_line(argv)
    assert set(ep.KAS_COMMANDS) == set(spec.KAS_COMMANDS)


def test_the_entrypoint_takes_only_a_log_level_before_the_command() -> None:
    with pytest.raises(ep.EntrypointError, match="'-l' is not a kas command"):
        ep.command_line(["-l", "loud", "build"])
    with pytest.raises(ep.EntrypointError, match="'-l' is not a kas command"):
        ep.command_line(["-l", "debug"])
    assert ep.kas_command(["kas", "clean"]) == "clean"
    assert ep.kas_command(["id", "-u"]) is None


# --------------------------------------------------------------------------
# help and the two options kas-container has and kasctl passes on
# --------------------------------------------------------------------------


def test_help_lists_kas_containers_usage_forms_and_kasctls_own() -> None:
    text = cmdline.main_help()
    usage = text.split("\n\n", 1)[0]
    assert (
        "kasctl [OPTIONS] { build | checkout | dump | lock | shell | clean | cleansstate | "
        "cleanall | purge } [KASOPTIONS] [KASFILE]" in usage
    )
    assert "kasctl [OPTIONS] diff [KASOPTIONS] KASFILE1 KASFILE2" in usage
    assert "kasctl [OPTIONS] completion { bash | zsh | fish }" in usage
    for c in COMMAND_TABLE:
        assert c.name in usage, c


def test_kvm_and_log_level_reach_the_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "kas.yml").write_text("header:\n  version: 14\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KAS_ALLOW_ROOT", "yes")
    monkeypatch.setattr(flow.detect, "choose_engine", lambda *_: "podman")
    monkeypatch.setattr(
        flow.detect,
        "engine_facts",
        lambda *_: EngineFacts(mode=EngineMode.ROOTLESS_PODMAN, binary="podman", version="5"),
    )
    got: list[Request] = []

    def plan_and_run(req: Request, *_: object) -> int:
        got.append(req)
        return 0

    monkeypatch.setattr(flow, "plan_and_run", plan_and_run)
    for argv, kvm, level in [
        (["build", "kas.yml"], False, None),
        (["--kvm", "-l", "info", "build", "kas.yml"], True, "info"),
        (["-l", "debug", "build", "--kvm", "--log-level", "error", "kas.yml"], True, "error"),
    ]:
        assert kasctl_cli.run(cmdline.parse(argv)) == 0
        assert (got[-1].kvm, got[-1].kas_log_level) == (kvm, level), argv


def test_the_log_level_goes_to_kas_before_its_command() -> None:
    plan = make_plan(EngineMode.ROOTLESS_PODMAN, IR, kas_args=("/repo/kas.yml",))
    assert plan.command[:2] == ("build", "/repo/kas.yml")
    plan = make_plan(
        EngineMode.ROOTLESS_PODMAN, IR, kas_args=("/repo/kas.yml",), kas_log_level="debug"
    )
    assert plan.command[:4] == ("-l", "debug", "build", "/repo/kas.yml")
