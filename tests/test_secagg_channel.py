"""Authenticated envelopes: tampered, replayed, misrouted or out-of-step messages are refused."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fedlearn.secagg.channel import SERVER, Channel, Envelope, Kind
from fedlearn.secagg.errors import ProtocolViolation, ReplayedMessage, TamperedMessage


def pair(round_id: int = 5) -> tuple[Channel, Channel]:
    secret = b"\x42" * 32
    return Channel(secret, 3, SERVER, round_id), Channel(secret, SERVER, 3, round_id)


def test_round_trip_and_counters() -> None:
    client, server = pair()
    e1 = client.seal(Kind.ADVERTISE_KEYS, b"hello")
    e2 = client.seal(Kind.MASKED_INPUT, b"world")
    assert (e1.counter, e2.counter) == (1, 2)
    assert server.open(e1, Kind.ADVERTISE_KEYS) == b"hello"
    assert server.open(e2, Kind.MASKED_INPUT) == b"world"
    back = server.seal(Kind.KEY_LIST, b"keys")
    assert client.open(back, Kind.KEY_LIST) == b"keys"
    assert Envelope.from_bytes(e1.to_bytes()) == e1
    assert e1.nbytes == len(e1.to_bytes()) == 21 + 5 + 16


def test_the_body_is_encrypted() -> None:
    client, _ = pair()
    env = client.seal(Kind.MASKED_INPUT, b"patient 17: positive")
    assert b"patient" not in env.to_bytes()


@pytest.mark.parametrize("field,value", [("counter", 7), ("kind", Kind.UNMASK)])
def test_any_header_change_is_tampering(field: str, value: object) -> None:
    client, server = pair()
    env = client.seal(Kind.MASKED_INPUT, b"payload")
    with pytest.raises(TamperedMessage, match="failed authentication"):
        server.open(replace(env, **{field: value}), Kind.MASKED_INPUT)


def test_flipped_body_bit_is_tampering() -> None:
    client, server = pair()
    env = client.seal(Kind.MASKED_INPUT, b"payload")
    body = bytearray(env.body)
    body[2] ^= 0x01
    with pytest.raises(TamperedMessage):
        server.open(replace(env, body=bytes(body)), Kind.MASKED_INPUT)
    assert server.open(env, Kind.MASKED_INPUT) == b"payload"  # the original still opens


def test_replay_in_the_same_round_is_rejected() -> None:
    client, server = pair()
    env = client.seal(Kind.ADVERTISE_KEYS, b"k")
    server.open(env, Kind.ADVERTISE_KEYS)
    with pytest.raises(ReplayedMessage, match="already received"):
        server.open(env, Kind.ADVERTISE_KEYS)


def test_replay_from_an_earlier_round_is_rejected() -> None:
    old_client, _ = pair(round_id=4)
    _, server = pair(round_id=5)
    old = old_client.seal(Kind.MASKED_INPUT, b"old input")
    with pytest.raises(ReplayedMessage, match="round 4"):
        server.open(old, Kind.MASKED_INPUT)
    with pytest.raises(TamperedMessage):  # relabelling it as round 5 breaks authentication
        server.open(replace(old, round_id=5), Kind.MASKED_INPUT)


def test_misrouted_and_out_of_step_messages_are_protocol_violations() -> None:
    client, server = pair()
    env = client.seal(Kind.ADVERTISE_KEYS, b"k")
    with pytest.raises(ProtocolViolation, match="delivered on the channel"):
        server.open(replace(env, sender=4), Kind.ADVERTISE_KEYS)
    with pytest.raises(ProtocolViolation, match="expected MASKED_INPUT"):
        server.open(env, Kind.MASKED_INPUT)


def test_garbage_bytes_are_rejected() -> None:
    with pytest.raises(TamperedMessage):
        Envelope.from_bytes(b"\x00" * 10)
