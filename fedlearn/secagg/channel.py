"""Authenticated, replay-protected messages (what TLS would give a real deployment).

Every message of the protocol travels in an :class:`Envelope`: a clear header (round id,
sender, recipient, message kind, counter) and a body sealed with ChaCha20-Poly1305, an
authenticated-encryption (AEAD) scheme. The header is the AEAD's *associated data*: it is not
secret, but changing a single bit of it, or of the body, makes decryption fail. Hence

* a message moved to another recipient, round or step, or with a forged counter, is
  rejected as :class:`~fedlearn.secagg.errors.TamperedMessage`;
* a message sent again (same counter) or taken from an earlier round is rejected as
  :class:`~fedlearn.secagg.errors.ReplayedMessage`: each direction of a :class:`Channel`
  counts its messages and accepts only increasing counters.

Both directions use their own key (derived by HKDF from one Diffie-Hellman secret and a label
naming the round and direction), so the nonce can simply be the counter.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .errors import ProtocolViolation, ReplayedMessage, TamperedMessage
from .keys import derive_key

__all__ = ["SERVER", "Kind", "Envelope", "Channel", "TAG_BYTES", "HEADER_BYTES"]

SERVER = -1
"""The server's party id (clients have ids >= 0)."""

TAG_BYTES = 16
_HEADER = struct.Struct("<QiiBI")
HEADER_BYTES = _HEADER.size


class Kind(IntEnum):
    """Message kinds, in protocol order (Bonawitz et al. 2017, Fig. 4)."""

    ADVERTISE_KEYS = 0  # client -> server: two public keys
    KEY_LIST = 1  # server -> client: everybody's public keys
    SHARE_KEYS = 2  # client -> server: encrypted shares, one per other client
    SHARE_BOX = 3  # server -> client: the encrypted shares addressed to it
    SHARE = 4  # client -> client (inside SHARE_KEYS / SHARE_BOX): one pair of shares
    MASKED_INPUT = 5  # client -> server: the masked vector
    SURVIVORS = 6  # server -> client: who sent a masked input
    UNMASK = 7  # client -> server: shares of dropped clients' keys / survivors' seeds


def _party(pid: int) -> str:
    return "server" if pid == SERVER else f"client {pid}"


@dataclass(frozen=True)
class Envelope:
    """One message on the wire: clear header + AEAD-sealed body (ciphertext and tag)."""

    round_id: int
    sender: int
    recipient: int
    kind: Kind
    counter: int
    body: bytes

    def header(self) -> bytes:
        return _HEADER.pack(self.round_id, self.sender, self.recipient, int(self.kind),
                            self.counter)

    @property
    def nbytes(self) -> int:
        """Bytes on the wire (header + ciphertext + tag)."""
        return HEADER_BYTES + len(self.body)

    def to_bytes(self) -> bytes:
        return self.header() + self.body

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        if len(data) < HEADER_BYTES + TAG_BYTES:
            raise TamperedMessage(f"message of {len(data)} bytes is too short to be an envelope")
        rnd, snd, rcp, kind, ctr = _HEADER.unpack_from(data)
        try:
            k = Kind(kind)
        except ValueError as exc:
            raise TamperedMessage(f"unknown message kind {kind}") from exc
        return cls(rnd, snd, rcp, k, ctr, bytes(data[HEADER_BYTES:]))

    def describe(self) -> str:
        return (f"{self.kind.name} from {_party(self.sender)} to {_party(self.recipient)} "
                f"(round {self.round_id}, message #{self.counter})")


class Channel:
    """One party's end of a two-way authenticated channel with ``peer`` for one round.

    Args:
        secret: a secret both ends share (an X25519 agreement).
        me, peer: party ids (``SERVER`` for the server).
        round_id: the protocol run this channel belongs to; it is bound into the keys and
            every header.
    """

    def __init__(self, secret: bytes, me: int, peer: int, round_id: int) -> None:
        self.me, self.peer, self.round_id = me, peer, round_id
        self._send = ChaCha20Poly1305(derive_key(secret, self._label(me, peer)))
        self._recv = ChaCha20Poly1305(derive_key(secret, self._label(peer, me)))
        self.sent = 0
        self.last_received = 0

    def _label(self, src: int, dst: int) -> bytes:
        return f"channel/round={self.round_id}/{src}->{dst}".encode()

    @staticmethod
    def _nonce(counter: int) -> bytes:
        return counter.to_bytes(12, "little")

    def seal(self, kind: Kind, payload: bytes) -> Envelope:
        """Encrypt and authenticate ``payload`` as the next message to the peer."""
        self.sent += 1
        env = Envelope(self.round_id, self.me, self.peer, kind, self.sent, b"")
        body = self._send.encrypt(self._nonce(self.sent), payload, env.header())
        return Envelope(self.round_id, self.me, self.peer, kind, self.sent, body)

    def open(self, env: Envelope, expect: Kind) -> bytes:
        """Check and decrypt a message from the peer; raise a typed error if it is not valid."""
        if env.recipient != self.me or env.sender != self.peer:
            raise ProtocolViolation(f"{env.describe()} delivered on the channel between "
                                    f"{_party(self.me)} and {_party(self.peer)}")
        if env.round_id != self.round_id:
            raise ReplayedMessage(f"{env.describe()} belongs to round {env.round_id}, not to "
                                  f"the current round {self.round_id}: replay rejected")
        try:
            payload = self._recv.decrypt(self._nonce(env.counter), env.body, env.header())
        except InvalidTag as exc:
            raise TamperedMessage(f"{env.describe()} failed authentication: its header or body "
                                  "was modified in transit") from exc
        if env.counter <= self.last_received:
            raise ReplayedMessage(f"{env.describe()} was already received (last accepted "
                                  f"counter {self.last_received}): replay rejected")
        if env.kind != expect:
            raise ProtocolViolation(f"expected {expect.name}, got {env.describe()}")
        self.last_received = env.counter
        return payload
