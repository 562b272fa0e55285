"""Request round trip: status and a small echo job through FabstirClient, against the raw
daemon path (p2pclient, new stream per request), plain TCP and py-libp2p, same bytes."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys
import uuid
from pathlib import Path

from fabstir_sidecar.client import FabstirClient, RetryConfig
from fabstir_sidecar.wire.framing import encode_json_frame
from fabstir_sidecar.wire.messages import JobRequest, Status, StatusRequest

from . import refs
from .common import Batch, Ctx, batch_of, host_process, interleaved
from .hostproc import MODEL
from .procs import REPO_ROOT, LineProcess, progress
from .stats import Figure, Row, Target

PROMPT = "hello fabstir benchmark"
PYLIBP2P_SCRIPT = Path(__file__).with_name("pylibp2p_peer.py")


def find_pylibp2p_python(explicit: str | None) -> tuple[str | None, str]:
    """An interpreter that can import py-libp2p, or None and why not."""
    candidates = [
        explicit,
        os.environ.get("BENCH_PYLIBP2P_PYTHON"),
        sys.executable if importlib.util.find_spec("libp2p") else None,
        str(REPO_ROOT / ".venv-libp2p" / "bin" / "python"),
    ]
    tried: list[str] = []
    for python in candidates:
        if not python or python in tried or not Path(python).exists():
            continue
        tried.append(python)
        check = subprocess.run(
            [python, "-c", "import libp2p, trio, multiaddr"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check.returncode == 0:
            return python, ""
    return None, (
        "py-libp2p (PyPI libp2p) is not importable: install it into its own venv "
        "(python3 -m venv .venv-libp2p && .venv-libp2p/bin/pip install libp2p) and pass "
        "--pylibp2p-python .venv-libp2p/bin/python (it downgrades zeroconf, which the "
        "package uses, so it does not go into the project venv)"
        + (f"; tried {', '.join(tried)}" if tried else "")
    )


def body_size(request: bytes, response: bytes) -> int:
    """Echo body size moving the same bytes as a request + response pair of frames."""
    return max(1, (len(request) + len(response)) // 2 - 4)


async def run(ctx: Ctx) -> None:
    rounds = ctx.pick(2, 10)
    per_round = ctx.pick(15, 100)
    warmup = ctx.pick(5, 30)
    async with (
        host_process(ctx, raw=True, name="rtt-host", profile_as="rtt") as host,
        ctx.node() as node,
    ):
        ctx.track(node)
        await node.connect_to_peer(host.addr)
        client = FabstirClient(node, retry=RetryConfig.none())
        peer = host.peer_id
        raw = refs.RawDaemonClient(refs.node_control_socket(node))

        status = await client.get_status(peer)
        status_req = encode_json_frame(StatusRequest().to_json())
        status_resp = encode_json_frame(Status(host=status.host).to_json())
        result = await client.run_job(peer, MODEL, PROMPT)
        job_req = encode_json_frame(
            JobRequest(job_id=uuid.uuid4().hex, model=MODEL, prompt=PROMPT).to_json()
        )
        job_resp = encode_json_frame(dataclasses.replace(result, job_id=uuid.uuid4().hex).to_json())
        s_status = body_size(status_req, status_resp)
        s_job = body_size(job_req, job_resp)
        status_payload = refs.frame(s_status)
        job_payload = refs.frame(s_job)

        async def ours_status() -> None:
            await client.get_status(peer)

        async def ours_job() -> None:
            await client.run_job(peer, MODEL, PROMPT)

        async def raw_status() -> None:
            await raw.echo_once(peer, status_payload)

        async def raw_job() -> None:
            await raw.echo_once(peer, job_payload)

        reused = await raw.open(peer, refs.ECHO)
        reused_reader = refs.FrameReader(reused)

        async def raw_reused() -> None:
            await refs.echo_on(reused_reader, reused, job_payload)

        assert host.tcp_port is not None
        tcp, tcp_reader = await refs.open_tcp(host.tcp_port, b"E")

        async def tcp_job() -> None:
            await refs.echo_on(tcp_reader, tcp, job_payload)

        batches: dict[str, Batch] = {
            "ours_status": batch_of(ours_status),
            "ours_job": batch_of(ours_job),
            "raw_status": batch_of(raw_status),
            "raw_job": batch_of(raw_job),
            "raw_reused": batch_of(raw_reused),
            "tcp": batch_of(tcp_job),
        }
        pyl = await _start_pylibp2p(ctx)
        try:
            if pyl is not None:
                batches["pyl_status"] = _pylibp2p_batch(pyl[1], s_status)
                batches["pyl_job"] = _pylibp2p_batch(pyl[1], s_job)
            progress(f"rtt: {rounds} rounds x {per_round} requests per method")
            samples = await interleaved(batches, rounds=rounds, per_round=per_round, warmup=warmup)
        finally:
            await reused.aclose()
            await tcp.aclose()
            if pyl is not None:
                await pyl[1].aclose()
                await pyl[0].aclose()

    fig = {name: Figure.of(s, "ms", tail=True) for name, s in samples.items()}
    new_stream = "raw daemon, p2pclient, new stream"
    at_most = Target("<=", 1.3, text="<= 1.3x raw daemon")
    sizes = {"status_body_bytes": s_status, "job_body_bytes": s_job}
    ctx.add(
        Row(
            "rtt.status",
            "status request round trip (FabstirClient.get_status)",
            fig["ours_status"],
            fig["raw_status"],
            new_stream,
            at_most,
            extra=sizes,
        )
    )
    ctx.add(
        Row(
            "rtt.job",
            "small echo job round trip (FabstirClient.run_job)",
            fig["ours_job"],
            fig["raw_job"],
            new_stream,
            at_most,
            extra=sizes,
        )
    )
    if pyl is not None:
        faster = Target("<", 1.0, text="faster than py-libp2p")
        ctx.add(
            Row(
                "rtt.status.vs_pylibp2p",
                "status round trip vs py-libp2p (new stream per request)",
                fig["ours_status"],
                fig["pyl_status"],
                "py-libp2p, new stream",
                faster,
            )
        )
        ctx.add(
            Row(
                "rtt.job.vs_pylibp2p",
                "job round trip vs py-libp2p (new stream per request)",
                fig["ours_job"],
                fig["pyl_job"],
                "py-libp2p, new stream",
                faster,
            )
        )
    ctx.add(
        Row(
            "rtt.job.vs_tcp",
            "job round trip vs the physical floor",
            fig["ours_job"],
            fig["tcp"],
            "plain TCP, one connection",
        )
    )
    ctx.add(
        Row(
            "rtt.raw_new_stream.vs_tcp",
            "raw daemon, new stream per request",
            fig["raw_job"],
            fig["tcp"],
            "plain TCP, one connection",
        )
    )
    ctx.add(
        Row(
            "rtt.raw_reused_stream.vs_tcp",
            "raw daemon, one stream reused",
            fig["raw_reused"],
            fig["tcp"],
            "plain TCP, one connection",
        )
    )


def _pylibp2p_batch(client: LineProcess, size: int) -> Batch:
    async def run(n: int) -> list[float]:
        answer = await client.request(f"rtt {n} {size}", timeout=60 + n)
        return [float(x) for x in answer["samples_ms"]]

    return run


async def _start_pylibp2p(ctx: Ctx) -> tuple[LineProcess, LineProcess] | None:
    if ctx.pylibp2p_python is None:
        ctx.skip("rtt.*.vs_pylibp2p", ctx.pylibp2p_reason)
        return None
    python = ctx.pylibp2p_python
    server = await LineProcess.start([python, str(PYLIBP2P_SCRIPT), "server"], name="py-libp2p")
    ctx.child_pids.add(server.pid)
    try:
        addr = (await server.read_json(timeout=60))["addr"]
        client = await LineProcess.start(
            [python, str(PYLIBP2P_SCRIPT), "client", addr], name="py-libp2p-client"
        )
        ctx.child_pids.add(client.pid)
        try:
            await client.read_json(timeout=60)
        except BaseException:
            await client.aclose()
            raise
    except Exception as exc:
        await server.aclose()
        ctx.skip("rtt.*.vs_pylibp2p", f"py-libp2p did not start: {exc}")
        return None
    return server, client
