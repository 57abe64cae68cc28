"""Run one secure-aggregation round between in-process clients and a server.

:func:`run_secure_sum` plays the network: it passes each message from its sender to its
recipient, makes the chosen clients drop out before the chosen step, counts the bytes every
client sends and receives, and times the clients' and the server's computation. An optional
``observer`` is called with the server after each step, which is how the notebook prints the
server's view as the round unfolds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from .channel import Envelope
from .keys import KeyPair, generate_keypair
from .masking import SecAggConfig
from .prg import SecureRandom
from .protocol import SecAggClient, SecAggServer
from .shamir import PRIME_256

__all__ = ["STEPS", "Dropouts", "SecAggResult", "run_secure_sum", "make_identities"]

STEPS = ("advertise keys", "share keys", "masked input", "unmask")


@dataclass(frozen=True)
class Dropouts:
    """Which clients go offline *before* sending each step's message.

    A client listed at one step is gone for the rest of the round. ``before_unmask`` models
    the case secure aggregation was built for: the masked input arrived, then the phone
    (or hospital VPN) went away.
    """

    before_advertise: frozenset[int] = frozenset()
    before_share: frozenset[int] = frozenset()
    before_masked: frozenset[int] = frozenset()
    before_unmask: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        for name in ("before_advertise", "before_share", "before_masked", "before_unmask"):
            object.__setattr__(self, name, frozenset(getattr(self, name)))

    def gone_by(self, step: str) -> frozenset[int]:
        """Clients offline when ``step`` begins."""
        sets = (self.before_advertise, self.before_share, self.before_masked, self.before_unmask)
        out: frozenset[int] = frozenset()
        for s, name in zip(sets, STEPS, strict=True):
            out |= s
            if name == step:
                return out
        raise ValueError(f"unknown step {step!r}; steps are {STEPS}")

    @property
    def all(self) -> frozenset[int]:
        return self.gone_by("unmask")


@dataclass
class SecAggResult:
    """Outcome of one round.

    Attributes:
        total: ``sum_{u in included} x_u mod 2^bits``.
        included: the clients whose inputs are in the sum (U3).
        sets: the surviving set after each step (U1, U2, U3, U5).
        bytes_sent, bytes_received: per client, over the whole round.
        client_seconds: per client, computation time summed over its steps.
        server_seconds: the server's computation time.
        server: the server object, to inspect what it holds.
    """

    total: np.ndarray
    included: list[int]
    sets: dict[str, list[int]]
    bytes_sent: dict[int, int]
    bytes_received: dict[int, int]
    client_seconds: dict[int, float]
    server_seconds: float
    server: SecAggServer = field(repr=False)


def make_identities(cids: Iterable[int], rng: SecureRandom) -> tuple[KeyPair, dict[int, KeyPair]]:
    """Long-term key pairs for the server and each client (registration, done once)."""
    server = generate_keypair(rng.spawn("server-identity"))
    return server, {cid: generate_keypair(rng.spawn(f"identity-{cid}")) for cid in cids}


def run_secure_sum(inputs: Mapping[int, np.ndarray], threshold: int, bits: int = 32, *,
                   dropouts: Dropouts | None = None, round_id: int = 0,
                   seed: int | bytes | None = None, prime: int = PRIME_256,
                   observer: Callable[[str, SecAggServer], None] | None = None) -> SecAggResult:
    """Securely sum the clients' ring vectors ``inputs`` (``cid -> uint array``).

    Args:
        inputs: one vector of Z_(2^bits) elements per client, all of the same length.
        threshold: ``t`` (at least 2).
        bits: ring size.
        dropouts: who goes offline when (none by default).
        round_id: bound into all keys and messages.
        seed: ``None`` for OS randomness, else a reproducible run.
        observer: called as ``observer(step, server)`` after each completed server step.

    Raises:
        SecAggAbort: fewer than ``t`` clients remained at some step.
    """
    if not inputs:
        raise ValueError("no inputs")
    lengths = {len(v) for v in inputs.values()}
    if len(lengths) != 1:
        raise ValueError(f"all inputs must have the same length, got {sorted(lengths)}")
    drops = dropouts if dropouts is not None else Dropouts()
    config = SecAggConfig(threshold=threshold, length=lengths.pop(), bits=bits,
                          round_id=round_id, prime=prime)
    rng = SecureRandom(seed)
    server_id, identities = make_identities(inputs, rng)
    server = SecAggServer(config, server_id, {c: k.public for c, k in identities.items()})
    clients = {cid: SecAggClient(cid, x, config, identities[cid], server_id.public,
                                 rng.spawn(f"client-{cid}-round-{round_id}"))
               for cid, x in inputs.items()}
    sent = dict.fromkeys(inputs, 0)
    recv = dict.fromkeys(inputs, 0)
    secs = dict.fromkeys(inputs, 0.0)
    server_secs = 0.0
    sets: dict[str, list[int]] = {}
    steps: list[tuple[str, Callable]] = [
        ("advertise keys", server.collect_keys), ("share keys", server.collect_shares),
        ("masked input", server.collect_masked), ("unmask", server.collect_unmask)]
    replies: dict[int, Envelope] | None = None
    for i, (step, collect) in enumerate(steps):
        gone = drops.gone_by(step)
        outgoing = []
        for cid, client in clients.items():
            if cid in gone or (replies is not None and cid not in replies):
                continue
            t0 = time.perf_counter()
            if i == 0:
                env = client.advertise_keys()
            else:
                assert replies is not None
                recv[cid] += replies[cid].nbytes
                method = (client.share_keys, client.masked_input, client.unmask)[i - 1]
                env = method(replies[cid])
            secs[cid] += time.perf_counter() - t0
            sent[cid] += env.nbytes
            outgoing.append(env)
        t0 = time.perf_counter()
        out = collect(outgoing)
        server_secs += time.perf_counter() - t0
        sets[step] = sorted(e.sender for e in outgoing)
        if observer is not None:
            observer(step, server)
        replies = out if isinstance(out, dict) else None
    assert server.total is not None
    return SecAggResult(total=server.total, included=list(server.u3), sets=sets,
                        bytes_sent=sent, bytes_received=recv, client_seconds=secs,
                        server_seconds=server_secs, server=server)
