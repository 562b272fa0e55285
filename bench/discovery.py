"""Discovery on a loopback network: a bootstrap node and N hosts (DHT servers), started
concurrently in batches in host processes of at most 25 hosts each.

For each network size: find_host cold (a new node: start, bootstrap, DHT, status queries)
and warm (a running node whose status cache has expired: ``FinderConfig(status_ttl=0)``,
every host asked again; the candidate list, i.e. DHT and exchange results, is reused for
``candidates_ttl``), warm with every cache expired (``candidates_ttl=0`` too), the
status queries one lookup makes (``node.discovery.last_lookup``), and DHT PROVIDE and
FIND_PROVIDERS times, ours (``DaemonControl``) against p2pclient on the same daemons.
"""

from __future__ import annotations

import contextlib
import math
import time
import uuid

import anyio
from multiaddr import Multiaddr
from p2pclient import Client

from fabstir_sidecar.discovery.config import FinderConfig
from fabstir_sidecar.discovery.matching import HostCriteria
from fabstir_sidecar.node.manager import DiscoveryManager
from fabstir_sidecar.protocols.status import request_status
from fabstir_sidecar.wire.keys import model_cid

from . import refs
from .common import Ctx, HostProc, host_process, raw_p2pd
from .hostproc import MODEL
from .procs import progress
from .stats import Figure, Row, Target

HOSTS_PER_PROCESS = 25
CRITERIA = HostCriteria(required_models=(MODEL,))


DHT_ROWS = {  # row: (what it measures, the reference: p2pclient on the same daemons)
    "dht_provide": ("DHT PROVIDE of a new key", "p2pclient dht_provide"),
    "dht_find": ("DHT FIND_PROVIDERS to the first provider", "p2pclient dht_find_providers"),
}


async def raw_spawn_ms(ctx: Ctx) -> float:
    """p2pd spawn to ready (first IDENTIFY answered), as DaemonProcess does it."""
    async with raw_p2pd(ctx, enable_dht=True, dht_mode="server") as daemon:
        return daemon.ready_ms


async def run(ctx: Ctx) -> None:
    sizes = ctx.pick([4], [n for n in (10, 50, 100) if n <= ctx.max_hosts])
    series: dict[str, list[float]] = {}
    for n in sizes:
        for key, value in (await _network(ctx, n)).items():
            series.setdefault(key, []).append(value)
    ctx.series["discovery"] = series


async def _network(ctx: Ctx, n: int) -> dict[str, float]:
    """The rows of a network of ``n`` hosts; returns its point of the plotted series."""
    warm_n = ctx.pick(3, 15)
    cold_n = ctx.pick(1, 5)
    dht_n = ctx.pick(1, 3)
    settings = FinderConfig()
    async with contextlib.AsyncExitStack() as stack:
        boot = await stack.enter_async_context(
            ctx.node(enable_dht=True, dht_mode="server", max_connections=4 * n + 50)
        )
        ctx.track(boot)
        boot_addr = (await boot.get_addrs())[0]
        progress(f"discovery n={n}: starting {n} hosts")
        t0 = time.perf_counter()
        procs: list[HostProc] = []
        async with anyio.create_task_group() as tg:
            for i in range(math.ceil(n / HOSTS_PER_PROCESS)):
                count = min(HOSTS_PER_PROCESS, n - i * HOSTS_PER_PROCESS)

                async def start(count: int = count, i: int = i) -> None:
                    procs.append(
                        await stack.enter_async_context(
                            host_process(
                                ctx,
                                hosts=count,
                                dht="server",
                                bootstrap=(boot_addr,),
                                wait_advertised=True,
                                batch=8,
                                name=f"fleet{i}",
                                profile_as=f"discovery-n{n}-fleet{i}" if i == 0 else None,
                            )
                        )
                    )

                tg.start_soon(start)
        started_s = time.perf_counter() - t0
        hosts = [h for p in procs for h in p.hosts]
        unadvertised = sum(1 for h in hosts if h.get("advertised_s") is None)
        progress(
            f"discovery n={n}: {len(hosts)} hosts up in {started_s:.1f}s "
            f"({unadvertised} without DHT records yet)"
        )

        # ---- warm: a running node, caches expired before every lookup
        finder = await stack.enter_async_context(
            DiscoveryManager(
                **ctx.node_options(enable_dht=True, dht_mode="server", bootstrap=(boot_addr,)),
                finder=FinderConfig(status_ttl=0.0),
            )
        )
        ctx.track(finder)
        await _first_lookup(finder)
        warm: list[float] = []
        queries: list[float] = []
        candidates: list[float] = []
        for _ in range(warm_n):
            t = time.perf_counter()
            await finder.find_host(CRITERIA)
            warm.append((time.perf_counter() - t) * 1000)
            queries.append(float(finder.discovery.last_lookup.status_queries))
            candidates.append(float(finder.discovery.last_lookup.candidates))
        # warm with every cache expired: DHT and peer exchange again on every lookup too
        uncached_finder = await stack.enter_async_context(
            DiscoveryManager(
                **ctx.node_options(enable_dht=True, dht_mode="server", bootstrap=(boot_addr,)),
                finder=FinderConfig(status_ttl=0.0, candidates_ttl=0.0),
            )
        )
        ctx.track(uncached_finder)
        await _first_lookup(uncached_finder)
        uncached: list[float] = []
        for _ in range(warm_n):
            t = time.perf_counter()
            await uncached_finder.find_host(CRITERIA)
            uncached.append((time.perf_counter() - t) * 1000)
        # reference for warm: one status round trip to one host (a lookup's least work)
        best = hosts[0]["peer_id"]
        single: list[float] = []
        for _ in range(warm_n):
            t = time.perf_counter()
            await request_status(finder.control, best, timeout=5)
            single.append((time.perf_counter() - t) * 1000)

        # ---- cold: a new node each time, its start included
        cold: list[float] = []
        spawn: list[float] = []
        for _ in range(cold_n):
            spawn.append(await raw_spawn_ms(ctx))
            t = time.perf_counter()
            async with DiscoveryManager(
                **ctx.node_options(enable_dht=True, dht_mode="server", bootstrap=(boot_addr,))
            ) as fresh:
                ctx.track(fresh)
                await fresh.find_host(CRITERIA)
                cold.append((time.perf_counter() - t) * 1000)

        # ---- DHT provide / find: ours (DaemonControl) vs p2pclient, on the same daemons
        provide, find, pc_provide, pc_find = await _dht(ctx, finder, boot, dht_n)

    lat = Figure.of(warm, "ms", tail=True)
    target_here = n == 50
    ctx.add(
        Row(
            f"disc.n{n}.warm",
            f"warm find_host, {n} hosts (running node, status cache expired: all asked again)",
            lat,
            Figure.of(single, "ms", tail=True),
            "one status round trip",
            Target("<", 100, on="value", text="p50 < 100 ms") if target_here else None,
            extra={"status_ttl_s": 0.0, "candidates_ttl_s": settings.candidates_ttl},
        )
    )
    ctx.add(
        Row(
            f"disc.n{n}.warm_uncached",
            f"warm find_host, {n} hosts, every cache expired (DHT + exchange each time)",
            Figure.of(uncached, "ms", tail=True),
            Figure.of(single, "ms", tail=True),
            "one status round trip",
        )
    )
    ctx.add(
        Row(
            f"disc.n{n}.cold",
            f"cold find_host, {n} hosts (node start + bootstrap + lookup)",
            Figure.of(cold, "ms"),
            Figure.of(spawn, "ms"),
            "raw p2pd spawn to ready",
            Target("<", 1000, on="value", text="< 1 s") if target_here else None,
        )
    )
    ctx.add(
        Row(
            f"disc.n{n}.status_queries",
            f"status queries per warm lookup, {n} hosts (candidates: {max(candidates):.0f})",
            Figure.of(queries, "queries"),
            Figure.of([float(n)], "hosts"),
            "network size",
            Target(
                "<=",
                settings.max_queries,
                on="value",
                text=f"<= max_queries ({settings.max_queries})",
            ),
            extra={"candidates": Figure.of(candidates, "peers").to_json()},
        )
    )
    dht = {"dht_provide": (provide, pc_provide), "dht_find": (find, pc_find)}
    for key, (what, label) in DHT_ROWS.items():
        ours, ref = (Figure.of(samples, "ms") for samples in dht[key])
        ctx.add(Row(f"disc.n{n}.{key}", f"{what}, {n} hosts", ours, ref, label))
    progress(
        f"discovery n={n}: warm {lat.median:.1f} ms, cold {Figure.of(cold, '').median:.0f} ms, "
        f"{Figure.of(queries, '').median:.0f} status queries"
    )
    point: dict[str, float] = {"hosts": n, "warm_p50": lat.median, "warm_p99": lat.p99 or math.nan}
    for key, samples in (
        ("cold_median", cold),
        ("status_queries", queries),
        ("candidates", candidates),
        ("provide_ms", provide),
        ("find_ms", find),
    ):
        point[key] = Figure.of(samples, "").median
    point["start_s"] = started_s
    return point


async def _first_lookup(node: DiscoveryManager) -> None:
    """The DHT is eventual: retry until the finder sees a host (bounded)."""
    with anyio.fail_after(30):
        while True:
            try:
                await node.find_host(CRITERIA)
                return
            except Exception:
                await anyio.sleep(0.2)


async def _dht(
    ctx: Ctx, provider: DiscoveryManager, searcher: DiscoveryManager, rounds: int
) -> tuple[list[float], list[float], list[float], list[float]]:
    provide: list[float] = []
    find: list[float] = []
    pc_provide: list[float] = []
    pc_find: list[float] = []
    p_client = Client(control_maddr=Multiaddr(f"/unix{refs.node_control_socket(provider)}"))
    s_client = Client(control_maddr=Multiaddr(f"/unix{refs.node_control_socket(searcher)}"))
    for r in range(rounds):
        for kind in ("ours", "p2pclient") if r % 2 == 0 else ("p2pclient", "ours"):
            cid = model_cid(f"bench-{uuid.uuid4().hex}")
            t = time.perf_counter()
            if kind == "ours":
                await provider.control.dht_provide(cid, timeout=30)
            else:
                with anyio.fail_after(30):
                    await p_client.dht_provide(cid)
            (provide if kind == "ours" else pc_provide).append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            if kind == "ours":
                found = searcher.control.dht_find_providers(cid, count=1, timeout=10)
                async with contextlib.aclosing(found):  # never leave it to the GC (cancel scopes)
                    async for _peer in found:
                        break
            else:
                with anyio.fail_after(10):
                    await s_client.dht_find_providers(cid, 1)
            (find if kind == "ours" else pc_find).append((time.perf_counter() - t) * 1000)
    return provide, find, pc_provide, pc_find
