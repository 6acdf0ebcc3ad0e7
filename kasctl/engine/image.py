"""Building the kasctl image in the engine the run will use.

The build context is assembled from what this kasctl carries: the
Dockerfile and container/ (shipped in the wheel), a wheel of this very
kasctl (written from its own modules, so the image always matches the host
side), and kas's wheel (downloaded on the host, where HTTPS works, or taken
from KASCTL_WHEEL_DIR). When the base image cannot be pulled (no registry
reachable), it is bootstrapped from the Debian mirror with mmdebstrap and
imported under the base tag.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from kasctl import __version__
from kasctl.errors import HostError, UsageError

log = logging.getLogger("kasctl")

KAS_VERSION = "5.5"
BASE_IMAGE = "debian:trixie"
BASE_SUITE = "trixie"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
STEP = re.compile(r"^(?:STEP|Step) (\d+)/(\d+)\s*:?\s*(.*)")


def default_image(env: Mapping[str, str]) -> str:
    """KAS_CONTAINER_IMAGE wins; else PATH/NAME:VERSION[-DISTRO], as kas-container reads them."""
    if env.get("KAS_CONTAINER_IMAGE"):
        return env["KAS_CONTAINER_IMAGE"]
    path = env.get("KAS_CONTAINER_IMAGE_PATH") or "localhost/kasctl"
    name = env.get("KAS_CONTAINER_IMAGE_NAME") or "kas-isar"
    tag = env.get("KAS_IMAGE_VERSION") or __version__
    distro = env.get("KAS_CONTAINER_IMAGE_DISTRO")
    return f"{path}/{name}:{tag}" + (f"-{distro}" if distro else "")


#: How the engine is invoked: its binary, after the privileged executor if any
#: (isar-privileged reaches the rootful store through sudo, and so must the image).
Engine = Sequence[str]


#: The label that makes an image kasctl's (the Dockerfile sets it; empty counts as absent).
VERSION_LABEL = "io.kasctl.version"
#: kasctl's entrypoint in its image, as the Dockerfile's ENTRYPOINT names it. isar-rootless
#: starts it explicitly (`--entrypoint` takes the first word), so that an image derived
#: from kasctl's cannot replace it, and with it the lock check, by an ENTRYPOINT of its own.
ENTRYPOINT = ("/usr/bin/python3", "-I", "/usr/lib/kasctl/entrypoint.py")
#: The variables that choose the image, as default_image() reads them.
IMAGE_VARS = (
    "KAS_CONTAINER_IMAGE_PATH",
    "KAS_CONTAINER_IMAGE_NAME",
    "KAS_IMAGE_VERSION",
    "KAS_CONTAINER_IMAGE_DISTRO",
)


def image_labels(engine: Engine, image: str) -> dict[str, str] | None:
    """The image's labels, or None when it is not in the engine's store: one `image inspect`."""
    out = subprocess.run(
        [*engine, "image", "inspect", "--format", "{{json .Config.Labels}}", image],
        capture_output=True,
        text=True,
        check=False,
    )
    return parse_labels(out.stdout) if out.returncode == 0 else None


def image_exists(engine: Engine, image: str) -> bool:
    return image_labels(engine, image) is not None


def parse_labels(text: str) -> dict[str, str]:
    """`{{json .Config.Labels}}` as both engines print it: an object, or null for none."""
    try:
        data = json.loads(text.strip() or "null")
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items()}


def is_kasctls(labels: Mapping[str, str]) -> bool:
    """Built from kasctl's Dockerfile, or derived from its image (labels are inherited)."""
    return bool(labels.get(VERSION_LABEL, "").strip())


def foreign_image_error(image: str, env: Mapping[str, str]) -> UsageError:
    """isar-rootless in an image that is not kasctl's: refused before any container starts.

    Its entrypoint would run instead of kasctl's, with whatever sudo and setuid
    binaries the image has (kas's own leaves the builder a passwordless sudo).
    """
    if env.get("KAS_CONTAINER_IMAGE"):
        chosen, unset = " (KAS_CONTAINER_IMAGE)", "leave KAS_CONTAINER_IMAGE unset"
    else:
        names = [v for v in IMAGE_VARS if env.get(v)]
        chosen = f" ({', '.join(names)})" if names else ""
        unset = f"unset {' and '.join(names)}" if names else "rebuild it with `kasctl image build`"
    return UsageError(
        f"image {image}{chosen} is not kasctl's (no {VERSION_LABEL} label): its entrypoint, "
        "sudo and setuid binaries are not kasctl's, so sudo would be available to this "
        "isar-rootless build",
        fix=f"derive your image from kasctl's: `FROM {default_image({})}` plus your additions "
        f"(`kasctl image build` makes it), or {unset}",
    )


#: The kasctl package itself (this module is kasctl/engine/image.py).
PACKAGE = Path(__file__).resolve().parent.parent


def _data_dir() -> Path:
    """Dockerfile and container/: inside the wheel, or in a source checkout."""
    packaged = PACKAGE / "data"
    if (packaged / "Dockerfile").is_file():
        return packaged
    return PACKAGE.parent


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def write_self_wheel(dest: Path) -> Path:
    """A wheel of the running kasctl, for the image.

    The image's entrypoint needs only the stdlib-only modules, but carrying
    the whole package (its modules, kas's config schema, the `kasctl`
    command) keeps one version of the truth on both sides, and makes the
    image a base for CI job images that run kasctl itself
    (examples/ci-job.Containerfile).
    """
    package = PACKAGE
    dist = f"kasctl-{__version__}.dist-info"
    wheel = dest / f"kasctl-{__version__}-py3-none-any.whl"
    files: list[tuple[str, bytes]] = [
        (f"kasctl/{p.relative_to(package).as_posix()}", p.read_bytes())
        for p in sorted(package.rglob("*.py"))
    ]
    from kasctl.config.validate import schema_text

    files.append(("kasctl/data/schema/kas-config.schema.json", schema_text().encode()))
    files.append(
        (f"{dist}/entry_points.txt", b"[console_scripts]\nkasctl = kasctl.__main__:main\n")
    )
    files.append(
        (
            f"{dist}/METADATA",
            f"Metadata-Version: 2.1\nName: kasctl\nVersion: {__version__}\n".encode(),
        )
    )
    files.append(
        (
            f"{dist}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: kasctl\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
    )
    record = [_record_line(n, d) for n, d in files] + [f"{dist}/RECORD,,"]
    import zipfile  # building the image is rare; looking it up is on every run

    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            zf.writestr(name, data)
        zf.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return wheel


def fetch_kas_wheel(dest: Path, env: Mapping[str, str]) -> Path:
    name = f"kas-{KAS_VERSION}-py3-none-any.whl"
    wheel_dir = env.get("KASCTL_WHEEL_DIR")
    if wheel_dir and (Path(wheel_dir) / name).is_file():
        shutil.copy2(Path(wheel_dir) / name, dest / name)
        return dest / name
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            f"kas=={KAS_VERSION}",
            "-d",
            str(dest),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0 or not (dest / name).is_file():
        raise HostError(
            f"cannot download kas {KAS_VERSION} from the package index: "
            + (out.stderr.strip().splitlines() or ["no output"])[-1],
            fix=f"download {name} by hand and set KASCTL_WHEEL_DIR to its directory",
        )
    return dest / name


def bootstrap_base(engine: Engine, tag: str = BASE_IMAGE, mirror: str = DEBIAN_MIRROR) -> None:
    """Make the base image from the Debian mirror (no registry needed) and import it."""
    if not shutil.which("mmdebstrap"):
        raise HostError(
            f"base image {tag} is missing and cannot be bootstrapped: mmdebstrap is not installed",
            fix="install mmdebstrap, or load the base image into the engine by hand",
        )
    print(f"kasctl: bootstrapping base image {tag} from {mirror} with mmdebstrap", file=sys.stderr)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kasctl-base-") as tmp:
        tarball = Path(tmp) / "base.tar"
        _run_logged(
            ["mmdebstrap", "--variant=minbase", BASE_SUITE, str(tarball), mirror], "mmdebstrap"
        )
        _run_logged([*engine, "import", str(tarball), tag], f"{Path(engine[-1]).name} import")
    print(f"kasctl: imported base image {tag}", file=sys.stderr)


def _run_logged(argv: Sequence[str], what: str) -> None:
    out = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if out.returncode != 0:
        tail = "\n".join(out.stderr.strip().splitlines()[-5:])
        raise HostError(f"{what} failed (exit {out.returncode}):\n{tail}")


def ensure_base(engine: Engine, tag: str, bootstrap: bool | None) -> None:
    """bootstrap=True: always mmdebstrap; None: pull, then mmdebstrap if that fails."""
    if bootstrap is not True and image_exists(engine, tag):
        return
    if bootstrap is None:
        pulled = subprocess.run([*engine, "pull", tag], capture_output=True, text=True, check=False)
        if pulled.returncode == 0:
            return
        reason = (pulled.stderr.strip().splitlines() or ["no registry"])[-1]
        print(f"kasctl: cannot pull {tag} ({reason}); falling back to mmdebstrap", file=sys.stderr)
    bootstrap_base(engine, tag)


def build(
    engine: Engine,
    image: str,
    *,
    bootstrap: bool | None = None,
    base: str = BASE_IMAGE,
    env: Mapping[str, str] = os.environ,
) -> None:
    """Build the kasctl image under `image`, showing one progress line per build step."""
    ensure_base(engine, base, bootstrap)
    data = _data_dir()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kasctl-image-") as tmp:
        ctx = Path(tmp)
        shutil.copy2(data / "Dockerfile", ctx / "Dockerfile")
        shutil.copytree(data / "container", ctx / "container")
        (ctx / "wheels").mkdir()
        write_self_wheel(ctx / "wheels")
        fetch_kas_wheel(ctx / "wheels", env)
        argv = [
            *engine,
            "build",
            "-t",
            image,
            "--build-arg",
            f"BASE_IMAGE={base}",
            "--build-arg",
            f"KASCTL_VERSION={__version__}",
            "--build-arg",
            f"KAS_VERSION={KAS_VERSION}",
            str(ctx),
        ]
        log.debug("image build: %s", " ".join(argv))
        _build_with_progress(argv, image)


def _build_with_progress(argv: list[str], image: str) -> None:
    import tempfile

    fd, logpath = tempfile.mkstemp(prefix="kasctl-image-build-", suffix=".log")
    logfile = os.fdopen(fd, "w")
    print(f"kasctl: building image {image} (log: {logpath})", file=sys.stderr)
    with (
        logfile,
        subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
        ) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            logfile.write(line)
            step = STEP.match(line.strip())
            if step:
                print(f"  [{step[1]}/{step[2]}] {step[3][:90]}", file=sys.stderr, flush=True)
        status = proc.wait()
    if status != 0:
        with open(logpath) as f:
            tail = "".join(f.readlines()[-15:])
        raise HostError(
            f"image build failed (exit {status}); last lines:\n{tail}",
            fix=f"read {logpath}; a network or mirror problem often shows there",
        )
    print(f"kasctl: image {image} ready", file=sys.stderr)
