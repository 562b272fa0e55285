#!/usr/bin/env python3
"""Build the container images offline: ``fabstir-p2pd:local``, ``fabstir-python:local`` (the
library without p2pd, for apps beside a p2pd sidecar), ``fabstir-sidecar:local`` and
``fabstir-curl:local`` (curl alone: the compose stack's client of the HTTP gateway).

    python3 daemon/build_images.py                  # FROM python:3.11-slim (pulled if missing)
    python3 daemon/build_images.py --debian-base    # FROM a Debian bookworm made by mmdebstrap
    python3 daemon/build_images.py --base-image my/python:3.11 --curl-base-image my/curl:8

Steps: ``pip wheel`` the project and its dependencies into a wheelhouse (on the host, with the
host's pip settings), copy the p2pd the host would use (``fabstir-sidecar daemon path``: the
cached copy is checked against the pinned sha256) and ``daemon/Dockerfile`` into a temporary
build context, then ``docker build --network none`` each target. The Dockerfile checks the
binary's sha256 once more. Nothing in the build reaches a network.

``--debian-base`` creates the base image from Debian's mirror (``mmdebstrap --variant=minbase
--include=python3,python3-venv,ca-certificates,curl bookworm``) for machines that reach no
container registry; it is the base of all four images (curl included, so nothing is installed
during a build). The tar is kept in ``~/.cache/fabstir-sidecar/docker/`` and imported only when
the image is missing, so a second run on one machine skips both steps. Its file and image names
carry a digest of the package list: a tar or image made from another list is never reused.

Without ``--debian-base`` the curl image is ``FROM curlimages/curl`` (the curl project's own
image; ``python:3.11-slim`` has no curl, and a build never installs packages).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "daemon" / "Dockerfile"
DEFAULT_BASE = "python:3.11-slim"
DEFAULT_CURL_BASE = "curlimages/curl:8.11.1"
# What mmdebstrap adds to bookworm's minbase. Changing the list changes the digest, hence the
# tar's and the image's names (an old cached tar without, say, curl is never reused).
DEBIAN_PACKAGES = ("python3", "python3-venv", "ca-certificates", "curl")
_DIGEST = hashlib.sha256(",".join(DEBIAN_PACKAGES).encode()).hexdigest()[:8]
DEBIAN_BASE = f"fabstir-base:bookworm-{_DIGEST}"
DEBIAN_TAR = f"base-bookworm-minbase-{_DIGEST}.tar"
IMAGES = {
    "p2pd": "fabstir-p2pd:local",
    "library": "fabstir-python:local",
    "sidecar": "fabstir-sidecar:local",
    "curl": "fabstir-curl:local",
}


def _cache_dir() -> Path:
    if os.environ.get("FABSTIR_SIDECAR_CACHE"):
        return Path(os.environ["FABSTIR_SIDECAR_CACHE"]) / "docker"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg.startswith("/") else Path.home() / ".cache"
    return base / "fabstir-sidecar" / "docker"


def _run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    print("+", " ".join(args), file=sys.stderr, flush=True)
    return subprocess.run(args, check=True, text=True, **kwargs)  # type: ignore[call-overload]


def _have_image(name: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode == 0


def debian_base() -> str:
    """Import (after building, if not cached) the mmdebstrap bookworm base; return its name."""
    if _have_image(DEBIAN_BASE):
        return DEBIAN_BASE
    tar = debian_tar()
    _run(["docker", "import", str(tar), DEBIAN_BASE], stdout=subprocess.DEVNULL)
    return DEBIAN_BASE


def debian_tar() -> Path:
    """The mmdebstrap bookworm tar in the cache, built first if it is not there."""
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    tar = cache / DEBIAN_TAR
    if not tar.exists():
        partial = tar.with_name(tar.stem + ".partial.tar")  # mmdebstrap: format from the name
        started = time.monotonic()
        _run(
            [
                "mmdebstrap",
                "--format=tar",
                "--variant=minbase",
                f"--include={','.join(DEBIAN_PACKAGES)}",
                "bookworm",
                str(partial),
            ],
            stdout=subprocess.DEVNULL,
        )
        partial.rename(tar)
        print(f"base tar built in {time.monotonic() - started:.0f}s: {tar}", file=sys.stderr)
    return tar


def _cli(*args: str) -> str:
    """Run the project's CLI (of this interpreter's environment) and return its stdout."""
    cli = Path(sys.executable).with_name("fabstir-sidecar")
    command = [str(cli)] if cli.exists() else [sys.executable, "-m", "fabstir_sidecar"]
    return _run([*command, *args], capture_output=True).stdout.strip()


def prepare_context(context: Path) -> str:
    """Fill ``context`` with Dockerfile, p2pd and wheels/; return the pinned p2pd sha256."""
    shutil.copy2(DOCKERFILE, context / "Dockerfile")
    shutil.copy2(_cli("daemon", "path"), context / "p2pd")
    sha256 = _cli("daemon", "sha256")
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(context / "wheels"), "."],
        cwd=ROOT,
    )
    return sha256


def build(
    base: str, curl_base: str, *, targets: tuple[str, ...] = tuple(IMAGES)
) -> dict[str, float]:
    """Build ``targets`` from ``base`` (``curl`` from ``curl_base``); return each one's build
    time in seconds."""
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="fabstir-image-") as tmp:
        context = Path(tmp)
        started = time.monotonic()
        sha256 = prepare_context(context)
        times["wheelhouse"] = time.monotonic() - started
        for target in targets:
            started = time.monotonic()
            _run(
                [
                    "docker",
                    "build",
                    "--network",
                    "none",
                    "--pull=false",
                    "--target",
                    target,
                    "--build-arg",
                    f"BASE_IMAGE={base}",
                    "--build-arg",
                    f"CURL_BASE_IMAGE={curl_base}",
                    "--build-arg",
                    f"P2PD_SHA256={sha256}",
                    "--label",
                    "org.opencontainers.image.source=https://github.com/fabstir/fabstir-sidecar",
                    "--tag",
                    IMAGES[target],
                    str(context),
                ],
                # The legacy builder (no buildx needed) warns that it is deprecated on every
                # run: its output is shown only when a build fails.
                capture_output=True,
                env={**os.environ, "DOCKER_BUILDKIT": os.environ.get("DOCKER_BUILDKIT", "0")},
            )
            times[target] = time.monotonic() - started
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--base-image", default=None, help=f"base image (default {DEFAULT_BASE})")
    group.add_argument(
        "--debian-base", action="store_true", help="make the base with mmdebstrap (cached)"
    )
    parser.add_argument(
        "--curl-base-image",
        default=None,
        help=f"base of fabstir-curl, must have curl and sh (default {DEFAULT_CURL_BASE}; "
        "with --debian-base: that base)",
    )
    args = parser.parse_args(argv)
    if shutil.which("docker") is None:
        print("build_images: no `docker` client on PATH", file=sys.stderr)
        return 2
    try:
        base = debian_base() if args.debian_base else (args.base_image or DEFAULT_BASE)
        default_curl = base if args.debian_base else DEFAULT_CURL_BASE
        times = build(base, args.curl_base_image or default_curl)
    except subprocess.CalledProcessError as exc:
        print(exc.stdout or "", exc.stderr or "", sep="\n", file=sys.stderr)
        print(f"build_images: `{' '.join(exc.cmd)}` failed ({exc.returncode})", file=sys.stderr)
        return 1
    for target, name in IMAGES.items():
        size = _run(
            ["docker", "image", "inspect", "--format", "{{.Size}}", name], capture_output=True
        ).stdout.strip()
        print(f"{name}: {int(size) / 1e6:.1f} MB, built in {times[target]:.1f}s")
    print(f"wheelhouse and context prepared in {times['wheelhouse']:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
