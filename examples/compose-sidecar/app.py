"""The app of the sidecar-pattern stack: plain Python using the fabstir_sidecar library, with
no p2pd of its own; it attaches to the p2pd container beside it.

Configuration is the library's environment: ``P2P_DAEMON_ADDR`` (the sidecar's control
address; the node waits while that daemon is still starting) and, for the shared-volume form,
``P2P_HANDLER_ADDR`` (where the daemon forwards inbound streams). The bootstrap node's peer id
is read from ``/bootstrap/peer-id``.

Every ``APP_INTERVAL`` seconds it finds the best host for ``APP_MODEL`` and streams a job from
it; each round is one JSON line on stdout, as is each SDK message it receives. It runs until
SIGTERM (``docker compose down``).
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import anyio

from fabstir_sidecar import DiscoveryManager, FabstirClient, FabstirError, HostCriteria

MODEL = os.environ.get("APP_MODEL", "llama-3.2-1b-instruct")
INTERVAL = float(os.environ.get("APP_INTERVAL", "1"))
PROMPT = "hello from the sidecar app"


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def rounds(node: DiscoveryManager) -> None:
    client = FabstirClient(node)
    criteria = HostCriteria(required_models=(MODEL,))
    number = 0
    while True:
        number += 1
        try:
            best = await node.find_host(criteria)
            stream = client.stream_job(best.host.peer_id, MODEL, PROMPT)
            tokens = [token async for token in stream]
            emit(event="job", round=number, host=best.host.peer_id, content="".join(tokens))
        except FabstirError as exc:
            emit(event="job_failed", round=number, error=str(exc))
        await anyio.sleep(INTERVAL)


async def main() -> None:
    peer_id = (await anyio.Path("/bootstrap/peer-id").read_text(encoding="utf-8")).strip()
    bootstrap = f"/dns4/bootstrap/tcp/4001/p2p/{peer_id}"
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with DiscoveryManager(bootstrap=[bootstrap], enable_mdns=False) as node:
            node.on_message(
                lambda sender, message: emit(event="message", sender=sender, message=message)
            )
            emit(event="ready", peer_id=node.peer_id, addrs=await node.get_addrs())
            async with anyio.create_task_group() as tg:
                tg.start_soon(rounds, node)
                async for _ in signals:
                    tg.cancel_scope.cancel()
                    break


if __name__ == "__main__":
    anyio.run(main)
