"""Which images are kasctl's, read in the one `image inspect` that checks the image exists,
and isar-rootless refused in any other before a container starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kasctl import __version__, flow
from kasctl.build_system import BuildSystem
from kasctl.decide.plan import Request, RunPlan
from kasctl.engine import engines, image, launch
from kasctl.errors import UsageError
from kasctl.host.facts import EngineFacts, EngineMode, HostFacts
from kasctl.input.options import Options
from kasctl.report import doctor

KASCTL = f"localhost/kasctl/kas-isar:{__version__}"


def fake_engine(tmp_path: Path, stdout: str, status: int = 0) -> tuple[list[str], Path]:
    """An engine binary that logs each call's argv (one line) and prints `stdout`."""
    calls = tmp_path / "calls"
    script = tmp_path / "engine"
    script.write_text(
        f'#!/bin/sh\necho "$@" >> {calls}\ncat <<"EOF"\n{stdout}\nEOF\nexit {status}\n'
    )
    script.chmod(0o755)
    return [str(script)], calls


def test_labels_come_from_one_inspect_call(tmp_path: Path) -> None:
    engine, calls = fake_engine(tmp_path, '{"io.kasctl.version":"0.1.0","x":"y"}')
    assert image.image_labels(engine, "some/image:1") == {"io.kasctl.version": "0.1.0", "x": "y"}
    assert calls.read_text().splitlines() == [
        "image inspect --format {{json .Config.Labels}} some/image:1"
    ]
    assert image.image_exists(engine, "some/image:1")


def test_a_missing_image_has_no_labels(tmp_path: Path) -> None:
    engine, _calls = fake_engine(tmp_path, "", status=1)
    assert image.image_labels(engine, "nope:1") is None
    assert not image.image_exists(engine, "nope:1")


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ('{"io.kasctl.version":"0.1.0"}', {"io.kasctl.version": "0.1.0"}),
        ("null", {}),  # an image without labels (debian:trixie, in both engines)
        ("", {}),
        ("not json", {}),
        ('["a"]', {}),
    ],
)
def test_parse_labels(text: str, labels: dict[str, str]) -> None:
    assert image.parse_labels(text) == labels


@pytest.mark.parametrize(
    ("labels", "kasctls"),
    [
        ({"io.kasctl.version": "0.1.0"}, True),
        ({"io.kasctl.version": "0.0.9", "com.example.team": "ci"}, True),  # derived, older
        ({"io.kasctl.version": ""}, False),  # `LABEL io.kasctl.version=""` clears it
        ({"io.kasctl.version": "  "}, False),
        ({"org.opencontainers.image.source": "https://github.com/siemens/kas"}, False),
        ({}, False),
    ],
)
def test_an_image_is_kasctls_by_its_label(labels: dict[str, str], kasctls: bool) -> None:
    assert image.is_kasctls(labels) is kasctls


def test_the_refusal_says_why_and_how_to_derive() -> None:
    env = {"KAS_CONTAINER_IMAGE": "ghcr.io/siemens/kas/kas-isar:5.5"}
    error = image.foreign_image_error("ghcr.io/siemens/kas/kas-isar:5.5", env)
    assert isinstance(error, UsageError) and error.exit_code == 2
    assert error.render().splitlines() == [
        "kasctl: error: image ghcr.io/siemens/kas/kas-isar:5.5 (KAS_CONTAINER_IMAGE) is not "
        "kasctl's (no io.kasctl.version label): its entrypoint, sudo and setuid binaries are "
        "not kasctl's, so sudo would be available to this isar-rootless build",
        f"kasctl: fix: derive your image from kasctl's: `FROM {KASCTL}` plus your additions "
        "(`kasctl image build` makes it), or leave KAS_CONTAINER_IMAGE unset",
    ]


def test_the_refusal_names_the_variables_that_chose_the_image() -> None:
    env = {"KAS_CONTAINER_IMAGE_PATH": "ghcr.io/siemens/kas", "KAS_IMAGE_VERSION": "5.5"}
    error = image.foreign_image_error("ghcr.io/siemens/kas/kas-isar:5.5", env)
    assert "(KAS_CONTAINER_IMAGE_PATH, KAS_IMAGE_VERSION) is not kasctl's" in error.message
    assert error.fix is not None
    assert error.fix.endswith("or unset KAS_CONTAINER_IMAGE_PATH and KAS_IMAGE_VERSION")
    plain = image.foreign_image_error(KASCTL, {})
    assert f"image {KASCTL} is not kasctl's" in plain.message
    assert plain.fix is not None and plain.fix.endswith("rebuild it with `kasctl image build`")


def _plan_and_run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    build_system: BuildSystem,
    labels: dict[str, str],
) -> list[RunPlan]:
    """flow.plan_and_run with the image's labels given and the container run recorded."""
    work = tmp_path / "proj"
    work.mkdir()
    for var in ("KAS_BUILD_DIR", "DL_DIR", "SSTATE_DIR", "KAS_BUILDTOOLS_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KAS_CONTAINER_IMAGE", "ghcr.io/siemens/kas/kas-isar:5.5")
    monkeypatch.setattr(doctor, "preflight", lambda *_a, **_k: None)
    monkeypatch.setattr(image, "image_labels", lambda *_a: labels)
    monkeypatch.setattr(launch, "leftovers", lambda *_a: ([], []))
    ran: list[RunPlan] = []

    def run(p: RunPlan) -> int:
        ran.append(p)
        return 0

    monkeypatch.setattr(engines, "run", run)
    req = Request(
        command="shell",
        build_system=build_system,
        work_dir=work,
        image=os.environ["KAS_CONTAINER_IMAGE"],
        name="kasctl-unit",
    )
    host = HostFacts(uid=1000, gid=1000, user="me", home=str(tmp_path))
    engine = EngineFacts(mode=EngineMode.ROOTFUL_PODMAN, binary="/usr/bin/podman", version="5")
    flow.plan_and_run(req, host, engine, Options())
    return ran


def test_isar_rootless_in_a_foreign_image_is_refused_before_the_container(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(UsageError, match="not kasctl's"):
        _plan_and_run(tmp_path, monkeypatch, BuildSystem.ISAR_ROOTLESS, {"io.kasctl.version": ""})
    assert list((tmp_path / "proj").iterdir()) == []


@pytest.mark.parametrize(
    ("build_system", "labels"),
    [
        (BuildSystem.ISAR_ROOTLESS, {"io.kasctl.version": "0.1.0"}),  # derived: entrypoint forced
        (BuildSystem.OPENEMBEDDED, {}),  # how OE users bring their host tools
        (BuildSystem.ISAR_PRIVILEGED, {}),
    ],
)
def test_other_images_and_build_systems_run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    build_system: BuildSystem,
    labels: dict[str, str],
) -> None:
    ran = _plan_and_run(tmp_path, monkeypatch, build_system, labels)
    assert len(ran) == 1
    forced = build_system is BuildSystem.ISAR_ROOTLESS
    assert ran[0].entrypoint == (image.ENTRYPOINT if forced else ())


def test_the_image_gets_the_whole_package_and_the_build_context(tmp_path: Path) -> None:
    """The wheel for the image carries every kasctl module (the entrypoint imports its own
    package), and the Dockerfile and container files are found beside the package."""
    import zipfile

    wheel = image.write_self_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "kasctl/__init__.py",
        "kasctl/spec.py",
        "kasctl/errors.py",
        "kasctl/inside/__init__.py",
        "kasctl/inside/entrypoint.py",
        "kasctl/inside/subids.py",
        "kasctl/inside/clean.py",
    } <= names
    data = image._data_dir()
    assert (data / "Dockerfile").is_file()
    assert (data / "container" / "sudo-blocked").is_file()
    assert (data / "container" / "bwrap-merged-usr").is_file()
