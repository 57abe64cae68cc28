"""Secure aggregation (Bonawitz et al., CCS 2017) as explicit rounds of messages.

The honest-but-curious version of the protocol, message by message:

====  =======================  ==========================================================
step  client -> server         server -> client
====  =======================  ==========================================================
0     ADVERTISE_KEYS (c_pk,    KEY_LIST: everybody's public keys (clients U1)
      s_pk)
1     SHARE_KEYS: for every    SHARE_BOX: the encrypted shares addressed to each
      other v, Enc_cuv(shares  client, from the clients U2 that sent theirs
      of s_sk_u and b_u)
2     MASKED_INPUT y_u         SURVIVORS: the clients U3 whose y_u arrived
3     UNMASK: shares of s_sk   (the server reconstructs and outputs sum_{u in U3} x_u)
      of dropped v in U2\\U3,
      of b_v of v in U3
====  =======================  ==========================================================

Shares travel encrypted under a key only the two clients can compute, so the server relays
them without reading them. A client reveals, for each other client, *either* the key share
(it dropped: its pairwise masks must be removed) *or* the seed share (it survived: its
self-mask must be removed), never both, so the server can never unmask one input. With fewer
than ``t`` parties left at any step the round aborts (:class:`SecAggAbort`) before any secret
is reconstructed. The malicious-server variant adds signatures and a consistency check round;
it is described in the notebook but not implemented here.

A server object keeps only what a real server would receive; :meth:`SecAggServer.view` lists
it, which is how notebook 06 shows "the server's view" at each step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from .channel import SERVER, Channel, Envelope, Kind
from .errors import ProtocolViolation, SecAggAbort
from .keys import KeyPair, agree, generate_keypair, keypair_from_private
from .masking import SecAggConfig, apply_masks, pairwise_mask, pairwise_seed, self_mask
from .prg import SecureRandom
from .quantize import mod_add, mod_sub, pack_words, unpack_words
from .shamir import Share, reconstruct_secret, share_nbytes, split_secret
from .wire import (
    UNMASK_KEY,
    UNMASK_SEED,
    decode_boxes,
    decode_ids,
    decode_key_list,
    decode_keys,
    decode_share_pair,
    decode_unmask,
    encode_boxes,
    encode_ids,
    encode_key_list,
    encode_keys,
    encode_share_pair,
    encode_unmask,
)

__all__ = ["SecAggClient", "SecAggServer", "identity_secret"]


def identity_secret(identity: KeyPair, peer_public: bytes) -> bytes:
    """Secret behind the client-server channel, from long-term identity keys (the PKI that
    Bonawitz et al. assume; in practice a TLS session)."""
    return agree(identity.private, peer_public, b"identity-channel")


def _need(step: str, have: int, t: int) -> None:
    if have < t:
        raise SecAggAbort(step, have, t)


class SecAggClient:
    """One hospital's side of a round. Call the four steps in order with the server's replies.

    Args:
        cid: the client id (>= 0); its Shamir evaluation point is ``cid + 1``.
        x: the client's input, ``config.length`` elements of Z_(2^bits).
        config: the public round parameters.
        identity: the client's long-term key pair (registered with the server).
        server_public: the server's long-term public key.
        rng: randomness for keys, seeds and share coefficients.
    """

    def __init__(self, cid: int, x: np.ndarray, config: SecAggConfig, identity: KeyPair,
                 server_public: bytes, rng: SecureRandom) -> None:
        if cid < 0:
            raise ValueError(f"client ids must be >= 0, got {cid}")
        config.check_input(x)
        self.cid, self.config, self._rng = cid, config, rng
        self._x = x.copy()
        self._chan = Channel(identity_secret(identity, server_public), cid, SERVER,
                             config.round_id)
        self._share_bytes = share_nbytes(config.prime)
        self._step = 0

    def _advance(self, step: int, name: str) -> None:
        if self._step != step:
            raise ProtocolViolation(f"client {self.cid}: {name} called at step {self._step}")
        self._step += 1

    # step 0 ----------------------------------------------------------------------------
    def advertise_keys(self) -> Envelope:
        """Fresh key pairs for this round: ``c`` encrypts shares, ``s`` seeds pairwise masks."""
        self._advance(0, "advertise_keys")
        self._c = generate_keypair(self._rng)
        self._s = generate_keypair(self._rng)
        return self._chan.seal(Kind.ADVERTISE_KEYS, encode_keys(self._c.public, self._s.public))

    # step 1 ----------------------------------------------------------------------------
    def share_keys(self, key_list: Envelope) -> Envelope:
        """Shamir-share ``s_sk`` and a new self-mask seed ``b``; encrypt one pair per peer."""
        self._advance(1, "share_keys")
        keys = decode_key_list(self._chan.open(key_list, Kind.KEY_LIST))
        if keys.get(self.cid) != (self._c.public, self._s.public):
            raise ProtocolViolation(f"client {self.cid}: the key list misstates its own keys")
        _need("share keys", len(keys), self.config.threshold)
        if len({k for pair in keys.values() for k in pair}) != 2 * len(keys):
            raise ProtocolViolation("two clients advertised the same public key")
        self._keys = keys
        self._seed = self._rng.bytes(32)
        t, prime = self.config.threshold, self.config.prime
        xs = [v + 1 for v in sorted(keys)]
        sk_shares = split_secret(int.from_bytes(self._s.private_bytes(), "little"), t, xs,
                                 self._rng, prime)
        b_shares = split_secret(int.from_bytes(self._seed, "little"), t, xs, self._rng, prime)
        self._peer_chan: dict[int, Channel] = {}
        boxes = []
        for v, sk_sh, b_sh in zip(sorted(keys), sk_shares, b_shares, strict=True):
            if v == self.cid:
                self._own_seed_share = b_sh.y
                continue
            chan = Channel(agree(self._c.private, keys[v][0], b"share-encryption"),
                           self.cid, v, self.config.round_id)
            self._peer_chan[v] = chan
            body = encode_share_pair(sk_sh.y, b_sh.y, self._share_bytes)
            boxes.append((v, chan.seal(Kind.SHARE, body).to_bytes()))
        return self._chan.seal(Kind.SHARE_KEYS, encode_boxes(boxes))

    # step 2 ----------------------------------------------------------------------------
    def masked_input(self, share_box: Envelope) -> Envelope:
        """Decrypt the shares received, then send ``x + PRG(b) + sum_v +-PRG(s_uv)``."""
        self._advance(2, "masked_input")
        received: dict[int, tuple[int, int]] = {}
        for u, blob in decode_boxes(self._chan.open(share_box, Kind.SHARE_BOX)):
            if u not in self._peer_chan:
                raise ProtocolViolation(f"client {self.cid}: shares from unknown client {u}")
            inner = Envelope.from_bytes(blob)
            received[u] = decode_share_pair(self._peer_chan[u].open(inner, Kind.SHARE),
                                            self._share_bytes)
        u2 = sorted([*received, self.cid])
        _need("masked input", len(u2), self.config.threshold)
        self._received, self._u2 = received, u2
        masks = [self_mask(self._seed, self.config)]
        for v in u2:
            if v != self.cid:
                seed = pairwise_seed(self._s.private, self._keys[v][1], self.cid, v,
                                     self.config.round_id)
                masks.append(pairwise_mask(seed, self.cid, v, self.config))
        y = apply_masks(self._x, masks, self.config.bits)
        return self._chan.seal(Kind.MASKED_INPUT, pack_words(y, self.config.bits))

    # step 3 ----------------------------------------------------------------------------
    def unmask(self, survivors: Envelope) -> Envelope:
        """For each peer in U2: its seed share if it survived, else its key share."""
        self._advance(3, "unmask")
        u3 = decode_ids(self._chan.open(survivors, Kind.SURVIVORS))
        if not set(u3) <= set(self._u2) or self.cid not in u3:
            raise ProtocolViolation(f"client {self.cid}: survivor list {u3} is not a subset of "
                                    f"U2 = {self._u2} containing this client")
        _need("unmask", len(u3), self.config.threshold)
        alive = set(u3)
        items = [(self.cid, UNMASK_SEED, self._own_seed_share)]
        for v, (sk_y, b_y) in sorted(self._received.items()):
            items.append((v, UNMASK_SEED, b_y) if v in alive else (v, UNMASK_KEY, sk_y))
        return self._chan.seal(Kind.UNMASK, encode_unmask(items, self._share_bytes))


class SecAggServer:
    """The aggregator's side of a round; it never sees an individual input in the clear.

    Args:
        config: the public round parameters.
        identity: the server's long-term key pair.
        directory: every invited client's long-term public key (``cid -> bytes``).
    """

    def __init__(self, config: SecAggConfig, identity: KeyPair,
                 directory: Mapping[int, bytes]) -> None:
        if len(directory) < config.threshold:
            raise ValueError(f"{len(directory)} clients cannot meet threshold "
                             f"t = {config.threshold}")
        self.config = config
        self._chans = {cid: Channel(identity_secret(identity, pk), SERVER, cid, config.round_id)
                       for cid, pk in directory.items()}
        self._share_bytes = share_nbytes(config.prime)
        self.step = "advertise keys"
        self.public_keys: dict[int, tuple[bytes, bytes]] = {}
        self.share_boxes: dict[int, dict[int, bytes]] = {}  # recipient -> sender -> ciphertext
        self.masked: dict[int, np.ndarray] = {}
        self.u1: list[int] = []
        self.u2: list[int] = []
        self.u3: list[int] = []
        self.u5: list[int] = []
        self.key_shares: dict[int, list[Share]] = {}
        self.seed_shares: dict[int, list[Share]] = {}
        self.recovered_keys: dict[int, bytes] = {}
        self.recovered_seeds: dict[int, bytes] = {}
        self.total: np.ndarray | None = None
        self.aborted: SecAggAbort | None = None

    def seal_to(self, cid: int, kind: Kind, body: bytes) -> Envelope:
        """Seal ``body`` as the server's next message to ``cid``.

        The steps below use it for every reply; tests and notebook 06 call it directly to play
        a *malicious* server that forges or alters what it relays.
        """
        return self._chans[cid].seal(kind, body)

    def _collect(self, envs: Iterable[Envelope], kind: Kind, allowed: Iterable[int]
                 ) -> dict[int, bytes]:
        ok = set(allowed)
        out: dict[int, bytes] = {}
        for env in envs:
            if env.sender not in self._chans:
                raise ProtocolViolation(f"{env.describe()}: sender is not a registered client")
            payload = self._chans[env.sender].open(env, kind)
            if env.sender not in ok:
                raise ProtocolViolation(f"{env.describe()}: sender dropped out at an earlier "
                                        "step and may not rejoin this round")
            out[env.sender] = payload
        return out

    def _check(self, step: str, have: int) -> None:
        try:
            _need(step, have, self.config.threshold)
        except SecAggAbort as exc:
            self.aborted = exc
            self.step = "aborted"
            raise

    def _expect(self, step: str) -> None:
        if self.step != step:
            raise ProtocolViolation(f"server is at step {self.step!r}, not {step!r}")

    def collect_keys(self, envs: Iterable[Envelope]) -> dict[int, Envelope]:
        """Step 0: public keys in, the list of all of them out to every client in U1."""
        self._expect("advertise keys")
        got = self._collect(envs, Kind.ADVERTISE_KEYS, self._chans)
        self.public_keys = {cid: decode_keys(p) for cid, p in got.items()}
        self.u1 = sorted(got)
        self._check("advertise keys", len(self.u1))
        body = encode_key_list(self.public_keys)
        self.step = "share keys"
        return {cid: self.seal_to(cid, Kind.KEY_LIST, body) for cid in self.u1}

    def collect_shares(self, envs: Iterable[Envelope]) -> dict[int, Envelope]:
        """Step 1: relay each encrypted share pair to its recipient (it cannot read them)."""
        self._expect("share keys")
        got = self._collect(envs, Kind.SHARE_KEYS, self.u1)
        for u, payload in got.items():
            boxes = decode_boxes(payload)
            if sorted(v for v, _ in boxes) != [v for v in self.u1 if v != u]:
                raise ProtocolViolation(f"client {u} did not send one share box per peer")
            for v, blob in boxes:
                self.share_boxes.setdefault(v, {})[u] = blob
        self.u2 = sorted(got)
        self._check("share keys", len(self.u2))
        self.step = "masked input"
        return {v: self.seal_to(v, Kind.SHARE_BOX, encode_boxes(
                    [(u, self.share_boxes[v][u]) for u in self.u2 if u != v]))
                for v in self.u2}

    def collect_masked(self, envs: Iterable[Envelope]) -> dict[int, Envelope]:
        """Step 2: masked inputs in; tell the survivors U3 who made it."""
        self._expect("masked input")
        got = self._collect(envs, Kind.MASKED_INPUT, self.u2)
        for u, payload in got.items():
            self.masked[u] = unpack_words(payload, self.config.bits, self.config.length)
        self.u3 = sorted(got)
        self._check("masked input", len(self.u3))
        body = encode_ids(self.u3)
        self.step = "unmask"
        return {u: self.seal_to(u, Kind.SURVIVORS, body) for u in self.u3}

    def collect_unmask(self, envs: Iterable[Envelope]) -> np.ndarray:
        """Step 3: reconstruct dropped clients' keys and survivors' seeds; output the sum."""
        self._expect("unmask")
        got = self._collect(envs, Kind.UNMASK, self.u3)
        alive, dropped = set(self.u3), [v for v in self.u2 if v not in self.u3]
        for u, payload in got.items():
            for v, kind, y in decode_unmask(payload, self._share_bytes):
                expected = UNMASK_SEED if v in alive else UNMASK_KEY
                if v not in self.u2 or kind != expected:
                    raise ProtocolViolation(f"client {u} sent a share of the wrong kind for {v}")
                store = self.seed_shares if kind == UNMASK_SEED else self.key_shares
                store.setdefault(v, []).append(Share(u + 1, y))
        self.u5 = sorted(got)
        self._check("unmask", len(self.u5))
        t, prime, cfg = self.config.threshold, self.config.prime, self.config
        for v in dropped:
            raw = reconstruct_secret(self.key_shares[v], t, prime).to_bytes(32, "little")
            self.recovered_keys[v] = raw
        for u in self.u3:
            seed = reconstruct_secret(self.seed_shares[u], t, prime).to_bytes(32, "little")
            self.recovered_seeds[u] = seed
        total = np.zeros(cfg.length, dtype=next(iter(self.masked.values())).dtype)
        for u in self.u3:  # sum first: no single input is ever unmasked on its own
            total = mod_add(total, self.masked[u], cfg.bits)
        for u in self.u3:
            total = mod_sub(total, self_mask(self.recovered_seeds[u], cfg), cfg.bits)
        for v in dropped:  # survivors added masks for pairs with v that v never cancelled
            sk = keypair_from_private(self.recovered_keys[v]).private
            for u in self.u3:
                seed = pairwise_seed(sk, self.public_keys[u][1], u, v, cfg.round_id)
                total = mod_sub(total, pairwise_mask(seed, u, v, cfg), cfg.bits)
        self.total = total
        self.step = "done"
        return total

    def view(self) -> dict[str, object]:
        """Everything this server holds, summarised (what notebook 06 prints at each step)."""
        return {
            "step": self.step,
            "public keys from": list(self.u1),
            "encrypted share boxes (bytes)": sum(len(b) for d in self.share_boxes.values()
                                                  for b in d.values()),
            "masked inputs from": sorted(self.masked),
            "masked inputs (first 3 words)": {u: [int(w) for w in y[:3]]
                                              for u, y in sorted(self.masked.items())},
            "survivors U3": list(self.u3),
            "recovered mask keys of": sorted(self.recovered_keys),
            "recovered self-mask seeds of": sorted(self.recovered_seeds),
            "sum (first 3 words)": None if self.total is None else [int(w) for w in
                                                                    self.total[:3]],
        }
