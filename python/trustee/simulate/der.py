"""A minimal DER encoder for the vendor certificate extensions `cryptography` cannot express.

Intel's PCK SGX extension and AMD's VCEK extensions are nested ASN.1 values that must be
byte-identical in structure to what the real certificates carry, so they are encoded here by
hand and handed to `cryptography` as opaque extension values.
"""

from __future__ import annotations

TAG_BOOLEAN = 0x01
TAG_INTEGER = 0x02
TAG_OCTET_STRING = 0x04
TAG_OID = 0x06
TAG_ENUMERATED = 0x0A
TAG_IA5_STRING = 0x16
TAG_SEQUENCE = 0x30


def tlv(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        return bytes((tag, n)) + value
    length = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + value


def _twos_complement(value: int) -> bytes:
    # One extra bit keeps the sign bit clear for positive values, as DER requires.
    size = value.bit_length() // 8 + 1 if value >= 0 else (value + 1).bit_length() // 8 + 1
    return value.to_bytes(size, "big", signed=True)


def integer(value: int) -> bytes:
    return tlv(TAG_INTEGER, _twos_complement(value))


def enumerated(value: int) -> bytes:
    return tlv(TAG_ENUMERATED, _twos_complement(value))


def boolean(value: bool) -> bytes:
    return tlv(TAG_BOOLEAN, b"\xff" if value else b"\x00")


def octet_string(value: bytes) -> bytes:
    return tlv(TAG_OCTET_STRING, value)


def ia5_string(value: str) -> bytes:
    return tlv(TAG_IA5_STRING, value.encode("ascii"))


def oid(dotted: str) -> bytes:
    arcs = [int(part) for part in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40):
        raise ValueError(f"OID {dotted!r} is not a valid object identifier")
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return tlv(TAG_OID, bytes(body))


def sequence(*items: bytes) -> bytes:
    return tlv(TAG_SEQUENCE, b"".join(items))
