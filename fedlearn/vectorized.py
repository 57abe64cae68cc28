"""The vectorised engine: every sampled client of a round trained at once, with ``torch.func``.

A thousand hospitals with sixty patients each take six minibatch steps apiece. Run one after
another, each step is a tiny matrix product wrapped in Python, autograd and optimiser
overhead, paid 6,000 times per round. But the clients do not talk to each other during local
training: client ``k`` maps ``(w_global, its batches)`` to ``w_k`` with the same function as
every other client. So we stack the clients' weights along a new leading axis and apply that
function to all of them at once:

* ``torch.func.functional_call`` runs the model with weights passed in, not stored in it;
* ``torch.func.grad_and_value`` turns "loss of weights" into "gradient and loss of weights";
* ``torch.func.vmap`` maps the whole local step (forward, backward, optimiser update) over the
  client axis, so one step of 1,000 clients is a handful of batched kernels.

Clients of unequal size take different numbers of steps and have a smaller last batch. Both
are handled by **masking**: a client's batch is padded with examples of weight 0, and a step
beyond a client's last one is computed but discarded (``torch.where`` keeps the old weights
*and* the old optimiser state). Discarding matters: on a zero gradient, FedProx's proximal
term, weight decay and momentum would all still move the weights.

Each client shuffles with the same seeded generator as :func:`fedlearn.local_train`, so given
the same batch order the two engines compute the same function; their results agree to float
rounding (batched kernels sum in a different order). The engine returns ordinary
:class:`~fedlearn.ClientUpdate` objects, so every strategy and aggregator accepts them.

It covers plain local SGD (with momentum and weight decay) and Adam, optional gradient-norm
clipping and class weights: FedAvg, FedSGD, FedProx (its proximal hook), FedNova and the
server optimisers (FedAvgM, FedAdam, ...), whose server step is unchanged. It refuses what it
cannot reproduce: BatchNorm buffers, dropout, Opacus (DP-SGD) clients, custom client losses and
any other local hook (SCAFFOLD, FedBN). Memory: one copy of all clients' training data as a
single tensor (built in :meth:`VectorizedEngine.prepare`), plus K copies of the weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from .client import Client, TrainConfig
from .engine import EngineUnsupportedError, ProcessUpdate
from .update import ClientUpdate
from .utils import StateDict, float_keys

if TYPE_CHECKING:
    from .strategy import ClientInstruction, Strategy

__all__ = ["VectorizedEngine", "batch_schedule", "derive_seeds", "sgd_step_", "adam_step_"]

Tensors = dict[str, torch.Tensor]
_ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults, which local_train uses
_ADAM_EPS = 1e-8


_SS_INIT_A, _SS_MULT_A = np.uint32(0x43B0D7E5), np.uint32(0x931E8875)
_SS_INIT_B, _SS_MULT_B = np.uint32(0x8B51F9DD), np.uint32(0x58F38DED)
_SS_MIX_L, _SS_MIX_R = np.uint32(0xCA01F9DD), np.uint32(0x4973F715)
_SS_POOL = 4


def derive_seeds(prefix: Sequence[int], last: Sequence[int] | np.ndarray) -> np.ndarray:
    """``[derive_seed(*prefix, x) for x in last]``, for many ``x`` at once.

    :func:`fedlearn.utils.derive_seed` hashes its integers with NumPy's ``SeedSequence``
    (O'Neill's ``seed_seq_fe``), about 20 microseconds a call: 20 ms per round of 1,000
    clients. This is the same hash, written out on uint32 arrays (one column per ``x``);
    a test checks it against ``derive_seed`` itself.
    """
    cols = np.asarray(last, dtype=np.int64) & 0xFFFFFFFF
    ent = [np.full(cols.shape, int(p) & 0xFFFFFFFF, dtype=np.uint32) for p in prefix]
    ent.append(cols.astype(np.uint32))
    with np.errstate(over="ignore"):
        h = [_SS_INIT_A]

        def hashmix(v: np.ndarray) -> np.ndarray:
            v = v ^ h[0]
            h[0] = h[0] * _SS_MULT_A
            v = v * h[0]
            return v ^ (v >> np.uint32(16))

        def mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            r = _SS_MIX_L * x - _SS_MIX_R * y
            return r ^ (r >> np.uint32(16))

        zero = np.zeros(cols.shape, dtype=np.uint32)
        pool = [hashmix(ent[i] if i < len(ent) else zero) for i in range(_SS_POOL)]
        for i_src in range(_SS_POOL):
            for i_dst in range(_SS_POOL):
                if i_src != i_dst:
                    pool[i_dst] = mix(pool[i_dst], hashmix(pool[i_src]))
        for i_src in range(_SS_POOL, len(ent)):
            for i_dst in range(_SS_POOL):
                pool[i_dst] = mix(pool[i_dst], hashmix(ent[i_src]))
        hb = _SS_INIT_B
        words = []
        for i in range(2):  # one uint64 = two uint32 words, low word first
            v = pool[i] ^ hb
            hb = hb * _SS_MULT_B
            v = v * hb
            words.append(v ^ (v >> np.uint32(16)))
    out = words[0].astype(np.uint64) | (words[1].astype(np.uint64) << np.uint64(32))
    return (out & np.uint64((1 << 63) - 1)).astype(np.int64)


def batch_schedule(n: int, config: TrainConfig, gen: torch.Generator,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The index batches ``local_train`` draws for a client of ``n`` examples, as arrays.

    Same generator calls (one ``randperm`` per epoch), same split into batches of
    ``config.batch_size`` (the last one of an epoch smaller) and the same stopping rule
    (``config.steps`` across epochs, else ``config.epochs`` passes). Returns ``idx`` of shape
    (steps, B) padded with 0, and the true size of every batch.
    """
    b = n if config.batch_size is None else min(config.batch_size, n)
    per_epoch = -(-n // b)
    epochs = config.epochs if config.steps is None else -(-config.steps // per_epoch)
    total = per_epoch * epochs if config.steps is None else config.steps
    idx = np.zeros((per_epoch * epochs, b), dtype=np.int64)
    for e in range(epochs):
        flat = idx[e * per_epoch:(e + 1) * per_epoch].reshape(-1)
        flat[:n] = torch.randperm(n, generator=gen).numpy()
    sizes = np.full(per_epoch, b, dtype=np.int64)
    sizes[-1] = n - b * (per_epoch - 1)
    return idx[:total], np.tile(sizes, epochs)[:total]


def sgd_step_(p: Tensors, buf: Tensors, g: Tensors, active: torch.Tensor | None,
              config: TrainConfig) -> None:
    """One torch.optim.SGD step of every client in place, on stacked (K, ...) tensors.

    Clients with ``active[k]`` False keep their weights *and* their momentum buffer: we select
    the old values with ``torch.where`` (``active=None``: every client steps). Multiplying their
    gradient by 0 would not do, since weight decay, FedProx's proximal term and momentum move
    the weights even on a zero gradient.
    """
    for n in p:
        d = g[n] if not config.weight_decay else g[n].add(p[n], alpha=config.weight_decay)
        if config.momentum:
            # torch starts the buffer at the first direction; momentum * 0 + d is that exactly
            nb = buf[n].mul(config.momentum).add_(d)
            buf[n] = nb if active is None else torch.where(_bcast(active, nb), nb, buf[n])
            d = buf[n]
        if active is None:
            p[n].add_(d, alpha=-config.lr)
        else:
            p[n] = torch.where(_bcast(active, d), p[n].add(d, alpha=-config.lr), p[n])


def adam_step_(p: Tensors, state: tuple[Tensors, Tensors, torch.Tensor], g: Tensors,
               active: torch.Tensor | None, config: TrainConfig) -> None:
    """One torch.optim.Adam step (defaults, L2 weight decay) of every active client, in place."""
    m, v, step = state
    b1, b2 = _ADAM_BETAS
    on = torch.ones_like(step, dtype=torch.bool) if active is None else active
    step += on.to(step.dtype)
    bc1 = 1 - b1 ** step
    bc2_sqrt = torch.sqrt(1 - b2 ** step)
    for n in p:
        d = g[n] if not config.weight_decay else g[n].add(p[n], alpha=config.weight_decay)
        m1 = m[n].lerp(d, 1 - b1)
        v1 = v[n].mul(b2).addcmul_(d, d, value=1 - b2)
        denom = (v1.sqrt() / _bcast(bc2_sqrt, v1).to(v1.dtype)).add_(_ADAM_EPS)
        new = p[n] - _bcast(config.lr / bc1, m1).to(m1.dtype) * m1 / denom
        keep = _bcast(on, new)
        p[n], m[n], v[n] = (torch.where(keep, new, p[n]), torch.where(keep, m1, m[n]),
                            torch.where(keep, v1, v[n]))


def _bcast(per_client: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (K,) tensor viewed as (K, 1, ..., 1) to broadcast against stacked (K, ...) tensors."""
    return per_client.view(-1, *([1] * (like.dim() - 1)))


@dataclass
class _Group:
    """Clients of one round sharing one config and proximal ``mu``: trained together."""

    config: TrainConfig
    mu: float
    clients: list[Client]


class VectorizedEngine:
    """Train all sampled clients of a round at once (``fl.run(..., engine="vectorized")``).

    See the module docstring for how and for what it refuses. ``prepare`` concatenates every
    client's training data once; ``fit_round`` then gathers each step's batches from it.
    """

    name = "vectorized"

    def __init__(self) -> None:
        self._model: nn.Module | None = None
        self._x: torch.Tensor | None = None
        self._y: torch.Tensor | None = None
        self._offset: dict[int, int] = {}

    # ------------------------------------------------------------------ checks, once per run

    def prepare(self, model: nn.Module, clients: Sequence[Client], strategy: Strategy) -> None:
        """Refuse models and clients this engine cannot run; stack the clients' data."""
        buffers = [name for name, _ in model.named_buffers()]
        if buffers:
            raise EngineUnsupportedError(
                f"engine='vectorized' cannot train a model with buffers {buffers[:4]} (BatchNorm "
                "running statistics change outside the gradient step); use norm='group' or "
                "'none', or engine='sequential'")
        drop = [n for n, m in model.named_modules()
                if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]
        if drop:
            raise EngineUnsupportedError(
                f"engine='vectorized' does not run dropout (modules {drop}): its random masks "
                "could not match the sequential engine; use dropout=0 or engine='sequential'")
        for c in clients:
            if type(c).fit is not Client.fit:
                raise EngineUnsupportedError(
                    f"engine='vectorized' runs plain fedlearn.Client objects only; client "
                    f"{c.cid} is a {type(c).__name__} with its own fit() (e.g. Opacus DP-SGD); "
                    "use engine='sequential'")
            if c.loss_fn is not None:
                raise EngineUnsupportedError(
                    f"engine='vectorized' uses the cross-entropy loss; client {c.cid} has a "
                    "custom loss_fn; use engine='sequential'")
        xs = [c.train.tensors[0] for c in clients]
        ys = [c.train.tensors[1] for c in clients]
        shapes = {(tuple(x.shape[1:]), x.dtype) for x in xs}
        if len(shapes) != 1:
            raise EngineUnsupportedError(
                f"engine='vectorized' needs every client's inputs to share one shape and dtype, "
                f"got {sorted(shapes, key=str)}")
        if any(y.dtype != torch.int64 or y.dim() != 1 for y in ys):
            raise EngineUnsupportedError(
                "engine='vectorized' needs integer class labels of shape (n,) (int64) at every "
                "client; use engine='sequential'")
        self._model = model
        self._x = torch.cat(xs)
        self._y = torch.cat(ys)
        sizes = np.cumsum([0] + [len(x) for x in xs])
        self._offset = {c.cid: int(o) for c, o in zip(clients, sizes[:-1], strict=True)}

    def _groups(self, clients: Sequence[Client],
                instructions: Mapping[int, ClientInstruction]) -> list[_Group]:
        from .algorithms.fedprox import ProximalHook

        groups: dict[tuple[TrainConfig, float], _Group] = {}
        for c in clients:
            if c.cid not in instructions:
                continue
            if c.cid not in self._offset:
                raise EngineUnsupportedError(
                    f"client {c.cid} was not among the clients given to prepare()")
            ins = instructions[c.cid]
            mu = 0.0
            for h in ins.hooks:
                if type(h) is ProximalHook:
                    mu += h.mu
                else:
                    raise EngineUnsupportedError(
                        f"engine='vectorized' cannot run the local hook {type(h).__name__} "
                        f"(client {c.cid}); it runs FedProx's ProximalHook only. SCAFFOLD, FedBN "
                        "and other hooks need engine='sequential'")
            groups.setdefault((ins.config, mu), _Group(ins.config, mu, [])).clients.append(c)
        return list(groups.values())

    # ------------------------------------------------------------------------------ training

    def fit_round(self, worker: nn.Module, clients: Sequence[Client],
                  instructions: Mapping[int, ClientInstruction], global_state: StateDict, *,
                  rnd: int, seed: int, process: ProcessUpdate | None = None,
                  ) -> list[ClientUpdate]:
        """Every instructed client's update, in the order of ``clients``."""
        if self._model is None:
            raise RuntimeError("call prepare(model, clients, strategy) before fit_round")
        done: dict[int, ClientUpdate] = {}
        for group in self._groups(clients, instructions):
            for u in self._fit_group(group, global_state, rnd, seed):
                done[u.cid] = u
        out = []
        for c in clients:
            if c.cid in done:
                u = done[c.cid]
                out.append(process(rnd, c, u) if process is not None else u)
        return out

    def _fit_group(self, group: _Group, global_state: StateDict, rnd: int,
                   seed: int) -> list[ClientUpdate]:
        assert self._model is not None and self._x is not None and self._y is not None
        model, cfg, cs = self._model, group.config, group.clients
        k_clients = len(cs)
        train_names = [n for n, p in model.named_parameters() if p.requires_grad]
        frozen = {n: global_state[n] for n, p in model.named_parameters() if not p.requires_grad}
        w0 = {n: global_state[n].detach() for n in train_names}

        # the batch schedule: index (T, K, B) into the stacked data, weight 1/b (0 = padding)
        gen = torch.Generator()
        seeds = derive_seeds((seed, rnd), [c.cid for c in cs])
        scheds = []
        for c, s in zip(cs, seeds.tolist(), strict=True):
            gen.manual_seed(s)
            scheds.append(batch_schedule(c.num_train, cfg, gen))
        steps = [len(sz) for _, sz in scheds]
        t_max = max(steps)
        b_max = max((ix.shape[1] for ix, _ in scheds), default=1)
        idx = np.zeros((t_max, k_clients, b_max), dtype=np.int64)
        wgt = np.zeros((t_max, k_clients, b_max), dtype=np.float32)
        cols = np.arange(b_max)
        for k, (c, (ix, sz)) in enumerate(zip(cs, scheds, strict=True)):
            t_k, b_k = ix.shape
            idx[:t_k, k, :b_k] = ix + self._offset[c.cid]
            wgt[:t_k, k, :] = np.where(cols[None, :] < sz[:, None], 1.0 / sz[:, None], 0.0)
        active = torch.as_tensor(np.arange(t_max)[:, None] < np.asarray(steps)[None, :])
        idx_t, wgt_t = torch.from_numpy(idx), torch.from_numpy(wgt)
        cw = (torch.tensor(cfg.class_weights, dtype=torch.float32)
              if cfg.class_weights is not None else None)
        mu, clip = group.mu, cfg.max_grad_norm

        def loss_of(p: Tensors, xb: torch.Tensor, yb: torch.Tensor,
                    wb: torch.Tensor) -> torch.Tensor:
            """One client's minibatch loss: mean cross-entropy (+ FedProx's term)."""
            logits = functional_call(model, {**p, **frozen}, (xb,))
            per = F.cross_entropy(logits, yb, reduction="none")
            if cw is not None:
                per = per * cw[yb]
            loss = (per * wb).sum()
            if mu:
                loss = loss + 0.5 * mu * sum(((p[n] - w0[n]) ** 2).sum() for n in p)
            return loss

        grads = vmap(grad_and_value(loss_of))  # every client's gradient and loss at once
        p = {n: w0[n].unsqueeze(0).repeat(k_clients, *([1] * w0[n].dim())) for n in train_names}
        if cfg.optimizer == "sgd":
            state: object = {n: torch.zeros_like(v) for n, v in p.items()}
        else:
            state = ({n: torch.zeros_like(v) for n, v in p.items()},
                     {n: torch.zeros_like(v) for n, v in p.items()},
                     torch.zeros(k_clients, dtype=torch.float64))
        loss_sum = torch.zeros(k_clients, dtype=torch.float64)
        with torch.no_grad():
            for t in range(t_max):
                it = idx_t[t].reshape(-1)
                xb = self._x.index_select(0, it).view(k_clients, b_max, *self._x.shape[1:])
                yb = self._y.index_select(0, it).view(k_clients, b_max)
                g, loss = grads(p, xb, yb, wgt_t[t])
                act = active[t]
                on = None if bool(act.all()) else act
                if clip is not None:  # torch.nn.utils.clip_grad_norm_, per client
                    norms = torch.stack([torch.linalg.vector_norm(v.flatten(1), dim=1)
                                         for v in g.values()], dim=1)
                    coef = torch.clamp(clip / (torch.linalg.vector_norm(norms, dim=1) + 1e-6),
                                       max=1.0)
                    g = {n: v * _bcast(coef, v) for n, v in g.items()}
                if cfg.optimizer == "sgd":
                    sgd_step_(p, state, g, on, cfg)  # type: ignore[arg-type]
                else:
                    adam_step_(p, state, g, on, cfg)  # type: ignore[arg-type]
                loss_sum += torch.where(act, loss.double(), 0.0)

        deltas = {n: p[n] - w0[n] for n in train_names}
        losses = loss_sum.tolist()
        out = []
        for k, c in enumerate(cs):
            delta = {n: (deltas[n][k].clone() if n in deltas
                         else torch.zeros_like(global_state[n]))
                     for n in float_keys(global_state)}
            metrics = {"train_loss": losses[k] / steps[k] if steps[k] else math.nan,
                       "num_steps": float(steps[k])}
            out.append(ClientUpdate(cid=c.cid, delta=delta, num_examples=c.num_train,
                                    metrics=metrics))
        return out

    def __repr__(self) -> str:
        return "VectorizedEngine()"
