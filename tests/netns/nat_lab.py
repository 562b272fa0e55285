"""A small internet with home routers, made of network namespaces, for the NAT tests.

Layout (``<P>`` is the "public" /24, ``<L_i>`` the private LAN behind router ``gw<i>``)::

      fabnat-sw-<t>  br0 ─┬─ r   <P>.1   relay / bootstrap node
                          ├─ c   <P>.2   client
                          ├─ o1..oK <P>.(20+k)  extra public peers (AutoNAT servers, observers)
                          └─ gw<i> wan0 <P>.(10+i) ── MASQUERADE ── lan0 <L_i>.1
                                                                     └─ h<i>  <L_i>.2

Nothing links to the root namespace or a real interface, so no packet leaves the namespaces
even when ``<P>`` is a public-looking range (go-libp2p treats 10/8 as private, so AutoNAT
only works with a public-looking one). Routers forward LAN→WAN, let only replies back in
(FORWARD and INPUT: ESTABLISHED,RELATED, else DROP: unsolicited SYNs are dropped, not
answered with RST, as on real home routers).

p2pd runs *inside* a namespace through a wrapper script (``exec ip netns exec NS p2pd``)
while the Python node that drives it stays in the test process: the control and handler
sockets are Unix sockets, which live in the file system, not in a network namespace.
Teardown kills whatever is left in the lab's namespaces, deletes them, and asserts both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import anyio

from fabstir_sidecar.node.manager import DiscoveryManager
from fabstir_sidecar.node.reachability import Reachability, reachability_of

PREFIX = "fabnat"


def run(*argv: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    full = ["ip", "netns", "exec", ns, *argv] if ns else list(argv)
    result = subprocess.run(full, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(full)} failed: {result.stderr.strip()}")
    return result


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("ip", *args, check=check)


def netns_pids(ns: str) -> list[int]:
    return [int(p) for p in ip("netns", "pids", ns, check=False).stdout.split()]


def listed_namespaces() -> set[str]:
    return {line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()}


def remove_namespaces(created: list[str], what: str) -> None:
    """Kill whatever is left in ``created`` (our own namespaces, so only our processes),
    delete them, and assert both that they are gone and that nothing had been left."""
    leftovers: dict[str, list[int]] = {}
    for ns in created:
        pids = netns_pids(ns)
        if pids:
            leftovers[ns] = pids
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2 if leftovers else 0)
    for ns in reversed(created):
        ip("netns", "del", ns, check=False)
    remaining = [ns for ns in created if ns in listed_namespaces()]
    assert not remaining, f"namespaces not deleted: {remaining}"
    assert not leftovers, f"processes were left in {what}: {leftovers}"


def can_make_namespaces() -> str | None:
    """None if this process may create network namespaces, else why not."""
    if shutil.which("ip") is None or shutil.which("iptables") is None:
        return "needs iproute2's `ip` and iptables"
    probe = f"{PREFIX}-probe-{secrets.token_hex(3)}"
    result = ip("netns", "add", probe, check=False)
    if result.returncode != 0:
        return f"cannot create network namespaces (needs root): {result.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


@dataclasses.dataclass
class NatLab:
    tag: str
    public_prefix: str
    ns: dict[str, str] = dataclasses.field(default_factory=dict)
    addr: dict[str, str] = dataclasses.field(default_factory=dict)
    wrappers: dict[str, Path] = dataclasses.field(default_factory=dict)

    @property
    def namespaces(self) -> list[str]:
        return list(self.ns.values())

    def p2pd(self, role: str) -> str:
        """A p2pd "binary" that runs the real one inside ``role``'s namespace."""
        return str(self.wrappers[role])

    def listen(self, role: str, transport: str = "tcp") -> str:
        if transport == "quic-v1":
            return f"/ip4/{self.addr[role]}/udp/4001/quic-v1"
        return f"/ip4/{self.addr[role]}/tcp/4001"

    def exec(self, role: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(*argv, ns=self.ns[role], check=check)

    def pids(self) -> dict[str, list[int]]:
        found = {ns: netns_pids(ns) for ns in self.namespaces}
        return {ns: pids for ns, pids in found.items() if pids}


def _link(lab: NatLab, role: str, switch_ns: str, port: str, ifname: str, cidr: str) -> None:
    ns = lab.ns[role]
    ip("-n", ns, "link", "add", ifname, "type", "veth", "peer", "name", port, "netns", switch_ns)
    ip("-n", switch_ns, "link", "set", port, "master", "br0")
    ip("-n", switch_ns, "link", "set", port, "up")
    ip("-n", ns, "addr", "add", cidr, "dev", ifname)
    ip("-n", ns, "link", "set", ifname, "up")


def _router_rules(lab: NatLab, role: str) -> None:
    ns = lab.ns[role]
    run("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=ns)
    rules = [
        ["-t", "nat", "-A", "POSTROUTING", "-o", "wan0", "-j", "MASQUERADE"],
        ["-P", "FORWARD", "DROP"],
        ["-A", "FORWARD", "-i", "lan0", "-o", "wan0", "-j", "ACCEPT"],
        ["-A", "FORWARD", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        ["-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        ["-A", "INPUT", "-i", "wan0", "-j", "DROP"],
    ]
    for rule in rules:
        run("iptables", *rule, ns=ns)


@contextlib.contextmanager
def nat_lab(
    tmp: Path, p2pd: str, *, public: bool = True, natted: int = 1, observers: int = 0
) -> Iterator[NatLab]:
    """Build the lab (see the module docstring), yield it, tear it down (asserted)."""
    tag = secrets.token_hex(3)
    a, b = secrets.randbelow(200) + 20, secrets.randbelow(250) + 1
    # 11.0.0.0/8: a public-looking range that, inside these isolated namespaces, goes nowhere.
    prefix = f"11.{a}.{b}" if public else f"10.{a}.{b}"
    lab = NatLab(tag, prefix)
    created: list[str] = []

    def add_ns(role: str) -> str:
        name = f"{PREFIX}-{role}-{tag}"
        ip("netns", "add", name)
        created.append(name)
        lab.ns[role] = name
        ip("-n", name, "link", "set", "lo", "up")
        return name

    try:
        sw = add_ns("sw")
        ip("-n", sw, "link", "add", "br0", "type", "bridge")
        ip("-n", sw, "link", "set", "br0", "up")
        publics = [("r", 1), ("c", 2)] + [(f"o{k}", 20 + k) for k in range(1, observers + 1)]
        for role, host_no in publics:
            add_ns(role)
            lab.addr[role] = f"{prefix}.{host_no}"
            _link(lab, role, sw, f"p{host_no}", "eth0", f"{prefix}.{host_no}/24")
        for i in range(1, natted + 1):
            gw, h = f"gw{i}", f"h{i}"
            lan = f"192.168.{(a + i) % 250 + 1}"
            add_ns(gw)
            lab.addr[gw] = f"{prefix}.{10 + i}"
            _link(lab, gw, sw, f"p{10 + i}", "wan0", f"{prefix}.{10 + i}/24")
            add_ns(h)
            lab.addr[h] = f"{lan}.2"
            lab.addr[f"{gw}-lan"] = f"{lan}.1"
            ip("-n", lab.ns[h], "link", "add", "eth0", "type", "veth", "peer", "name", "lan0")
            ip("-n", lab.ns[h], "link", "set", "lan0", "netns", lab.ns[gw])
            ip("-n", lab.ns[gw], "addr", "add", f"{lan}.1/24", "dev", "lan0")
            ip("-n", lab.ns[gw], "link", "set", "lan0", "up")
            ip("-n", lab.ns[h], "addr", "add", f"{lan}.2/24", "dev", "eth0")
            ip("-n", lab.ns[h], "link", "set", "eth0", "up")
            ip("-n", lab.ns[h], "route", "add", "default", "via", f"{lan}.1")
            _router_rules(lab, gw)
        for role, ns in lab.ns.items():
            wrapper = tmp / f"p2pd-{role}"
            wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {ns} {p2pd} "$@"\n')
            wrapper.chmod(0o700)
            lab.wrappers[role] = wrapper
        yield lab
    finally:
        remove_namespaces(created, "the lab's namespaces")


def metrics_fetcher(lab: NatLab, role: str) -> Callable[[str], Awaitable[str]]:
    """A ``fetch`` for :func:`~fabstir_sidecar.node.reachability.reachability_of` that reads
    the metrics of a p2pd running in ``role``'s namespace (its loopback is not ours)."""

    async def fetch(addr: str) -> str:
        result = await anyio.run_process(
            ["ip", "netns", "exec", lab.ns[role], "curl", "-sf", f"http://{addr}/metrics"],
            check=False,
        )
        if result.returncode != 0:
            raise OSError(f"metrics of {role} at {addr}: curl exit {result.returncode}")
        return result.stdout.decode()

    return fetch


async def reachability_when(
    lab: NatLab,
    role: str,
    node_: DiscoveryManager,
    done: Callable[[Reachability], bool],
    poll: float = 0.1,
) -> Reachability:
    """``role``'s reachability report, polled every ``poll`` s until ``done`` holds."""
    fetch = metrics_fetcher(lab, role)
    found = await reachability_of(node_, fetch=fetch)
    while not done(found):
        await anyio.sleep(poll)
        found = await reachability_of(node_, fetch=fetch)
    return found


_UPNP_NFT = """\
table inet filter {
    chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }
    chain miniupnpd { }
    chain prerouting { type nat hook prerouting priority -100; policy accept;
                       jump prerouting_miniupnpd; }
    chain postrouting { type nat hook postrouting priority 100; policy accept;
                        jump postrouting_miniupnpd; }
    chain prerouting_miniupnpd { }
    chain postrouting_miniupnpd { }
}
"""


@contextlib.contextmanager
def miniupnpd(lab: NatLab, tmp: Path, router: str = "gw1") -> Iterator[subprocess.Popen[bytes]]:
    """miniupnpd (UPnP-IGD and NAT-PMP) on ``router``'s LAN side, mapping to its WAN side;
    stopped (and waited for) on exit. Its nftables chains live in the router's namespace."""
    binary = shutil.which("miniupnpd")
    if binary is None:
        raise FileNotFoundError("miniupnpd (Debian package miniupnpd-nftables) is not installed")
    lan = lab.addr[f"{router}-lan"].rsplit(".", 1)[0]
    nft = tmp / f"{router}-upnp.nft"
    nft.write_text(_UPNP_NFT)
    lab.exec(router, "nft", "-f", str(nft))
    # mapped (DNATed) connections must get through the router's FORWARD DROP policy
    lab.exec(
        router, "iptables", "-I", "FORWARD", "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"
    )
    conf = tmp / f"{router}-miniupnpd.conf"
    conf.write_text(
        "\n".join(
            [
                "ext_ifname=wan0",
                "listening_ip=lan0",
                "http_port=0",
                "enable_natpmp=yes",
                "enable_upnp=yes",
                "secure_mode=yes",
                "system_uptime=yes",
                f"uuid=3a5f0c2e-6f2b-4d3b-9d7e-{lab.tag}000000",
                f"allow 1024-65535 {lan}.0/24 1024-65535",
                "deny 0-65535 0.0.0.0/0 0-65535",
                "",
            ]
        )
    )
    log = (tmp / f"{router}-miniupnpd.log").open("wb")
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            lab.ns[router],
            binary,
            "-d",
            "-f",
            str(conf),
            "-P",
            str(tmp / f"{router}-miniupnpd.pid"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()
