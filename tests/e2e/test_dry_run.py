"""`--dry-run` on the shipped example prints a complete engine command and runs nothing."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from .harness import ROOT, kasctl_bin, make_runner

pytestmark = pytest.mark.e2e

EXAMPLE = ROOT / "examples" / "isar-rootless-qemuamd64.yml"

EXPECTED = {
    "rootless-podman": ["--userns=keep-id", "--cap-add=SYS_ADMIN", "--security-opt=unmask=ALL"],
    "system-docker": [
        "--cap-add=SYS_ADMIN",
        "--security-opt=systempaths=unconfined",
        "--security-opt=seccomp=/usr/share/containers/seccomp.json",
    ],
}


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_dry_run_of_the_example_is_a_complete_command(mode: str) -> None:
    runner = make_runner(mode)
    work = Path(tempfile.mkdtemp(prefix="kasctl-dry-", dir="/tmp"))
    try:
        work.chmod(0o755)
        shutil.copy(EXAMPLE, work / EXAMPLE.name)
        result = runner.kasctl("build", "--dry-run", EXAMPLE.name, cwd=work)
        assert result.returncode == 0
        argv = shlex.split(result.stdout.strip())
        assert Path(argv[0]).name == runner.mode.engine
        assert argv[1:4] == ["run", "--rm", "--init"]
        for flag in EXPECTED[mode]:
            assert flag in argv
        assert "--privileged" not in argv
        assert not any("unconfined" in a and "seccomp" in a for a in argv)
        assert f"--mount=type=bind,source={work},target=/work" in argv
        assert argv[-2:] == ["build", f"/repo/{EXAMPLE.name}"]
        # isar-rootless starts kasctl's entrypoint by name, whatever the image's ENTRYPOINT
        assert argv[-4:-2] == ["-I", "/usr/lib/kasctl/entrypoint.py"]
        assert argv[-5].startswith("localhost/kasctl/kas-isar:")
        assert argv[-6] == "--entrypoint=/usr/bin/python3"
        # nothing ran: no build dir appeared
        assert not (work / "build").exists()
    finally:
        shutil.rmtree(work)


def test_the_example_passes_the_schema_of_the_kas_in_the_image() -> None:
    """kas's own check of the file, by the kas that will read it (no network: no checkout)."""
    make_runner("system-docker")
    check = (
        "import json, os, sys, yaml, jsonschema, kas\n"
        "schema = json.load(open(os.path.join(os.path.dirname(kas.__file__), 'schema-kas.json')))\n"
        "jsonschema.validate(yaml.safe_load(open(sys.argv[1])), schema)\n"
        "print('valid for kas', kas.__version__)\n"
    )
    image = subprocess.run(
        [kasctl_bin(), "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    result = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--entrypoint",
            "python3",
            f"--mount=type=bind,source={EXAMPLE},target=/example.yml,ro=true",
            f"localhost/kasctl/kas-isar:{image}",
            "-c",
            check,
            "/example.yml",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("valid for kas 5.")
