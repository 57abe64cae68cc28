"""Byte encodings of the protocol's message bodies.

Plain fixed-width little-endian fields (no pickle, no JSON), for two reasons: the sizes are
exactly what a real implementation would send, so the cost model in :mod:`.costs` can be
checked byte for byte against the simulation; and parsing untrusted bytes must not be able to
run code. A malformed body raises :class:`~fedlearn.secagg.errors.ProtocolViolation`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from .errors import ProtocolViolation
from .keys import PUBLIC_KEY_BYTES

__all__ = ["UNMASK_KEY", "UNMASK_SEED", "encode_keys", "decode_keys", "encode_key_list",
           "decode_key_list", "encode_boxes", "decode_boxes", "encode_share_pair",
           "decode_share_pair", "encode_ids", "decode_ids", "encode_unmask", "decode_unmask"]

UNMASK_KEY = 0  # a share of a dropped client's mask private key
UNMASK_SEED = 1  # a share of a surviving client's self-mask seed

_U32 = struct.Struct("<I")
_ID_LEN = struct.Struct("<iI")
_ID_KIND = struct.Struct("<iB")


class _Reader:
    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ProtocolViolation(f"malformed {self.what}: truncated body")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, st: struct.Struct) -> tuple:
        return st.unpack(self.take(st.size))

    def done(self) -> None:
        if self.pos != len(self.data):
            raise ProtocolViolation(f"malformed {self.what}: {len(self.data) - self.pos} "
                                    "trailing bytes")


def encode_keys(c_pk: bytes, s_pk: bytes) -> bytes:
    """ADVERTISE_KEYS: the encryption public key and the masking public key."""
    return c_pk + s_pk


def decode_keys(data: bytes) -> tuple[bytes, bytes]:
    if len(data) != 2 * PUBLIC_KEY_BYTES:
        raise ProtocolViolation(f"malformed key advertisement of {len(data)} bytes")
    return data[:PUBLIC_KEY_BYTES], data[PUBLIC_KEY_BYTES:]


def encode_key_list(keys: dict[int, tuple[bytes, bytes]]) -> bytes:
    """KEY_LIST: ``count`` then ``(id, c_pk, s_pk)`` per client, in id order."""
    parts = [_U32.pack(len(keys))]
    for cid in sorted(keys):
        parts.append(struct.pack("<i", cid) + keys[cid][0] + keys[cid][1])
    return b"".join(parts)


def decode_key_list(data: bytes) -> dict[int, tuple[bytes, bytes]]:
    r = _Reader(data, "key list")
    (count,) = r.unpack(_U32)
    out: dict[int, tuple[bytes, bytes]] = {}
    for _ in range(count):
        (cid,) = struct.unpack("<i", r.take(4))
        if cid in out:
            raise ProtocolViolation(f"key list names client {cid} twice")
        out[cid] = (r.take(PUBLIC_KEY_BYTES), r.take(PUBLIC_KEY_BYTES))
    r.done()
    return out


def encode_boxes(boxes: Sequence[tuple[int, bytes]]) -> bytes:
    """SHARE_KEYS / SHARE_BOX: ``count`` then ``(peer id, length, sealed envelope)`` each."""
    parts = [_U32.pack(len(boxes))]
    for cid, blob in boxes:
        parts.append(_ID_LEN.pack(cid, len(blob)) + blob)
    return b"".join(parts)


def decode_boxes(data: bytes) -> list[tuple[int, bytes]]:
    r = _Reader(data, "share boxes")
    (count,) = r.unpack(_U32)
    out = []
    for _ in range(count):
        cid, n = r.unpack(_ID_LEN)
        out.append((cid, r.take(n)))
    r.done()
    return out


def encode_share_pair(key_share: int, seed_share: int, nbytes: int) -> bytes:
    """SHARE: the recipient's share of the sender's mask key and of its self-mask seed."""
    return key_share.to_bytes(nbytes, "little") + seed_share.to_bytes(nbytes, "little")


def decode_share_pair(data: bytes, nbytes: int) -> tuple[int, int]:
    if len(data) != 2 * nbytes:
        raise ProtocolViolation(f"malformed share pair of {len(data)} bytes")
    return (int.from_bytes(data[:nbytes], "little"), int.from_bytes(data[nbytes:], "little"))


def encode_ids(ids: Sequence[int]) -> bytes:
    """SURVIVORS: ``count`` then the ids."""
    return _U32.pack(len(ids)) + b"".join(struct.pack("<i", i) for i in ids)


def decode_ids(data: bytes) -> list[int]:
    r = _Reader(data, "id list")
    (count,) = r.unpack(_U32)
    ids = [struct.unpack("<i", r.take(4))[0] for _ in range(count)]
    r.done()
    if len(set(ids)) != len(ids):
        raise ProtocolViolation("id list has duplicates")
    return ids


def encode_unmask(items: Sequence[tuple[int, int, int]], nbytes: int) -> bytes:
    """UNMASK: ``count`` then ``(about id, UNMASK_KEY or UNMASK_SEED, share)`` each."""
    parts = [_U32.pack(len(items))]
    for cid, kind, y in items:
        parts.append(_ID_KIND.pack(cid, kind) + y.to_bytes(nbytes, "little"))
    return b"".join(parts)


def decode_unmask(data: bytes, nbytes: int) -> list[tuple[int, int, int]]:
    r = _Reader(data, "unmask shares")
    (count,) = r.unpack(_U32)
    out = []
    for _ in range(count):
        cid, kind = r.unpack(_ID_KIND)
        if kind not in (UNMASK_KEY, UNMASK_SEED):
            raise ProtocolViolation(f"unknown share kind {kind}")
        out.append((cid, kind, int.from_bytes(r.take(nbytes), "little")))
    r.done()
    return out
