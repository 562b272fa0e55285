"""The pytest plugin (entry point ``pytest11``): real Fabstir networks as fixtures.

Fixtures: ``fabstir_network`` (async factory), ``fabstir_network_sync`` (its blocking twin),
``fabstir_node``, ``fabstir_host``, ``p2pd_binary``, ``fabstir_shared_network`` (one network
for the whole session, reset between tests; hosts from ``fabstir_shared_hosts``).
Options: ``--fabstir-p2pd``, ``--fabstir-daemon``, ``--fabstir-keep-logs``.

Async fixtures run through anyio's pytest plugin (they request ``anyio_backend``), on
asyncio or trio. The session fails if a p2pd it started survives it (:mod:`.leaks`); the
logs of the library and of every p2pd are attached to a failing test's report.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from fabstir_sidecar.core.errors import DaemonNotFoundError
from fabstir_sidecar.daemon.binary import find_p2pd
from fabstir_sidecar.node.manager import DiscoveryManager
from fabstir_sidecar.testing import leaks
from fabstir_sidecar.testing.logcapture import LogCollector
from fabstir_sidecar.testing.netnode import NetworkNode, process_gone
from fabstir_sidecar.testing.network import NetworkFactory
from fabstir_sidecar.testing.spec import HostSpec
from fabstir_sidecar.testing.sync import SyncNetwork, network_sync
from fabstir_sidecar.testing.timeouts import TimeoutGuard

FIXTURES = frozenset(
    {"fabstir_network", "fabstir_network_sync", "fabstir_node", "fabstir_host"}
    | {"fabstir_shared_network"}
)
PidNames = Callable[[], Mapping[int | str, str]]

_TAG = pytest.StashKey[str]()
_SAVED_TAG = pytest.StashKey[str | None]()
_LOGS = pytest.StashKey[LogCollector]()
_NAMES = pytest.StashKey[list[PidNames]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fabstir", "fabstir-sidecar test networks")
    group.addoption(
        "--fabstir-p2pd",
        metavar="PATH",
        default=None,
        help="p2pd binary for test networks (default: $P2PD_BIN, PATH, then the one "
        "'fabstir-sidecar daemon install' put in the cache)",
    )
    group.addoption(
        "--fabstir-daemon",
        choices=("process", "docker"),
        default="process",
        help="how test nodes run p2pd: a local process (default) or a container",
    )
    group.addoption(
        "--fabstir-keep-logs",
        metavar="DIR",
        nargs="?",
        const="fabstir-logs",
        default=None,
        help="keep every fabstir test's node and p2pd logs, one file per test, in DIR "
        "(default: fabstir-logs under the rootdir); failed tests get them in their "
        "report either way",
    )


def docker_unavailable_reason() -> str | None:
    """Why ``--fabstir-daemon docker`` cannot be used (None once it can)."""
    # The container launcher exists (daemon/container.py, P2P_DAEMON=docker), but test
    # networks listen on loopback, which p2pd containers on separate bridge networks cannot
    # reach; refused clearly rather than running processes silently.
    return (
        "test networks listen on loopback, which p2pd containers cannot reach each other on; "
        "use --fabstir-daemon process (the default)"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fabstir_host(**fields): HostSpec fields of the fabstir_host fixture"
    )
    config.pluginmanager.register(TimeoutGuard(FIXTURES), "fabstir-timeouts")
    if config.getoption("fabstir_daemon") == "docker":
        reason = docker_unavailable_reason()
        if reason is not None:
            raise pytest.UsageError(f"--fabstir-daemon docker: {reason}")
    explicit = config.getoption("fabstir_p2pd")
    if explicit is not None and not os.access(Path(explicit).expanduser(), os.X_OK):
        raise pytest.UsageError(f"--fabstir-p2pd {explicit}: not an executable file")
    # Each session (each xdist worker) tags the processes it starts: see leaks.py.
    config.stash[_SAVED_TAG] = os.environ.get(leaks.TAG_VAR)
    config.stash[_TAG] = os.environ[leaks.TAG_VAR] = leaks.new_tag()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SAVED_TAG not in config.stash:
        return
    saved = config.stash[_SAVED_TAG]
    if saved is None:
        os.environ.pop(leaks.TAG_VAR, None)
    else:
        os.environ[leaks.TAG_VAR] = saved


def _daemon_names(config: pytest.Config) -> tuple[str, ...]:
    explicit = config.getoption("fabstir_p2pd")
    return ("p2pd", Path(explicit).name) if explicit else ("p2pd",)


@pytest.fixture(scope="session", autouse=True)
def _fabstir_leak_check(pytestconfig: pytest.Config) -> Iterator[None]:
    """Fail the session (at its last teardown) if a p2pd it started is still running."""
    tag = pytestconfig.stash[_TAG]
    names = _daemon_names(pytestconfig)
    yield
    deadline = time.monotonic() + 5.0  # daemons being stopped get a moment to exit
    while (leaked := leaks.tagged_daemons(tag, names)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if leaked:
        leaks.kill_all(leaked)
        pytest.fail(
            f"fabstir: p2pd processes started by this test session survived it: "
            f"{sorted(leaked)} (now killed)",
            pytrace=False,
        )


# ---------------------------------------------------------------- logs in reports


def _uses_fabstir(item: pytest.Item) -> bool:
    return bool(FIXTURES & set(getattr(item, "fixturenames", ())))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    if _uses_fabstir(item):
        collector = LogCollector()
        collector.attach()
        item.stash[_LOGS] = collector
        item.stash[_NAMES] = []
    return (yield)


def _render(item: pytest.Item) -> str:
    names = item.stash.get(_NAMES, [])

    def merged() -> dict[int | str, str]:
        return {key: name for source in names for key, name in source().items()}

    return item.stash[_LOGS].render(merged)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and _LOGS in item.stash:
        text = _render(item) or "(no records)"
        report.sections.append((f"fabstir node and p2pd logs ({report.when})", text))
    return report


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    try:
        return (yield)
    finally:
        collector = item.stash.get(_LOGS, None)
        if collector is not None:
            collector.detach()
            if item.config.getoption("fabstir_keep_logs"):
                _keep_logs(item)


def _log_dir(config: pytest.Config) -> Path:
    return config.rootpath / Path(config.getoption("fabstir_keep_logs"))


def _keep_logs(item: pytest.Item) -> None:
    directory = _log_dir(item.config)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid)[-200:]
    (directory / f"{name}.log").write_text(_render(item) + "\n")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    # (under xdist the workers write the files and the controller prints this line)
    if config.getoption("fabstir_keep_logs") and _log_dir(config).is_dir():
        terminalreporter.write_line(f"fabstir: test logs kept in {_log_dir(config)}")


def _register_names(request: pytest.FixtureRequest, names: PidNames) -> None:
    if _NAMES in request.node.stash:
        request.node.stash[_NAMES].append(names)


def _reaper(names: Callable[[], Mapping[int, str]]) -> Callable[[], None]:
    """A last-resort finalizer: if the async teardown could not run (the loop was broken,
    e.g. by a timeout), kill what is left and say so."""

    def reap() -> None:
        alive = {pid: name for pid, name in names().items() if not process_gone(pid)}
        if alive:
            leaks.kill_all(alive)
            pytest.fail(f"fabstir: p2pd of {sorted(alive.values())} outlived the test (killed)")

    return reap


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def p2pd_binary(pytestconfig: pytest.Config) -> Path:
    """The p2pd test nodes run (``--fabstir-p2pd`` or the installed one)."""
    try:
        return find_p2pd(pytestconfig.getoption("fabstir_p2pd"))
    except DaemonNotFoundError as exc:
        pytest.fail(f"fabstir: test networks need p2pd: {exc}", pytrace=False)


@pytest.fixture
async def fabstir_network(
    request: pytest.FixtureRequest, anyio_backend: Any, p2pd_binary: Path
) -> AsyncIterator[NetworkFactory]:
    """``net = await fabstir_network(hosts=[HostSpec(...)], bootstrap=True)``; every
    network is stopped at the end of the test, whatever happened."""
    factory = NetworkFactory(p2pd_path=str(p2pd_binary))
    _register_names(request, factory.log_names)
    request.addfinalizer(_reaper(factory.daemon_pids))
    async with factory:
        yield factory


@pytest.fixture
def fabstir_network_sync(
    request: pytest.FixtureRequest, p2pd_binary: Path
) -> Iterator[Callable[..., SyncNetwork]]:
    """For tests that are not async: ``net = fabstir_network_sync(hosts=[...])`` runs the
    network in a background thread; ``net.client().run_job(...)`` blocks."""
    networks: list[SyncNetwork] = []

    def names() -> dict[int | str, str]:
        return {k: n for net in networks for k, n in net.network.log_names().items()}

    def pids() -> dict[int, str]:
        return {p: n for net in networks for p, n in net.network.daemon_pids().items()}

    _register_names(request, names)
    request.addfinalizer(_reaper(pids))
    with contextlib.ExitStack() as stack:

        def make(
            hosts: Sequence[HostSpec] = (),
            *,
            bootstrap: bool = True,
            backend: str = "asyncio",
            node_options: Mapping[str, Any] | None = None,
        ) -> SyncNetwork:
            net = stack.enter_context(
                network_sync(
                    hosts,
                    bootstrap=bootstrap,
                    p2pd_path=str(p2pd_binary),
                    backend=backend,
                    node_options=node_options,
                )
            )
            networks.append(net)
            return net

        yield make


@pytest.fixture
async def fabstir_node(
    fabstir_network: NetworkFactory, anyio_backend: Any
) -> AsyncIterator[DiscoveryManager]:
    """A running loopback node with no peers (dial with ``connect_to_peer``)."""
    net = await fabstir_network(bootstrap=False)
    yield (await net.add_client_node()).node


@pytest.fixture
async def fabstir_host(
    request: pytest.FixtureRequest, fabstir_network: NetworkFactory, anyio_backend: Any
) -> AsyncIterator[NetworkNode]:
    """One running host, no bootstrap node; ``@pytest.mark.fabstir_host(models=[...])``
    sets its :class:`HostSpec` fields. Faults: ``kill()``, ``pause()``, ``make_busy()``..."""
    marker = request.node.get_closest_marker("fabstir_host")
    spec = HostSpec(**(marker.kwargs if marker else {}))
    net = await fabstir_network(hosts=[spec], bootstrap=False)
    yield net.hosts[0]


@pytest.fixture(scope="session")
def fabstir_shared_hosts() -> list[HostSpec]:
    """The hosts of ``fabstir_shared_network``; override this fixture in a conftest.py."""
    return [HostSpec(models=["echo"]) for _ in range(3)]


@pytest.fixture(scope="session")
def _fabstir_shared(
    fabstir_shared_hosts: list[HostSpec], p2pd_binary: Path
) -> Iterator[SyncNetwork]:
    with network_sync(fabstir_shared_hosts, p2pd_path=str(p2pd_binary)) as net:
        yield net


@pytest.fixture
def fabstir_shared_network(
    request: pytest.FixtureRequest, _fabstir_shared: SyncNetwork
) -> Iterator[SyncNetwork]:
    """One network for the whole session (started once); after each test, faults are
    cleared, stopped or killed hosts restarted and the test's client nodes stopped."""
    net = _fabstir_shared
    _register_names(request, net.network.log_names)
    clients_before = len(net.network.clients)
    yield net
    net.call(_reset_shared, net, clients_before)


async def _reset_shared(net: SyncNetwork, clients_before: int) -> None:
    network = net.network
    for client in network.clients[clients_before:]:
        await client.stop()
    del network.clients[clients_before:]
    for host in network.hosts:
        host.clear_faults()
        await host.resume()
        if not host.running:
            await host.restart()
