#!/usr/bin/env python3
"""Writes the hand-made seeds of the proxy's fuzz targets: operation_name,
gossip_open and wire_rewrite (see remesh_proxy::fuzzing for the input layouts)."""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, items):
    directory = os.path.join(HERE, target)
    os.makedirs(directory, exist_ok=True)
    for index, data in enumerate(items):
        with open(os.path.join(directory, f"seed-{index:02}"), "wb") as out:
            out.write(data)


def varint(value):
    out = b""
    while True:
        byte = value & 0x7F
        value >>= 7
        out += bytes([byte | (0x80 if value else 0)])
        if not value:
            return out


def field(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def frame(message, flag=0, declared=None):
    length = len(message) if declared is None else declared
    return bytes([flag]) + struct.pack(">I", length) + message


write("operation_name", [s.encode() for s in [
    "remesh/node-a/operations/1",
    "remesh/n/a/b//c/",
    "remesh/127.0.0.1:8980/x",
    "remesh/evil.example:443/x",
    "http://127.0.0.1:1/x",
    "remesh/node/",
    "remesh//x",
    "remesh/" + "a" * 63 + "/x",
    "remesh/" + "a" * 64 + "/x",
    "remesh/n/名前/🚀",
    "operations/1",
    "",
]])

operation = field(1, b"operations/42") + b"\x18\x01" + field(4242, b"future")
listing = field(1, operation) + field(1, field(1, b"b")) + field(2, b"page")
write("wire_rewrite", [
    b"\x00\x00" + frame(operation),
    b"\x02\x02\x03\x07" + frame(operation) + frame(b""),
    b"\x01\x01\x04" + frame(listing),
    b"\x03\x00" + frame(operation, declared=100),
    b"\x00\x00" + frame(operation, flag=1),
    b"\x04\x00" + frame(field(1, b"x" * 40)),
    b"\x00\x00" + frame(b"\x0a\xff\xff\xff\xff\x0f"),
    b"\x00\x00" + frame(field(1, b"") + field(1, b"second")),
    b"\xfe\x07\x01\x01\x01\x01\x01\x01\x01" + frame(operation) * 3,
    b"\x00\x00" + frame(b"\x08\x96\x01\x1d\x01\x02\x03\x04"),
])

header = b"\xe5\x01" + b"\x00" * 4 + struct.pack(">Q", 1_700_000_000_000)
write("gossip_open", [
    b"",
    b"\xe5",
    header,
    header + b"\x00" * 24 + b"\x00" * 16,
    header + b"\x00" * 24 + b"plaintext" + b"\x00" * 16,
    b"\xe5\x02" + header[2:] + b"\x00" * 40,
    b"\x00" * 64,
    b"\xff" * 64,
    b"\x04fuzz\x7f\x00\x00\x01\x1f\x00\x00\x00",
    bytes(range(256)),
])
