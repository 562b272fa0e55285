"""DiscoveryManager against real p2pd daemons on loopback: connect, message, errors."""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from fabstir_sidecar import (
    ConfigError,
    DaemonStartError,
    DiscoveryManager,
    FabstirError,
    InvalidMultiaddrError,
    MessageTooLargeError,
    NodeClosedError,
    NodeNotStartedError,
    NodeState,
    NodeStateError,
    PeerUnreachableError,
    ProtocolNotSupportedError,
)
from fabstir_sidecar.daemon.identity import generate_identity
from tests.integration.helpers import Inbox, eventually, make_node, raw_daemon

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

TEST_DEADLINE = 30.0


# ---------------------------------------------------------------------- messaging

NESTED = {
    "type": "job",
    "id": 12345678901234567890,
    "price": 0.000125,
    "ok": True,
    "none": None,
    "tags": ["a", "b", {"deep": [[1, 2], [3, {"x": []}]]}],
    "meta": {"empty": {}, "list": [], "neg": -1, "exp": 1.5e300},
}
UNICODE = {
    "ascii": "hello",
    "latin": "héllo wörld ñ",
    "cjk": "你好 世界",
    "rtl": "مرحبا بالعالم",
    "emoji": "🚀🦀👩‍💻",
    "escapes": 'quote " backslash \\ newline \n tab \t nul \u0000',
    "ключ": "значение",
}


async def test_two_nodes_connect_and_exchange_messages(p2pd_path: str) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        async with make_node(p2pd_path) as alice, make_node(p2pd_path) as bob:
            assert alice.is_running() and bob.is_running()
            assert alice.peer_id != bob.peer_id
            alice_addrs = await alice.get_addrs()
            assert alice_addrs
            assert all(a.endswith(f"/p2p/{alice.peer_id}") for a in alice_addrs)

            assert await bob.connect_to_peer(alice_addrs[0]) == alice.peer_id
            assert alice.peer_id in await bob.get_connected_peers()

            async def alice_sees_bob() -> bool:  # the inbound side may register it later
                return bob.peer_id in await alice.get_connected_peers()

            await eventually(alice_sees_bob, timeout=5)

            alice_inbox, bob_inbox = Inbox(), Inbox()
            alice.on_message(alice_inbox)
            bob.on_message(bob_inbox)

            big = "a" * (900 * 1024 - 64) + "ünïcødé ✓ 🚀"
            big_message = {"type": "blob", "data": big}
            assert len(big.encode()) < 1_048_576 - 100

            await bob.send_message(alice.peer_id, NESTED)
            await bob.send_message(alice.peer_id, UNICODE)
            await bob.send_message(alice.peer_id, big_message)
            await alice.send_message(bob.peer_id, UNICODE)
            await alice.send_message(bob.peer_id, [1, "two", None])
            await alice.send_message(bob.peer_id, "just a string")

            got_alice = await alice_inbox.wait_for(3)
            got_bob = await bob_inbox.wait_for(3)
            # Messages on separate streams may be handled in any order.
            alice_messages = [m for _, m in got_alice]
            assert len(alice_messages) == 3
            for expected in (NESTED, UNICODE, big_message):
                assert expected in alice_messages
            assert {s for s, _ in got_alice} == {bob.peer_id}
            assert {s for s, _ in got_bob} == {alice.peer_id}
            bob_messages = [m for _, m in got_bob]
            for expected in (UNICODE, [1, "two", None], "just a string"):
                assert expected in bob_messages
            assert len(bob_messages) == 3
            big_received = next(m for _, m in got_alice if m.get("type") == "blob")
            assert big_received["data"] == big
            assert alice.message_stats == {"received": 3, "refused": 0}
            assert bob.message_stats == {"received": 3, "refused": 0}


async def test_websocket_listen_and_dial(p2pd_path: str) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        async with (
            make_node(p2pd_path, listen=["/ip4/127.0.0.1/tcp/0/ws"]) as ws_node,
            make_node(p2pd_path) as other,
        ):
            addrs = await ws_node.get_addrs()
            # Only a WebSocket listener: any connection to it must be over /ws.
            assert addrs and all("/ws/p2p/" in a for a in addrs), addrs
            assert await other.connect_to_peer(addrs[0]) == ws_node.peer_id
            assert ws_node.peer_id in await other.get_connected_peers()

            inbox = Inbox()
            ws_node.on_message(inbox)
            await other.send_message(ws_node.peer_id, {"over": "websocket"})
            assert await inbox.wait_for(1) == [(other.peer_id, {"over": "websocket"})]


async def test_send_message_to_full_multiaddr_dials_first(p2pd_path: str) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        async with make_node(p2pd_path) as alice, make_node(p2pd_path) as bob:
            assert await bob.get_connected_peers() == []
            inbox, target = await _inbox_at(alice)
            await bob.send_message(target, {"hello": "by address"})
            assert await inbox.wait_for(1) == [(bob.peer_id, {"hello": "by address"})]
            assert alice.peer_id in await bob.get_connected_peers()


async def test_message_survives_the_sender_stopping_right_after(p2pd_path: str) -> None:
    """send_message returns only once p2pd has taken the whole message: a sender that stops
    at once (as `fabstir-sidecar send` does) must not lose or truncate it."""
    rounds = 10
    with anyio.fail_after(TEST_DEADLINE):
        async with make_node(p2pd_path) as receiver:
            inbox, target = await _inbox_at(receiver)
            senders = []
            for i in range(rounds):
                async with make_node(p2pd_path) as sender:
                    senders.append(sender.peer_id)
                    await sender.send_message(target, {"round": i, "pad": "x" * 2000})
            got = await inbox.wait_for(rounds)
            assert sorted((m["round"], s) for s, m in got) == list(enumerate(senders))
            assert receiver.message_stats == {"received": rounds, "refused": 0}


async def test_message_survives_a_busy_receiver_when_the_sender_stops(p2pd_path: str) -> None:
    """The receiver's daemon is frozen (SIGSTOP) while a sender sends and stops at once: the
    stream reaches it only after the send returned. ``/message`` has no acknowledgement, so
    ``stop()`` lingers (``message_linger``) instead of closing the connection under it."""
    rounds = 3
    with anyio.fail_after(TEST_DEADLINE):
        async with make_node(p2pd_path) as receiver:
            inbox, target = await _inbox_at(receiver)
            receiver_pid = receiver._daemon.pid  # type: ignore[union-attr]
            assert receiver_pid is not None

            async def thaw_later() -> None:
                await anyio.sleep(0.2)
                os.kill(receiver_pid, signal.SIGCONT)

            for i in range(rounds):
                async with (
                    anyio.create_task_group() as tg,
                    make_node(p2pd_path, message_linger=0.6) as sender,
                ):
                    await sender.connect_to_peer(target)
                    os.kill(receiver_pid, signal.SIGSTOP)
                    try:
                        tg.start_soon(thaw_later)
                        await sender.send_message(receiver.peer_id, {"round": i})
                    except BaseException:
                        os.kill(receiver_pid, signal.SIGCONT)
                        raise
            got = await inbox.wait_for(rounds)
            assert sorted(m["round"] for _, m in got) == list(range(rounds))


async def test_handlers_errors_unsubscribe_sync_and_async(
    p2pd_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        async with make_node(p2pd_path) as alice, make_node(p2pd_path) as bob:
            await bob.connect_to_peer((await alice.get_addrs())[0])

            def broken(sender: str, message: Any) -> None:
                raise RuntimeError(f"handler bug on {message['n']}")

            sync_inbox = Inbox()
            async_items: list[tuple[str, Any]] = []

            async def async_handler(sender: str, message: Any) -> None:
                await anyio.lowlevel.checkpoint()
                async_items.append((sender, message))

            sentinel = Inbox()  # stays subscribed; shows when a message was dispatched
            alice.on_message(broken)
            unsubscribe_sync = alice.on_message(sync_inbox)
            unsubscribe_async = alice.on_message(async_handler)
            alice.on_message(sentinel)

            with caplog.at_level(logging.WARNING):
                await bob.send_message(alice.peer_id, {"n": 1})
                await sentinel.wait_for(1)
            assert sync_inbox.items == [(bob.peer_id, {"n": 1})]
            assert async_items == [(bob.peer_id, {"n": 1})]
            failures = [r for r in caplog.records if "handler raised" in r.getMessage()]
            assert len(failures) == 1
            assert failures[0].levelno >= logging.ERROR
            assert failures[0].exc_info is not None
            assert "handler bug on 1" in str(failures[0].exc_info[1])

            # The node keeps serving after a handler raised.
            await bob.send_message(alice.peer_id, {"n": 2})
            await sentinel.wait_for(2)
            assert [m for _, m in sync_inbox.items] == [{"n": 1}, {"n": 2}]
            assert [m for _, m in async_items] == [{"n": 1}, {"n": 2}]

            unsubscribe_sync()
            unsubscribe_async()
            unsubscribe_sync()  # idempotent
            await bob.send_message(alice.peer_id, {"n": 3})
            await sentinel.wait_for(3)
            assert [m for _, m in sentinel.items] == [{"n": 1}, {"n": 2}, {"n": 3}]
            assert [m for _, m in sync_inbox.items] == [{"n": 1}, {"n": 2}]
            assert [m for _, m in async_items] == [{"n": 1}, {"n": 2}]
            assert alice.is_running()


# ------------------------------------------------------------------------- errors


async def test_send_to_unknown_peer_is_unreachable_quickly(p2pd_path: str, tmp_path: Path) -> None:
    stranger = generate_identity(tmp_path / "stranger.key")
    with anyio.fail_after(TEST_DEADLINE):
        async with make_node(p2pd_path) as node:
            started = time.monotonic()
            with pytest.raises(PeerUnreachableError) as info:
                await node.send_message(stranger, {"hello": 1})
            assert time.monotonic() - started < 2.0
            assert info.value.peer_id == stranger
            assert "\n" not in str(info.value)
            assert node.is_running()


async def test_send_to_peer_without_handler_is_protocol_not_supported(p2pd_path: str) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        async with raw_daemon(p2pd_path) as (_, raw, _), make_node(p2pd_path) as node:
            raw_id, raw_addrs = await raw.identify()
            await node.connect_to_peer(f"{raw_addrs[0]}/p2p/{raw_id}")
            with pytest.raises(ProtocolNotSupportedError) as info:
                await node.send_message(raw_id, {"hello": 1})
            assert info.value.peer_id == raw_id
            assert info.value.protocol == node.config.message_protocol
            assert node.is_running()


async def test_too_large_message_fails_locally_before_dialing(p2pd_path: str) -> None:
    huge = {"data": "x" * (2 * 1024 * 1024)}
    with anyio.fail_after(TEST_DEADLINE):
        async with make_node(p2pd_path) as alice, make_node(p2pd_path) as bob:
            inbox, target = await _inbox_at(alice)
            # By peer id (alice is not even known to bob) and by full multiaddr: both are
            # refused before any dial, so bob stays unconnected.
            with pytest.raises(MessageTooLargeError) as info:
                await bob.send_message(alice.peer_id, huge)
            assert info.value.limit == 1_048_576
            assert info.value.size is not None and info.value.size > 2 * 1024 * 1024
            with pytest.raises(MessageTooLargeError):
                await bob.send_message(target, huge)
            assert await bob.get_connected_peers() == []
            assert await alice.get_connected_peers() == []
            assert alice.message_stats == {"received": 0, "refused": 0}

            # A message just under the cap still goes through.
            await bob.send_message(target, {"ok": True})
            assert await inbox.wait_for(1) == [(bob.peer_id, {"ok": True})]


async def test_bad_addresses_and_peer_ids(p2pd_path: str) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        async with make_node(p2pd_path) as node:
            pid = node.peer_id
            for bad in (
                "/ip4/999.0.0.1/tcp/1/p2p/" + pid,
                "/ip4/127.0.0.1/nosuchproto/1/p2p/" + pid,
                "/ip4/127.0.0.1/tcp/4001",  # no /p2p/
                "/p2p/" + pid,  # no transport
                "/ip4/127.0.0.1/tcp/4001/p2p/notapeerid",
                "not a multiaddr",
            ):
                with pytest.raises(InvalidMultiaddrError) as info:
                    await node.connect_to_peer(bad)
                assert isinstance(info.value, ConfigError)
            with pytest.raises(InvalidMultiaddrError):
                await node.send_message("/ip4/999.0.0.1/tcp/1/p2p/" + pid, {"x": 1})
            for bad_id in ("notapeerid", "12D3KooW", pid + "x", "", "0OIl"):
                with pytest.raises(ConfigError) as cinfo:
                    await node.send_message(bad_id, {"x": 1})
                assert isinstance(cinfo.value, FabstirError)
                assert isinstance(cinfo.value, ValueError)
            with pytest.raises(ConfigError):
                await node.disconnect_peer("garbage")
            assert node.is_running()


async def test_lifecycle_state_errors(p2pd_path: str) -> None:
    node = make_node(p2pd_path)
    assert node.state is NodeState.NEW
    assert not node.is_running()
    await _assert_refused(
        node, NodeNotStartedError, "12D3KooWHsHHcDmBi73RNPUqSZikF87QD8ZhAoHeuSq8YmRzXn5g", {}
    )
    with pytest.raises(NodeNotStartedError):
        await node.connect_to_peer("/ip4/127.0.0.1/tcp/1/p2p/" + "12D3KooW" + "x" * 44)
    with pytest.raises(NodeNotStartedError):
        await node.add_stream_handler("/x/1", _noop_stream_handler)

    with anyio.fail_after(TEST_DEADLINE):
        try:
            peer_id = await node.create_node()
            assert node.state is NodeState.RUNNING
            assert peer_id == node.peer_id
            with pytest.raises(NodeStateError) as info:
                await node.create_node()
            assert not isinstance(info.value, NodeClosedError | NodeNotStartedError)
            assert node.is_running()  # the failed second call did not disturb it
        finally:
            await node.stop()
    assert node.state is NodeState.CLOSED
    assert not node.is_running()
    await node.stop()  # idempotent
    await _assert_refused(node, NodeClosedError, peer_id, {"x": 1})
    with pytest.raises(NodeClosedError):
        await node.create_node()
    with pytest.raises(NodeClosedError):
        async with node:
            pass


async def _inbox_at(node: DiscoveryManager) -> tuple[Inbox, str]:
    """A new inbox for ``node``'s messages, and the address to send them to."""
    inbox = Inbox()
    node.on_message(inbox)
    return inbox, (await node.get_addrs())[0]


async def _assert_refused(
    node: DiscoveryManager, error: type[FabstirError], peer: str, message: Any
) -> None:
    """A node that is not running refuses its peer id and these calls with ``error``."""
    with pytest.raises(error):
        _ = node.peer_id
    with pytest.raises(error):
        await node.get_addrs()
    with pytest.raises(error):
        await node.get_connected_peers()
    with pytest.raises(error):
        await node.send_message(peer, message)


async def _noop_stream_handler(stream: Any) -> None:
    return None


async def test_listen_port_in_use_is_daemon_start_error(p2pd_path: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        node = make_node(p2pd_path, listen=[f"/ip4/127.0.0.1/tcp/{port}"])
        with anyio.fail_after(TEST_DEADLINE), pytest.raises(DaemonStartError) as info:
            await node.create_node()
    assert "address already in use" in str(info.value)
    assert "address already in use" in info.value.reason
    # Refused before p2pd ran (daemon/process.check_tcp_ports_free): no exit code to report.
    assert info.value.returncode is None
    assert node.state is NodeState.CLOSED
    with pytest.raises(NodeClosedError):
        await node.get_addrs()


async def test_unknown_listen_protocol_rejected_before_spawning(p2pd_path: str) -> None:
    with pytest.raises(InvalidMultiaddrError):
        make_node(p2pd_path, listen=["/ip4/127.0.0.1/tcp/0/nosuchproto"])
    with pytest.raises(InvalidMultiaddrError):
        make_node(p2pd_path, listen=["/unix/tmp/x.sock"])  # parses, but not a listen address
    node = make_node(p2pd_path)
    with anyio.fail_after(TEST_DEADLINE), pytest.raises(InvalidMultiaddrError):
        await node.create_node(listen=["/ip4/127.0.0.1/bogus/0"])
    assert node._daemon is None  # nothing was spawned
    assert node.state is NodeState.NEW


async def test_identity_file_keeps_peer_id(p2pd_path: str, tmp_path: Path) -> None:
    key = tmp_path / "id.key"
    with anyio.fail_after(TEST_DEADLINE):
        async with make_node(p2pd_path, identity_file=key) as first:
            first_id = first.peer_id
        assert key.exists()
        assert key.stat().st_mode & 0o077 == 0
        async with make_node(p2pd_path, identity_file=key) as second:
            assert second.peer_id == first_id
        async with make_node(p2pd_path) as ephemeral:
            assert ephemeral.peer_id != first_id


async def test_every_failure_is_a_fabstir_error(p2pd_path: str, tmp_path: Path) -> None:
    """A sweep over failing calls: nothing escapes as anyio/p2pclient/OSError."""
    stranger = generate_identity(tmp_path / "s.key")
    with anyio.fail_after(TEST_DEADLINE):
        async with make_node(p2pd_path) as node:
            pid = node.peer_id
            calls = [
                lambda: node.send_message(stranger, {"x": 1}),
                lambda: node.connect_to_peer(f"/ip4/127.0.0.1/tcp/1/p2p/{stranger}"),
                lambda: node.send_message(f"/ip4/127.0.0.1/tcp/1/p2p/{stranger}", {"x": 1}),
                lambda: node.send_message(pid, {"x": float("nan")}),
                lambda: node.send_message(pid, {"x": object()}),
                lambda: node.send_message("bogus", {"x": 1}),
                lambda: node.connect_to_peer("/dns4/does-not-exist.invalid/tcp/1/p2p/" + stranger),
                lambda: node.disconnect_peer("bogus"),
            ]
            for call in calls:
                try:
                    await call()
                except FabstirError:
                    pass
                else:  # pragma: no cover - every call above must fail
                    pytest.fail("expected a FabstirError")
            assert node.is_running()


async def test_start_hooks_run_before_bootstrap_peers_are_dialed(p2pd_path: str) -> None:
    """``on_start`` hooks serve from the first connection on: when the hook runs, the node
    is up (peer id, handlers) but has dialed no bootstrap peer yet."""
    with anyio.fail_after(TEST_DEADLINE):
        async with make_node(p2pd_path) as boot:
            boot_addr = (await boot.get_addrs())[0]
            node = make_node(p2pd_path, bootstrap=[boot_addr])
            seen: list[tuple[str, list[str]]] = []

            async def hook() -> None:
                seen.append((node.peer_id, await node.get_connected_peers()))

            node.on_start(hook)
            async with node:
                assert seen == [(node.peer_id, [])]  # nobody connected while it ran
                assert [r.ok for r in node.bootstrap_results] == [True]
                with pytest.raises(NodeStateError):
                    node.on_start(hook)
