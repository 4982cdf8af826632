"""VXLAN and VXLAN-GPE feeds written by scapy (not by the probe's authors), for
tests/tests/tunnels.rs: python vxlan_feeds.py OUT_DIR writes one pcap per case."""
import random
import sys

from scapy.all import IP, IPv6, TCP, UDP, Ether, GRE, Raw, wrpcap
from scapy.contrib.geneve import GENEVE
from scapy.layers.vxlan import VXLAN

out = sys.argv[1]
rnd = random.Random(7348)
T0 = 1_700_000_000.0


def outer(dport, sport=40000):
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(
        src="192.0.2.1", dst="192.0.2.2") / UDP(sport=sport, dport=dport)


def inner_v4(i, l4="tcp"):
    ip = IP(src=f"10.20.{i % 7}.{1 + i % 50}", dst=f"10.30.0.{1 + i % 9}")
    if l4 == "tcp":
        return ip / TCP(sport=30000 + i, dport=443, flags="PA") / Raw(b"x" * (i % 40))
    return ip / UDP(sport=30000 + i, dport=53) / Raw(b"y" * (i % 30))


def inner_v6(i):
    return IPv6(src=f"fd00:20::{1 + i % 40:x}", dst="fd00:30::1") / UDP(sport=31000 + i, dport=123) / Raw(b"z" * 8)


def eth(p):
    return Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:02") / p


def stamp(frames):
    for n, f in enumerate(frames):
        f.time = T0 + n * 0.001
    return frames


cases = {}
# scapy's default VXLAN: flags 0x0c (I and GPE's P) with Next Protocol 3, Ethernet inside.
cases["default"] = [outer(4789) / VXLAN(vni=100) / eth(inner_v4(i, "tcp" if i % 2 else "udp")) for i in range(60)]
# RFC 7348 VXLAN with reserved bits and fields set (a group-policy G bit, vendor uses).
cases["reserved"] = [outer(4789) / VXLAN(flags=0x08 | 0x80 | 0x01, vni=200, reserved0=0x1234, reserved2=0x5a) / eth(inner_v4(i)) for i in range(40)]
# VXLAN-GPE on its own port and on 4789, with each Next Protocol the probe follows.
for port in (4790, 4789):
    frames = []
    for i in range(30):
        frames.append(outer(port) / VXLAN(flags=0x0c, NextProtocol=1, vni=300) / inner_v4(i, "udp"))
        frames.append(outer(port) / VXLAN(flags=0x0c, NextProtocol=2, vni=300) / inner_v6(i))
        frames.append(outer(port) / VXLAN(flags=0x0c, NextProtocol=3, vni=300) / eth(inner_v4(i)))
    cases[f"gpe{port}"] = frames
# Three deep: VXLAN, then Geneve, then GRE around the inner IPv4 packet.
cases["stack3"] = [
    outer(4789) / VXLAN(vni=400) / eth(
        IP(src="198.51.100.1", dst="198.51.100.2") / UDP(sport=50000, dport=6081) / GENEVE(vni=500, proto=0x6558) / eth(
            IP(src="203.0.113.1", dst="203.0.113.2") / GRE(proto=0x0800) / inner_v4(i)))
    for i in range(30)
]
# UDP to 4789 that is not VXLAN: random payloads, half with the I flag set.
rand = []
for i in range(300):
    payload = bytearray(rnd.getrandbits(8) for _ in range(20 + i % 60))
    payload[0] = (payload[0] | 0x08) if i % 2 else (payload[0] & ~0x08)
    rand.append(outer(4789, sport=20000 + i % 10) / Raw(bytes(payload)))
cases["random4789"] = rand

for name, frames in cases.items():
    wrpcap(f"{out}/{name}.pcap", stamp(frames))
