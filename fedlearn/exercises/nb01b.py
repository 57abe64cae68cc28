"""Self-check for appendix notebook 01b, *Reading an FL article critically*.

The exercise: an article "federates" by all-reducing (averaging) the hospitals' training
inputs across processes. Given the average and one's own batch, recover the other hospitals'
data. The checker makes its own random batches, numbers of processes and shapes, so only a
function that really inverts the average passes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import correct, say

__all__ = ["check_recover_from_allreduce"]

Recover = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def check_recover_from_allreduce(recover: Recover, trials: int = 6, seed: int = 0) -> None:
    """``recover(mean, own, world_size)`` -> the SUM of the other processes' inputs.

    ``mean`` is what ``all_reduce(x, op=SUM) / world_size`` leaves in every process; ``own``
    is this process's batch. With two processes the sum of the others IS the other
    hospital's batch, record for record.
    """
    g = torch.Generator().manual_seed(seed)
    for t in range(trials):
        world = 2 + t % 3
        shape = (1 + t, 13) if t % 2 else (1 + t, 1, 6, 6)
        batches = [torch.randn(*shape, generator=g, dtype=torch.float64) for _ in range(world)]
        mean = torch.stack(batches).mean(0)
        others = torch.stack(batches[1:]).sum(0)
        out = recover(mean.clone(), batches[0].clone(), world)
        got = torch.as_tensor(out, dtype=torch.float64)
        assert got.shape == others.shape, say(
            en=f"expected a tensor shaped like the batch {tuple(others.shape)}, got "
               f"{tuple(got.shape)}",
            zh=f"需要一个与该批数据形状相同的张量 {tuple(others.shape)}，收到的形状却是 "
               f"{tuple(got.shape)}")
        if torch.allclose(got, others, atol=1e-9):
            continue
        if torch.allclose(got, mean - batches[0], atol=1e-9):
            raise AssertionError(say(
                en="mean - own forgets that the mean was divided by the world size: the sum of "
                   "all batches is world_size * mean",
                zh="mean - own 忘了均值已经除以进程数（`world_size`）：所有批数据之和是 "
                   "world_size * mean"))
        if torch.allclose(got, (mean * world - batches[0]) / (world - 1), atol=1e-9):
            raise AssertionError(say(
                en="that is the MEAN of the other batches; return their sum (with two "
                   "processes, the other hospital's batch itself)",
                zh="这是其他各批数据的*均值*；请返回它们的和（只有两个进程时，"
                   "它就是另一家医院的那批数据本身）"))
        raise AssertionError(say(
            en="not the other processes' inputs: sum of all = world_size * mean, so the "
               "others' sum = world_size * mean - own",
            zh="这不是其他进程的输入：全部之和 = world_size * mean，"
               "所以其他进程之和 = world_size * mean - own"))
    correct(say(
        en=f"recovered the other hospitals' inputs exactly in {trials} all-reduces (2-4 "
           "processes): averaging training data across sites shares the data",
        zh=f"在 {trials} 次 all-reduce（2-4 个进程）中精确还原了其他医院的输入："
           "跨机构平均训练数据，就等于共享了数据"))
