"""Seeding and small tensor-dictionary helpers shared by the whole package.

Federated code moves *named tensors* (a model's ``state_dict``) between hospitals and the
server. Keeping the arithmetic on those dictionaries in one place means every algorithm
(FedAvg, DP clipping, secure-aggregation masking, server optimisers) speaks the same language.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

import numpy as np
import torch

Seed = int | np.random.Generator | None
StateDict = dict[str, torch.Tensor]

__all__ = [
    "Seed",
    "StateDict",
    "seed_everything",
    "as_generator",
    "derive_seed",
    "torch_generator",
    "float_keys",
    "clone_state",
    "state_sub",
    "state_add",
    "state_scale",
    "state_norm",
    "state_num_params",
    "state_nbytes",
    "flatten_state",
    "unflatten_state",
]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch at once: the one call a notebook's first cell makes."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def as_generator(seed: Seed) -> np.random.Generator:
    """Turn an int / Generator / None into a NumPy Generator (a Generator is passed through)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def derive_seed(*parts: int) -> int:
    """A stable 63-bit seed from several integers (e.g. run seed, round, client id).

    Using ``SeedSequence`` rather than ``seed + round`` avoids two different
    (round, client) pairs sharing a random stream.
    """
    ss = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts])
    return int(ss.generate_state(1, dtype=np.uint64)[0]) & ((1 << 63) - 1)


def torch_generator(seed: int) -> torch.Generator:
    """A CPU torch Generator with a fixed seed (for shuffling inside local training)."""
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


def float_keys(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Entries of a state dict that are learned or averaged (floating point).

    Integer buffers such as BatchNorm's ``num_batches_tracked`` are counters, not
    parameters: averaging them is meaningless, so aggregation skips them.
    """
    return [k for k, v in state.items() if torch.is_floating_point(v)]


def clone_state(state: Mapping[str, torch.Tensor]) -> StateDict:
    """A detached deep copy (so later in-place training cannot change it)."""
    return {k: v.detach().clone() for k, v in state.items()}


def state_sub(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> StateDict:
    """``a - b`` over the floating-point entries of ``a``."""
    return {k: a[k].detach() - b[k].detach() for k in float_keys(a)}


def state_add(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor],
              alpha: float = 1.0) -> StateDict:
    """``a + alpha * b``; entries of ``a`` missing from ``b`` (e.g. int buffers) are kept."""
    out: StateDict = {}
    for k, v in a.items():
        out[k] = v.detach() + alpha * b[k].to(v.dtype) if k in b else v.detach().clone()
    return out


def state_scale(a: Mapping[str, torch.Tensor], factor: float) -> StateDict:
    """``factor * a``."""
    return {k: v * factor for k, v in a.items()}


def state_norm(a: Mapping[str, torch.Tensor]) -> float:
    """Global L2 norm over all entries, as if the dict were one flat vector (used by clipping)."""
    if not a:
        return 0.0
    return float(torch.sqrt(sum((v.detach().double() ** 2).sum() for v in a.values())))


def state_num_params(a: Mapping[str, torch.Tensor]) -> int:
    """Number of scalars in the dict."""
    return sum(v.numel() for v in a.values())


def state_nbytes(a: Mapping[str, torch.Tensor]) -> int:
    """Bytes needed to send the dict as raw tensors (what a round costs on the wire)."""
    return sum(v.numel() * v.element_size() for v in a.values())


def flatten_state(a: Mapping[str, torch.Tensor], keys: Iterable[str] | None = None) -> torch.Tensor:
    """Concatenate entries (in ``keys`` order, default insertion order) into one 1-D tensor."""
    ks = list(a.keys()) if keys is None else list(keys)
    if not ks:
        return torch.zeros(0)
    return torch.cat([a[k].detach().reshape(-1) for k in ks])


def unflatten_state(vec: torch.Tensor, like: Mapping[str, torch.Tensor]) -> StateDict:
    """Inverse of :func:`flatten_state` using the shapes and dtypes of ``like``."""
    need = sum(v.numel() for v in like.values())
    if vec.numel() != need:
        raise ValueError(f"vector has {vec.numel()} entries but the template needs {need}")
    out: StateDict = {}
    i = 0
    for k, v in like.items():
        n = v.numel()
        out[k] = vec[i:i + n].reshape(v.shape).to(v.dtype)
        i += n
    return out
