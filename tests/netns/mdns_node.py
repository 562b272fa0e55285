"""A Fabstir node plus mDNS discovery, for the network-namespace tests.

    ip netns exec fabns-a-XXXX python tests/netns/mdns_node.py \\
        --listen /ip4/10.77.3.1/tcp/4001 --p2pd /path/to/p2pd [--query-interval 1.0]

Starts a DiscoveryManager (its own mDNS off: integrating mDNS into the node is separate
work) and an :class:`~fabstir_sidecar.discovery.mdns.MdnsService` on the interfaces that
:func:`~fabstir_sidecar.discovery.mdns.mdns_interfaces` picks for ``--listen``. Prints JSON
lines on stdout::

    {"event": "ready", "peer_id": ..., "addrs": [...], "mdns_interfaces": [...]}
    {"event": "mdns_peer", "peer_id": ..., "addrs": [...]}        per discovery / change
    {"event": "mdns_peer_removed", "peer_id": ...}                 goodbye or expiry
    {"event": "connected", "peer_id": ..., "addr": ...}             after dialing it
    {"event": "connect_failed", "peer_id": ..., "error": ...}
    {"event": "peers", "peers": {peer_id: [addrs]}}                 on SIGUSR1
    {"event": "stopped"}                                            after a clean stop

Dials each discovered peer with ``connect_to_peer``. SIGTERM/SIGINT stop the service (it
says goodbye) and the node (p2pd stops), then the script exits 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from typing import Any

import anyio

from fabstir_sidecar.core.errors import FabstirError
from fabstir_sidecar.discovery.mdns import MdnsService, mdns_interfaces
from fabstir_sidecar.node.manager import DiscoveryManager


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def run(args: argparse.Namespace) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGUSR1) as signals:
        async with DiscoveryManager(
            p2pd_path=args.p2pd, listen=[args.listen], enable_dht=False, enable_mdns=False
        ) as node:
            addrs = await node.get_addrs()
            interfaces = mdns_interfaces([args.listen])

            async def on_peer(peer_id: str, peer_addrs: list[str]) -> None:
                emit("mdns_peer", peer_id=peer_id, addrs=peer_addrs)
                error = "no address"
                for addr in peer_addrs:
                    try:
                        await node.connect_to_peer(addr)
                    except FabstirError as exc:
                        error = str(exc)
                        continue
                    connected = peer_id in await node.get_connected_peers()
                    emit("connected", peer_id=peer_id, addr=addr, listed=connected)
                    return
                emit("connect_failed", peer_id=peer_id, error=error)

            def on_peer_removed(peer_id: str) -> None:
                emit("mdns_peer_removed", peer_id=peer_id)

            service = MdnsService(
                peer_id=node.peer_id,
                addrs=addrs,
                interfaces=interfaces,
                on_peer=on_peer,
                on_peer_removed=on_peer_removed,
                query_interval=args.query_interval,
            )
            async with anyio.create_task_group() as tg:
                await tg.start(service.run)
                emit(
                    "ready",
                    peer_id=node.peer_id,
                    addrs=addrs,
                    mdns_interfaces=interfaces,
                    peer_name=service.peer_name,
                )
                async for signum in signals:
                    if signum != signal.SIGUSR1:
                        break
                    emit("peers", peers=service.peers)
                tg.cancel_scope.cancel()
    emit("stopped")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--p2pd", required=True)
    parser.add_argument("--query-interval", type=float, default=10.0)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    logging.getLogger("multiaddr").setLevel(logging.WARNING)
    anyio.run(run, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
