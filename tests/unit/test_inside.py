"""kasctl.inside, the code that runs inside the container, stays stdlib-only and light.

The image's Python has no PyYAML or jsonschema to rely on (kas brings its
own, in its own versions), and the entrypoint runs before every build. Each
module of the package is imported by a bare interpreter (`-I -S`: no site
packages) from a tree that holds nothing of kasctl but the package and the
two leaves it may share with the host (kasctl.errors, kasctl.spec): an
import of anything else fails here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
INSIDE = sorted(p.stem for p in (ROOT / "kasctl" / "inside").glob("*.py") if p.stem != "__init__")
SHARED = ("__init__.py", "errors.py", "spec.py")


@pytest.fixture(scope="module")
def boundary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("inside")
    (tree / "kasctl").mkdir()
    for name in SHARED:
        shutil.copy2(ROOT / "kasctl" / name, tree / "kasctl" / name)
    shutil.copytree(ROOT / "kasctl" / "inside", tree / "kasctl" / "inside")
    return tree


def _loaded(tree: Path, module: str) -> set[str]:
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(tree)!r})\n"
        f"import {module}\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_the_package_holds_the_entrypoint_the_sub_id_arithmetic_and_the_clean() -> None:
    assert {"entrypoint", "subids", "clean"} <= set(INSIDE)


@pytest.mark.parametrize("name", INSIDE)
def test_each_module_imports_only_the_stdlib_and_the_shared_leaves(
    boundary: Path, name: str
) -> None:
    loaded = _loaded(boundary, f"kasctl.inside.{name}")
    ours = {m for m in loaded if m.split(".")[0] == "kasctl"}
    assert ours <= {"kasctl", "kasctl.errors", "kasctl.spec", "kasctl.inside"} | {
        f"kasctl.inside.{n}" for n in INSIDE
    }, ours
    others = {m.split(".")[0] for m in loaded} - {"kasctl"}
    assert others <= set(sys.stdlib_module_names) | {"__main__"}, others - set(
        sys.stdlib_module_names
    )


def test_the_entrypoint_skips_the_slow_stdlib_modules(boundary: Path) -> None:
    """It starts before every build: no dataclasses (inspect, re), typing or shlex."""
    loaded = _loaded(boundary, "kasctl.inside.entrypoint")
    assert not {"dataclasses", "typing", "shlex"} & loaded
