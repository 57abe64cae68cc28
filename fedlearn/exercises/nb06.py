"""Self-checks for notebook 06, *Secure aggregation*.

Each checker builds fresh test cases (random secrets, clients, seeds, images) and compares the
learner's function with an independent reference from :mod:`fedlearn.secagg`, so passing means
the function works in general, not just on the notebook's example.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from scipy import stats
from torch.utils.data import TensorDataset

from ..client import TrainConfig, local_train
from ..models import make_model
from ..secagg.costs import bonawitz_expansion
from ..secagg.prg import SecureRandom
from ..secagg.quantize import mod_sum
from ..secagg.shamir import PRIME_256, split_secret
from ..update import ClientUpdate
from ..utils import clone_state
from . import correct

__all__ = ["check_shamir_reconstruct", "check_pairwise_masking", "check_expansion",
           "check_label_inference"]

Points = list[tuple[int, int]]


def check_shamir_reconstruct(reconstruct: Callable[[Points, int], int], trials: int = 30,
                             seed: int = 0) -> None:
    """``reconstruct(points, prime)`` must return ``f(0)`` from any ``t`` points of ``f``."""
    rng = np.random.default_rng(seed)
    srng = SecureRandom(seed)
    for i in range(trials):
        prime = PRIME_256 if i % 2 else int(rng.choice([101, 257, 7919, 2**61 - 1]))
        n = int(rng.integers(1, 8))
        t = int(rng.integers(1, n + 1))
        secret = srng.below(prime)
        xs = [int(x) for x in rng.choice(np.arange(1, min(prime, 500)), size=n, replace=False)]
        shares = split_secret(secret, t, xs, srng, prime)
        pick = [shares[j] for j in rng.choice(n, size=t, replace=False)]
        got = reconstruct([(s.x, s.y) for s in pick], prime)
        if got == secret:
            continue
        if isinstance(got, int) and got % prime == secret:
            raise AssertionError("right up to a multiple of the prime: reduce the result "
                                 "modulo prime")
        if t > 1 and got in {s.y for s in pick}:
            raise AssertionError("you returned a share, not the secret: evaluate the "
                                 "interpolating polynomial at x = 0")
        raise AssertionError(
            f"wrong secret for t = {t} points (prime {prime}). Lagrange at 0: "
            "sum_i y_i prod_{j != i} x_j / (x_j - x_i), where dividing means multiplying by "
            "pow(x_j - x_i, -1, prime), all modulo prime")
    correct(f"your Lagrange interpolation recovered {trials} secrets, from 1-of-1 up to "
            "7-point sharings, in fields up to 2^256")


def _pair_seeds(cids: list[int], rng: SecureRandom) -> dict[tuple[int, int], bytes]:
    return {(u, v): rng.bytes(32) for u in cids for v in cids if u < v}


def check_pairwise_masking(mask_inputs: Callable[..., Mapping[int, np.ndarray]],
                           seed: int = 0) -> None:
    """``mask_inputs(inputs, seeds)`` must add pairwise masks (ChaCha20 from ``seeds``) that
    hide every input and cancel in the sum mod 2^32."""
    rng = np.random.default_rng(seed)
    srng = SecureRandom(seed)
    for trial in range(4):
        n, d = int(rng.integers(2, 7)), int(rng.integers(2000, 5000))
        cids = sorted(int(c) for c in rng.choice(100, size=n, replace=False))
        inputs = {c: rng.integers(0, 2**32, d, dtype=np.uint64).astype(np.uint32) for c in cids}
        inputs[cids[0]] = np.zeros(d, dtype=np.uint32)  # the most structured input there is
        seeds = _pair_seeds(cids, srng)
        out = mask_inputs({c: x.copy() for c, x in inputs.items()}, seeds)
        assert set(out) == set(cids), f"return one masked vector per client {cids}"
        y = {c: np.asarray(out[c]).astype(np.uint32) for c in cids}
        total_in = mod_sum(list(inputs.values()), 32, d)
        total_out = mod_sum(list(y.values()), 32, d)
        if not np.array_equal(total_in, total_out):
            raise AssertionError("the masked inputs do not sum to the inputs' sum mod 2^32: the "
                                 "two ends of a pair must add opposite masks (+m for the smaller "
                                 "id, -m for the larger), computed with uint32 wrap-around")
        for c in cids:
            if np.mean(y[c] == inputs[c]) > 0.01:
                raise AssertionError(f"client {c}'s masked vector still equals its input in "
                                     "places: every client must add a mask for every peer")
        zero_masked = y[cids[0]]
        if stats.chisquare(np.bincount(zero_masked.view(np.uint8), minlength=256)).pvalue < 1e-6:
            raise AssertionError("a masked all-zero input does not look uniform: expand each "
                                 "seed with fedlearn.secagg.expand_mask (ChaCha20)")
        again = mask_inputs({c: x.copy() for c, x in inputs.items()}, seeds)
        if not all(np.array_equal(np.asarray(again[c]).astype(np.uint32), y[c]) for c in cids):
            raise AssertionError("masks must come from the seeds only (no fresh randomness), or "
                                 "the server could never remove a dropped client's masks")
        if trial == 0 and n >= 3:
            u, v = cids[0], cids[1]
            changed = dict(seeds)
            changed[(u, v)] = srng.bytes(32)
            out2 = mask_inputs({c: x.copy() for c, x in inputs.items()}, changed)
            moved = {c for c in cids
                     if not np.array_equal(np.asarray(out2[c]).astype(np.uint32), y[c])}
            if moved != {u, v}:
                raise AssertionError(f"changing the seed of pair ({u}, {v}) changed the vectors "
                                     f"of clients {sorted(moved)}: only those two should move")
    correct("pairwise masks hide each input (uniform bytes) and cancel exactly in the sum")


def check_expansion(expansion: Callable[[int, int, int], float], seed: int = 0) -> None:
    """``expansion(n, d, input_bits)`` must count like Bonawitz et al. (2017, Sec. 7)."""
    rng = np.random.default_rng(seed)
    cases = [(2**10, 2**20, 16), (2**14, 2**24, 16)] + [
        (int(rng.integers(2, 5000)), int(rng.integers(100, 10**7)), int(rng.choice([8, 16, 32])))
        for _ in range(6)]
    for n, d, b in cases:
        got = float(expansion(n, d, b))
        want = bonawitz_expansion(n, d, b)
        if abs(got - want) <= 1e-9 * want:
            continue
        no_growth = (2 * n * 32 + (5 * n - 4) * 32 + d * b / 8) / (d * b / 8)
        if abs(got - no_growth) < 1e-6 * no_growth:
            raise AssertionError("the masked vector needs input_bits + ceil(log2 n) bits per "
                                 "element, or the sum of n inputs wraps around")
        if abs(got - (want - (2 * n * 32 + (5 * n - 4) * 32) / (d * b / 8))) < 1e-6 * want:
            raise AssertionError("you left out the keys and shares: 2n public keys and 5n - 4 "
                                 "shares of 32 bytes each")
        raise AssertionError(f"expansion({n}, {d}, {b}) = {got:.4f}, expected {want:.4f}: "
                             "(2n*32 + (5n-4)*32 + d*(b + ceil(log2 n))/8) / (d*b/8)")
    correct(f"expansion(2^10, 2^20, 16) = {bonawitz_expansion(2**10, 2**20, 16):.2f}, "
            "Bonawitz et al.'s 1.73x")


def check_label_inference(label_from_update: Callable[[ClientUpdate], int], trials: int = 8,
                          seed: int = 0) -> None:
    """``label_from_update(update)`` must name the class of the single image behind a FedSGD
    update of a :class:`~fedlearn.models.SmallCNN`."""
    rng = np.random.default_rng(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add overhead
    try:
        for t in range(trials):
            k = int(rng.integers(2, 6))
            model = make_model("cnn", seed=int(rng.integers(1000)), num_classes=k, width=4,
                               hidden=16)
            x = torch.from_numpy(rng.random((1, 1, 28, 28)).astype(np.float32))
            y = int(rng.integers(k))
            lr = float(rng.choice([0.01, 0.1, 1.0]))
            update = local_train(model, clone_state(model.state_dict()),
                                 TensorDataset(x, torch.tensor([y])),
                                 TrainConfig(steps=1, batch_size=None, lr=lr), seed=t)
            got = int(label_from_update(update))
            if got == y:
                continue
            bias = update.delta["head.3.bias"]
            if got == int(torch.argmin(bias)):
                raise AssertionError("you found the most negative entry of the *update*: the "
                                     "update is -lr * gradient, so the sign is flipped")
            raise AssertionError(f"wrong class ({got} instead of {y}, {k} classes): look at the "
                                 "last layer's bias, whose gradient is softmax - onehot(y)")
    finally:
        torch.set_num_threads(threads)
    correct(f"you read the label off {trials} single-image updates with 2 to 5 classes")
