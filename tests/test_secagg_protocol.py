"""The Bonawitz et al. protocol: exact sums under dropouts, clean aborts, a blind server."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from fedlearn.secagg.channel import Envelope, Kind
from fedlearn.secagg.errors import (
    ProtocolViolation,
    ReplayedMessage,
    SecAggAbort,
    TamperedMessage,
)
from fedlearn.secagg.masking import SecAggConfig
from fedlearn.secagg.prg import SecureRandom
from fedlearn.secagg.protocol import SecAggClient, SecAggServer
from fedlearn.secagg.quantize import pack_words
from fedlearn.secagg.simulate import STEPS, Dropouts, make_identities, run_secure_sum
from fedlearn.secagg.wire import encode_boxes, encode_ids

D = 64


def random_inputs(cids: list[int], bits: int = 32, seed: int = 0, d: int = D
                  ) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    dt = np.uint32 if bits <= 32 else np.uint64
    return {c: (rng.integers(0, 2**min(bits, 62), d, dtype=np.int64)).astype(dt) for c in cids}


def plain_sum(inputs: dict[int, np.ndarray], who: list[int], bits: int) -> list[int]:
    """The sum mod 2^bits in exact Python integers (an independent reference)."""
    return [sum(int(inputs[c][j]) for c in who) % 2**bits for j in range(len(inputs[who[0]]))]


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 8), bits=st.sampled_from([16, 32, 40]), seed=st.integers(0, 10**6),
       data=st.data())
def test_exact_sum_for_random_thresholds_and_dropouts(n: int, bits: int, seed: int,
                                                      data: st.DataObject) -> None:
    cids = sorted(data.draw(st.lists(st.integers(0, 50), min_size=n, max_size=n, unique=True)))
    t = data.draw(st.integers(2, n))
    step_of = {c: data.draw(st.sampled_from([None, *STEPS])) for c in cids}
    drops = Dropouts(**{f"before_{s.split()[0]}": {c for c, v in step_of.items() if v == s}
                        for s in STEPS})
    inputs = random_inputs(cids, bits, seed)
    left = [len([c for c in cids if c not in drops.gone_by(s)]) for s in STEPS]
    if min(left) < t:
        with pytest.raises(SecAggAbort):
            run_secure_sum(inputs, t, bits, dropouts=drops, seed=seed)
        return
    res = run_secure_sum(inputs, t, bits, dropouts=drops, seed=seed)
    expected_in = [c for c in cids if c not in drops.gone_by("masked input")]
    assert res.included == expected_in  # clients gone only before unmask still count
    assert [int(v) for v in res.total] == plain_sum(inputs, expected_in, bits)


def test_dropouts_after_masked_input_up_to_n_minus_t_are_recovered() -> None:
    inputs = random_inputs(list(range(10)), seed=1)
    res = run_secure_sum(inputs, 6, dropouts=Dropouts(before_unmask={0, 3, 5, 9}), seed=2)
    assert res.included == list(range(10))
    assert [int(v) for v in res.total] == plain_sum(inputs, list(range(10)), 32)
    with pytest.raises(SecAggAbort, match="unmask"):
        run_secure_sum(inputs, 6, dropouts=Dropouts(before_unmask={0, 3, 5, 9, 1}), seed=2)


@pytest.mark.parametrize("step", STEPS)
def test_too_many_dropouts_abort_cleanly_and_reveal_nothing(step: str) -> None:
    inputs = random_inputs(list(range(6)), seed=3)
    drops = Dropouts(**{f"before_{step.split()[0]}": {0, 1, 2}})
    seen = {}
    with pytest.raises(SecAggAbort) as info:
        run_secure_sum(inputs, 4, dropouts=drops, seed=4,
                       observer=lambda s, server: seen.setdefault("server", server))
    assert info.value.step == step and info.value.have == 3 and info.value.need == 4
    server = seen.get("server")
    if server is not None:  # steps before the abort completed: nothing was reconstructed
        assert server.recovered_keys == {} and server.recovered_seeds == {}
        assert server.total is None
        assert server.step == "aborted"


def test_single_masked_input_is_indistinguishable_from_uniform() -> None:
    """Even an all-zero (or highly structured) input looks uniform once masked."""
    d = 20_000
    inputs = {c: np.zeros(d, dtype=np.uint32) for c in range(3)}
    inputs[1] = (np.arange(d) % 7).astype(np.uint32)
    res = run_secure_sum(inputs, 2, seed=5)
    for y, x in ((res.server.masked[0], inputs[0]), (res.server.masked[1], inputs[1])):
        byte_counts = np.bincount(y.view(np.uint8), minlength=256)
        assert stats.chisquare(byte_counts).pvalue > 1e-4
        assert stats.kstest(y / 2**32, "uniform").pvalue > 1e-4
        # the same tests do reject the unmasked input: they can fail
        assert stats.chisquare(np.bincount(x.view(np.uint8), minlength=256) + 1).pvalue < 1e-10


def _arrays_and_bytes(obj: object, seen: set[int] | None = None) -> list[object]:
    """Every ndarray / bytes reachable from ``obj`` (the server's whole state)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, np.ndarray | bytes):
        return [obj]
    out: list[object] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _arrays_and_bytes(k, seen) + _arrays_and_bytes(v, seen)
    elif isinstance(obj, list | tuple | set | frozenset):
        for v in obj:
            out += _arrays_and_bytes(v, seen)
    elif hasattr(obj, "__dict__"):
        out += _arrays_and_bytes(vars(obj), seen)
    return out


def test_server_never_holds_an_unmasked_individual_input() -> None:
    cids = list(range(5))
    inputs = random_inputs(cids, seed=6)
    drops = Dropouts(before_masked={4}, before_unmask={2})
    snapshots = []
    res = run_secure_sum(inputs, 3, dropouts=drops, seed=7,
                         observer=lambda s, server: snapshots.append(
                             _arrays_and_bytes(server)))
    snapshots.append(_arrays_and_bytes(res.server))
    forbidden = [x for x in inputs.values()] + [pack_words(x, 32) for x in inputs.values()]
    for held in snapshots:
        for item in held:
            for x in forbidden:
                if isinstance(item, np.ndarray) and isinstance(x, np.ndarray):
                    assert item.shape != x.shape or np.mean(item == x) < 0.05
                elif isinstance(item, bytes) and isinstance(x, bytes):
                    assert x not in item
    server = res.server
    # a client's self-mask seed and its mask key are never both recovered
    assert set(server.recovered_seeds).isdisjoint(server.recovered_keys)
    assert sorted(server.recovered_keys) == [4] and sorted(server.recovered_seeds) == [0, 1, 2, 3]
    view = server.view()
    assert view["masked inputs from"] == [0, 1, 2, 3]


def _setup(n: int = 4, t: int = 3, round_id: int = 1, seed: int = 8):
    cids = list(range(n))
    rng = SecureRandom(seed)
    server_id, ids = make_identities(cids, rng)
    cfg = SecAggConfig(threshold=t, length=D, round_id=round_id)
    server = SecAggServer(cfg, server_id, {c: k.public for c, k in ids.items()})
    inputs = random_inputs(cids, seed=seed)
    clients = {c: SecAggClient(c, inputs[c], cfg, ids[c], server_id.public, rng.spawn(c))
               for c in cids}
    return server, clients, inputs


def test_tampered_share_relayed_by_the_server_is_detected() -> None:
    server, clients, _ = _setup()
    lists = server.collect_keys([c.advertise_keys() for c in clients.values()])
    shares = [c.share_keys(lists[i]) for i, c in clients.items()]
    boxes = server.collect_shares(shares)
    # a malicious server flips one byte inside the encrypted share from client 0 to client 1
    server.share_boxes[1][0] = server.share_boxes[1][0][:-1] + bytes(
        [server.share_boxes[1][0][-1] ^ 1])
    forged = server.seal_to(1, Kind.SHARE_BOX, encode_boxes(
        [(u, server.share_boxes[1][u]) for u in (0, 2, 3)]))
    with pytest.raises(TamperedMessage, match="SHARE from client 0 to client 1"):
        clients[1].masked_input(forged)
    assert clients[2].masked_input(boxes[2]).kind == Kind.MASKED_INPUT


def test_tampered_or_replayed_client_messages_are_rejected_by_the_server() -> None:
    server, clients, _ = _setup()
    adverts = [c.advertise_keys() for c in clients.values()]
    bad = replace(adverts[0], body=bytes([adverts[0].body[0] ^ 0x80]) + adverts[0].body[1:])
    with pytest.raises(TamperedMessage):
        server.collect_keys([bad])
    with pytest.raises(ReplayedMessage, match="already received"):
        server.collect_keys([adverts[1], adverts[1]])


def test_share_replayed_from_an_earlier_round_is_rejected() -> None:
    old_server, old_clients, _ = _setup(round_id=1)
    lists = old_server.collect_keys([c.advertise_keys() for c in old_clients.values()])
    # a round-1 share (client 0 -> client 1), captured and replayed into round 2
    old_server.collect_shares([c.share_keys(lists[i]) for i, c in old_clients.items()])
    captured = old_server.share_boxes[1][0]
    assert Envelope.from_bytes(captured).round_id == 1
    server, clients, _ = _setup(round_id=2)
    lists = server.collect_keys([c.advertise_keys() for c in clients.values()])
    server.collect_shares([c.share_keys(lists[i]) for i, c in clients.items()])
    server.share_boxes[1][0] = captured
    forged = server.seal_to(1, Kind.SHARE_BOX, encode_boxes(
        [(u, server.share_boxes[1][u]) for u in (0, 2, 3)]))
    with pytest.raises(ReplayedMessage, match="round 1"):
        clients[1].masked_input(forged)


def test_clients_refuse_a_dishonest_survivor_list() -> None:
    server, clients, _ = _setup(n=4, t=3)
    lists = server.collect_keys([c.advertise_keys() for c in clients.values()])
    boxes = server.collect_shares([c.share_keys(lists[i]) for i, c in clients.items()])
    server.collect_masked([c.masked_input(boxes[i]) for i, c in clients.items()])
    too_few = server.seal_to(0, Kind.SURVIVORS, encode_ids([0, 1]))
    with pytest.raises(SecAggAbort):
        clients[0].unmask(too_few)
    not_subset = server.seal_to(1, Kind.SURVIVORS, encode_ids([0, 1, 2, 9]))
    with pytest.raises(ProtocolViolation, match="not a subset"):
        clients[1].unmask(not_subset)


def test_steps_must_run_in_order() -> None:
    server, clients, _ = _setup()
    with pytest.raises(ProtocolViolation, match="step"):
        server.collect_masked([])
    c = clients[0]
    c.advertise_keys()
    with pytest.raises(ProtocolViolation, match="advertise_keys called at step 1"):
        c.advertise_keys()


def test_a_dropped_client_cannot_rejoin() -> None:
    server, clients, _ = _setup()
    lists = server.collect_keys([clients[i].advertise_keys() for i in (0, 1, 2)])
    shares = [clients[i].share_keys(lists[i]) for i in (0, 1, 2)]
    clients[3].advertise_keys()  # too late: the server already sent the key list
    with pytest.raises(ProtocolViolation, match="may not rejoin"):
        server.collect_shares(shares + [clients[3]._chan.seal(Kind.SHARE_KEYS, b"")])


def test_config_rejects_threshold_one_and_bad_inputs() -> None:
    with pytest.raises(ValueError, match=">= 2"):
        SecAggConfig(threshold=1, length=3)
    cfg = SecAggConfig(threshold=2, length=3, bits=8)
    with pytest.raises(ValueError, match="unsigned"):
        cfg.check_input(np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="2\\^8"):
        cfg.check_input(np.array([1, 2, 256], dtype=np.uint32))
