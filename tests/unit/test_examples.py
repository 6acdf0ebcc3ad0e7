"""The shipped examples are what a new user copies: checked by kasctl's own loader."""

from __future__ import annotations

import re
from pathlib import Path

from kasctl.build_system import BuildSystem
from kasctl.config import read

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


def test_isar_example_builds_rootless_from_a_pinned_isar_with_its_own_fragments() -> None:
    cfg = read.load(str(EXAMPLES / "isar-rootless-qemuamd64.yml"))
    assert cfg.build_system is BuildSystem.ISAR_ROOTLESS
    data = cfg.files[0].data
    isar = data["repos"]["isar"]
    assert isar["url"] == "https://github.com/ilbers/isar.git"
    # the only branch with the rootless series, and a commit on it, never a moving ref
    assert isar["branch"] == "wzh/devel"
    assert re.fullmatch(r"[0-9a-f]{7,40}", isar["commit"])
    included = {(i["repo"], i["file"]) for i in data["header"]["includes"]}
    assert ("isar", "kas/isar.yaml") in included
    assert ("isar", "kas/package/pkg_hello.yaml") in included, "a package built by sbuild"
    assert {f.split("/")[1] for _, f in included if f.count("/") == 2} >= {
        "distro",
        "machine",
        "image",
    }
