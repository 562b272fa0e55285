"""The host's IPv4 interfaces that mDNS could run on: listed with ifaddr (reads the OS).

ifaddr gives the addresses; it has no interface flags, so on Linux the flags come from
``/sys/class/net/<name>/flags`` (the same value as ``SIOCGIFFLAGS``): only interfaces that are
up, not loopback and multicast-capable are listed. Elsewhere nothing is listed (mDNS then
needs explicit interface addresses), since the per-interface socket isolation of
:mod:`.sockets` is Linux only.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import Final

import ifaddr

__all__ = ["local_ipv4_interfaces"]

_IS_LINUX: Final = sys.platform.startswith("linux")
_SYS_NET: Final = Path("/sys/class/net")

# Linux <net/if.h>
_IFF_UP: Final = 0x1
_IFF_LOOPBACK: Final = 0x8
_IFF_MULTICAST: Final = 0x1000


def _flags(name: str) -> int | None:
    """The interface's flags, or ``None`` if it vanished or the name is odd."""
    if not name or "/" in name or name in (".", ".."):
        return None
    try:
        return int((_SYS_NET / name / "flags").read_text().strip(), 16)
    except (OSError, ValueError):
        return None


def _usable(flags: int | None) -> bool:
    return (
        flags is not None
        and bool(flags & _IFF_UP)
        and not flags & _IFF_LOOPBACK
        and bool(flags & _IFF_MULTICAST)
    )


def local_ipv4_interfaces() -> dict[str, str]:
    """``{interface name: primary IPv4 address}`` of the interfaces that are up, not
    loopback and multicast-capable (Linux; elsewhere ``{}``: pass addresses explicitly)."""
    if not _IS_LINUX:
        return {}
    result: dict[str, str] = {}
    adapters = sorted(ifaddr.get_adapters(), key=lambda a: (a.index is None, a.index or 0))
    for adapter in adapters:  # in interface index order, as the kernel lists them
        ipv4 = [ip.ip for ip in adapter.ips if isinstance(ip.ip, str)]
        if not ipv4 or adapter.name in result or not _usable(_flags(adapter.name)):
            continue
        result[adapter.name] = str(ipaddress.IPv4Address(ipv4[0]))  # the first is primary
    return result
