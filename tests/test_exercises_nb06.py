"""The self-checks of notebook 06 accept the reference answers and reject likely mistakes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedlearn.exercises import nb06
from fedlearn.secagg import expand_mask
from fedlearn.update import ClientUpdate

from .exercise_language import assert_correct, exercise_language, only_in, rejects  # noqa: F401

pytestmark = pytest.mark.usefixtures("exercise_language")

# ------------------------------------------------------------------------------ Shamir


def lagrange(points: list[tuple[int, int]], prime: int) -> int:
    total = 0
    for i, (xi, yi) in enumerate(points):
        num = den = 1
        for j, (xj, _) in enumerate(points):
            if i != j:
                num = num * xj % prime
                den = den * (xj - xi) % prime
        total += yi * num * pow(den, -1, prime)
    return total % prime


def test_shamir_reference_passes(capsys: pytest.CaptureFixture[str]) -> None:
    nb06.check_shamir_reconstruct(lagrange)
    assert_correct(capsys.readouterr().out)


def test_shamir_mistakes_are_caught() -> None:
    with rejects("modulo prime"):
        nb06.check_shamir_reconstruct(lambda p, q: lagrange(p, q) + q)
    with rejects("x = 0"):
        nb06.check_shamir_reconstruct(lambda p, q: p[0][1])
    with rejects("Lagrange"):
        nb06.check_shamir_reconstruct(lambda p, q: sum(y for _, y in p) % q)

# ------------------------------------------------------------------------------ masks


def mask_inputs(inputs, seeds, bits=32):
    out = {c: x.astype(np.uint32) for c, x in inputs.items()}
    for (u, v), s in seeds.items():
        m = expand_mask(s, len(out[u]), 32)
        out[u] = out[u] + m
        out[v] = out[v] - m
    return out


def test_masking_reference_passes(capsys: pytest.CaptureFixture[str]) -> None:
    nb06.check_pairwise_masking(mask_inputs)
    assert_correct(capsys.readouterr().out)


def test_masking_mistakes_are_caught() -> None:
    def same_sign(inputs, seeds):
        out = {c: x.astype(np.uint32) for c, x in inputs.items()}
        for (u, v), s in seeds.items():
            m = expand_mask(s, len(out[u]), 32)
            out[u] = out[u] + m
            out[v] = out[v] + m
        return out

    def numpy_masks(inputs, seeds):
        out = {c: x.astype(np.uint32) for c, x in inputs.items()}
        for (u, v), s in seeds.items():
            m = np.random.default_rng(int.from_bytes(s[:4], "little")).integers(
                0, 2**8, len(out[u])).astype(np.uint32)  # weak and non-uniform
            out[u] = out[u] + m
            out[v] = out[v] - m
        return out

    def fresh_randomness(inputs, seeds):
        out = {c: x.astype(np.uint32) for c, x in inputs.items()}
        for (u, v), _ in seeds.items():
            m = expand_mask(np.random.bytes(32), len(out[u]), 32)
            out[u] = out[u] + m
            out[v] = out[v] - m
        return out

    with rejects("opposite masks"):
        nb06.check_pairwise_masking(same_sign)
    with rejects("uniform"):
        nb06.check_pairwise_masking(numpy_masks)
    with rejects("seeds only"):
        nb06.check_pairwise_masking(fresh_randomness)
    with rejects("still equals"):
        nb06.check_pairwise_masking(lambda inputs, seeds: inputs)

# ------------------------------------------------------------------------------ expansion


def expansion(n: int, d: int, b: int) -> float:
    return (2 * n * 32 + (5 * n - 4) * 32 + d * (b + math.ceil(math.log2(n))) / 8) / (d * b / 8)


def test_expansion_reference_passes(capsys: pytest.CaptureFixture[str]) -> None:
    nb06.check_expansion(expansion)
    assert_correct(capsys.readouterr().out, en="1.73x", zh="1.73 倍")


def test_expansion_mistakes_are_caught() -> None:
    with rejects("log2 n"):
        nb06.check_expansion(lambda n, d, b: (2 * n * 32 + (5 * n - 4) * 32 + d * b / 8)
                             / (d * b / 8))
    with rejects("keys and shares"):
        nb06.check_expansion(lambda n, d, b: (b + math.ceil(math.log2(n))) / b)
    with rejects("expected"):
        nb06.check_expansion(lambda n, d, b: 1.73)

# ------------------------------------------------------------------------------ labels


def label_from_update(update: ClientUpdate) -> int:
    return int(torch.argmax(update.delta["head.3.bias"]))


@only_in("zh")  # slow: one language (rejects() checks both versions of a hint)
def test_label_reference_passes(capsys: pytest.CaptureFixture[str]) -> None:
    nb06.check_label_inference(label_from_update)
    assert_correct(capsys.readouterr().out)


@only_in("zh")  # slow: one language (rejects() checks both versions of a hint)
def test_label_mistakes_are_caught() -> None:
    with rejects("sign is flipped"):
        nb06.check_label_inference(lambda u: int(torch.argmin(u.delta["head.3.bias"])))
    with rejects("wrong class"):
        nb06.check_label_inference(lambda u: 0 if int(torch.argmax(u.delta["head.3.bias"]))
                                   else 1)
