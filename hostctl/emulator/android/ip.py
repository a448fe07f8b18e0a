"""``ip addr`` (iproute2 on Android) and ``ifconfig`` (toolbox before 6.0, toybox after) for the
handset's Wi-Fi interface on the lab network.

Formats: iproute2 ``ip/ipaddress.c`` (``inet A/P brd B scope global wlan0``); KitKat toolbox
``system/core/toolbox/ifconfig.c`` prints ``wlan0: ip A mask M flags [up broadcast running multicast]``;
toybox ``toys/net/ifconfig.c`` (6.0+) prints the net-tools layout with ``inet addr:A  Bcast:B  Mask:M``.
The address itself is emulated: the lab's 192.168.50.0/24 plan is our guess, kept as data (handset.py
``wlan_address``); nothing binds to it, sends to it or routes it, only these commands print it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

MARSHMALLOW = 23


@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    address: str        # "192.168.50.101/24"
    mac: str
    index: int = 20

    @property
    def net(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(self.address)


def _lo(index_only: bool = False) -> list[str]:
    return ["1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN group default",
            "    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00",
            "    inet 127.0.0.1/8 scope host lo",
            "       valid_lft forever preferred_lft forever"]


def ip_addr(ifaces: list[Interface], only: str | None = None) -> str | None:
    """``ip addr [show [dev] IFACE]``; None when IFACE does not exist."""
    out: list[str] = [] if only else _lo()
    found = only in (None, "lo")
    if only == "lo":
        out = _lo()
    for i in ifaces:
        if only and i.name != only:
            continue
        found = True
        n = i.net
        out += [f"{i.index}: {i.name}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP group default qlen 3000",
                f"    link/ether {i.mac} brd ff:ff:ff:ff:ff:ff",
                f"    inet {n.with_prefixlen} brd {n.network.broadcast_address} scope global {i.name}",
                "       valid_lft forever preferred_lft forever"]
    return "\n".join(out) + "\n" if found else None


def ifconfig(sdk: int, i: Interface) -> str:
    n = i.net
    if sdk < MARSHMALLOW:
        return f"{i.name}: ip {n.ip} mask {n.netmask} flags [up broadcast running multicast]\n"
    # toybox display_ifconfig: "%-9s Link encap:%s  ", then for an ARPHRD_ETHER device (Wi-Fi
    # is one) "HWaddr " and the MAC as ":%02x", then "  Driver <name>" read from sysfs
    return (f"{i.name:<9} Link encap:Ethernet  HWaddr {i.mac.lower()}  Driver icnss\n"
            f"          inet addr:{n.ip}  Bcast:{n.network.broadcast_address}  Mask:{n.netmask} \n"
            "          UP BROADCAST RUNNING MULTICAST  MTU:1500  Metric:1\n"
            "          RX packets:0 errors:0 dropped:0 overruns:0 frame:0 \n"
            "          TX packets:0 errors:0 dropped:0 overruns:0 carrier:0 \n"
            "          collisions:0 txqueuelen:3000 \n"
            "          RX bytes:0 TX bytes:0 \n\n")
