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
from . import correct, say

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
            raise AssertionError(say(
                en="right up to a multiple of the prime: reduce the result modulo prime",
                zh="只差素数的整数倍：请把结果对 prime 取模"))
        if t > 1 and got in {s.y for s in pick}:
            raise AssertionError(say(
                en="you returned a share, not the secret: evaluate the interpolating polynomial "
                   "at x = 0",
                zh="你返回的是一个份额，而不是秘密：请在 x = 0 处求插值多项式的值"))
        raise AssertionError(say(
            en=f"wrong secret for t = {t} points (prime {prime}). Lagrange at 0: "
               "sum_i y_i prod_{j != i} x_j / (x_j - x_i), where dividing means multiplying by "
               "pow(x_j - x_i, -1, prime), all modulo prime",
            zh=f"t = {t} 个点时秘密不对（素数 {prime}）。在 0 处做拉格朗日插值："
               "sum_i y_i prod_{j != i} x_j / (x_j - x_i)，其中除法就是乘以 "
               "pow(x_j - x_i, -1, prime)，全部运算都对 prime 取模"))
    correct(say(
        en=f"your Lagrange interpolation recovered {trials} secrets, from 1-of-1 up to "
           "7-point sharings, in fields up to 2^256",
        zh=f"你的拉格朗日插值还原了 {trials} 个秘密，从 1-of-1 到 7 个点的秘密共享，"
           "域的大小最高到 2^256"))


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
        assert set(out) == set(cids), say(
            en=f"return one masked vector per client {cids}",
            zh=f"请为每个参与方 {cids} 各返回一个加了掩码的向量")
        y = {c: np.asarray(out[c]).astype(np.uint32) for c in cids}
        total_in = mod_sum(list(inputs.values()), 32, d)
        total_out = mod_sum(list(y.values()), 32, d)
        if not np.array_equal(total_in, total_out):
            raise AssertionError(say(
                en="the masked inputs do not sum to the inputs' sum mod 2^32: the two ends of a "
                   "pair must add opposite masks (+m for the smaller id, -m for the larger), "
                   "computed with uint32 wrap-around",
                zh="加掩码后的输入之和（模 2^32）不等于原输入之和：一对参与方的两端必须加上"
                   "相反的掩码（id 较小的加 +m，较大的加 -m），并按 uint32 回绕计算"))
        for c in cids:
            if np.mean(y[c] == inputs[c]) > 0.01:
                raise AssertionError(say(
                    en=f"client {c}'s masked vector still equals its input in places: every "
                       "client must add a mask for every peer",
                    zh=f"参与方 {c} 加掩码后的向量仍有一些位置等于原输入：每个参与方都必须"
                       "为每个同伴各加一个掩码"))
        zero_masked = y[cids[0]]
        if stats.chisquare(np.bincount(zero_masked.view(np.uint8), minlength=256)).pvalue < 1e-6:
            raise AssertionError(say(
                en="a masked all-zero input does not look uniform: expand each seed with "
                   "fedlearn.secagg.expand_mask (ChaCha20)",
                zh="全零输入加掩码后看起来并不均匀：请用 fedlearn.secagg.expand_mask（ChaCha20）"
                   "扩展每个种子"))
        again = mask_inputs({c: x.copy() for c, x in inputs.items()}, seeds)
        if not all(np.array_equal(np.asarray(again[c]).astype(np.uint32), y[c]) for c in cids):
            raise AssertionError(say(
                en="masks must come from the seeds only (no fresh randomness), or the server "
                   "could never remove a dropped client's masks",
                zh="掩码只能由种子生成（不能引入新的随机性），否则服务器永远无法去除掉线参与方"
                   "的掩码"))
        if trial == 0 and n >= 3:
            u, v = cids[0], cids[1]
            changed = dict(seeds)
            changed[(u, v)] = srng.bytes(32)
            out2 = mask_inputs({c: x.copy() for c, x in inputs.items()}, changed)
            moved = {c for c in cids
                     if not np.array_equal(np.asarray(out2[c]).astype(np.uint32), y[c])}
            if moved != {u, v}:
                raise AssertionError(say(
                    en=f"changing the seed of pair ({u}, {v}) changed the vectors of clients "
                       f"{sorted(moved)}: only those two should move",
                    zh=f"改变参与方对 ({u}, {v}) 的种子后，参与方 {sorted(moved)} 的向量都变了："
                       "应当只有这两个参与方变化"))
    correct(say(
        en="pairwise masks hide each input (uniform bytes) and cancel exactly in the sum",
        zh="成对掩码隐藏了每个输入（字节均匀分布），并在求和时恰好相互抵消"))


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
            raise AssertionError(say(
                en="the masked vector needs input_bits + ceil(log2 n) bits per element, or the "
                   "sum of n inputs wraps around",
                zh="加掩码的向量每个元素需要 input_bits + ceil(log2 n) 位，"
                   "否则 n 个输入之和会回绕"))
        if abs(got - (want - (2 * n * 32 + (5 * n - 4) * 32) / (d * b / 8))) < 1e-6 * want:
            raise AssertionError(say(
                en="you left out the keys and shares: 2n public keys and 5n - 4 shares of 32 "
                   "bytes each",
                zh="你漏掉了密钥和份额：2n 个公钥和 5n - 4 个份额，每个 32 字节"))
        raise AssertionError(say(
            en=f"expansion({n}, {d}, {b}) = {got:.4f}, expected {want:.4f}: "
               "(2n*32 + (5n-4)*32 + d*(b + ceil(log2 n))/8) / (d*b/8)",
            zh=f"expansion({n}, {d}, {b}) = {got:.4f}，应为 {want:.4f}："
               "(2n*32 + (5n-4)*32 + d*(b + ceil(log2 n))/8) / (d*b/8)"))
    correct(say(
        en=f"expansion(2^10, 2^20, 16) = {bonawitz_expansion(2**10, 2**20, 16):.2f}, "
           "Bonawitz et al.'s 1.73x",
        zh=f"expansion(2^10, 2^20, 16) = {bonawitz_expansion(2**10, 2**20, 16):.2f}，"
           "与 Bonawitz 等人论文中给出的 1.73 倍完全一致"))


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
                raise AssertionError(say(
                    en="you found the most negative entry of the *update*: the update is "
                       "-lr * gradient, so the sign is flipped",
                    zh="你找的是*更新*中最小（最负）的元素：更新是 -lr * 梯度，"
                       "所以正负号是反的"))
            raise AssertionError(say(
                en=f"wrong class ({got} instead of {y}, {k} classes): look at the last layer's "
                   "bias, whose gradient is softmax - onehot(y)",
                zh=f"类别不对（得到 {got}，应为 {y}，共 {k} 类）：请看最后一层的偏置，"
                   "它的梯度是 softmax - onehot(y)"))
    finally:
        torch.set_num_threads(threads)
    correct(say(
        en=f"you read the label off {trials} single-image updates with 2 to 5 classes",
        zh=f"你从 {trials} 个单张图像的更新中读出了标签，类别数从 2 到 5"))
