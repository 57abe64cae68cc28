"""Self-checks for notebook 07, *Case study: should the hospitals federate?*

Each checker draws fresh random cases and compares the learner's function with the package's
own implementation (:func:`fedlearn.calibration.expected_calibration_error`,
:func:`fedlearn.classification_metrics`, :func:`fedlearn.privacy.calibrate_noise`,
:func:`fedlearn.privacy.threshold.roc_from_histogram`), which the
unit tests check independently, so an answer tuned to the notebook's numbers does not pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..calibration import expected_calibration_error
from ..metrics import classification_metrics
from ..privacy.accounting import calibrate_noise
from ..privacy.threshold import roc_from_histogram
from . import correct, say

__all__ = ["check_ece", "check_threshold_for_sensitivity", "check_hospitals_needed",
           "check_roc_from_noisy"]


def _two(p: np.ndarray) -> np.ndarray:
    return np.stack([1 - p, p], axis=1)


def _case(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    p = rng.beta(0.6, 0.6, size=n)
    y = (rng.uniform(size=n) < np.clip(p + rng.normal(0, 0.2, n), 0, 1)).astype(int)
    return y, p


def check_ece(ece: Callable[[np.ndarray, np.ndarray, int], float], trials: int = 8,
              seed: int = 0) -> None:
    """``ece(y_true, p_disease, n_bins)``: the positive-class ECE with equal-width bins.

    Bins are ``(edges[b], edges[b+1]]`` (the first also holds 0), as in scikit-learn's
    ``calibration_curve``; ECE is the bin-size-weighted mean of |disease rate - mean p|.
    """
    rng = np.random.default_rng(seed)
    for t in range(trials):
        n_bins = (5, 10, 15, 3)[t % 4]
        y, p = _case(rng, int(rng.integers(40, 400)))
        if t == 0:
            p[:n_bins + 1] = np.linspace(0, 1, n_bins + 1)  # values on the bin edges
        ref = expected_calibration_error(y, _two(p), n_bins)
        got = float(ece(y.copy(), p.copy(), n_bins))
        if math.isclose(got, ref, abs_tol=1e-9):
            continue
        edges = np.linspace(0, 1, n_bins + 1)
        ids = np.searchsorted(edges[1:-1], p)
        gaps = [abs(y[ids == b].mean() - p[ids == b].mean()) for b in range(n_bins)
                if (ids == b).any()]
        if math.isclose(got, float(np.mean(gaps)), abs_tol=1e-9):
            raise AssertionError(say(
                en="weight each bin's gap by its share of the predictions (n_b / n), not equally",
                zh="请按每个分箱在全部预测中所占的份额（n_b / n）给它的差距加权，而不是等权"))
        top = expected_calibration_error(y, _two(p), n_bins, kind="top-label")
        if math.isclose(got, top, abs_tol=1e-9):
            raise AssertionError(say(
                en="that is the top-label ECE (confidence of the predicted class vs accuracy); "
                   "compare P(disease) with the disease rate",
                zh="这是 top-label（最高类别）ECE（预测类别的置信度对准确率）；"
                   "请比较 P(disease)（患病概率）与实际患病比例"))
        raise AssertionError(say(
            en=f"ECE {got:.4f}, expected {ref:.4f} (n_bins = {n_bins}). Bin b holds p in "
               "(b/n_bins, (b+1)/n_bins], the first bin also p = 0; "
               "np.searchsorted(edges[1:-1], p) gives exactly these bin ids",
            zh=f"期望校准误差（ECE）为 {got:.4f}，应为 {ref:.4f}（n_bins = {n_bins}）。"
               "第 b 个分箱包含落在 (b/n_bins, (b+1)/n_bins] 内的 p，第一个分箱还包含 p = 0；"
               "np.searchsorted(edges[1:-1], p) 给出的正是这些分箱编号"))
    correct(say(
        en=f"your ECE matches fedlearn's on {trials} random cases, bin edges included",
        zh=f"在 {trials} 个随机情形上（包括落在分箱边界上的值），"
           "你的期望校准误差（ECE）与 fedlearn 的一致"))


def _sensitivity(y: np.ndarray, p: np.ndarray, t: float) -> float:
    return classification_metrics(y, _two(p), threshold=t)["sensitivity"]


def check_threshold_for_sensitivity(find: Callable[[np.ndarray, np.ndarray, float], float],
                                    trials: int = 8, seed: int = 1) -> None:
    """``find(y_true, p_disease, target)``: the HIGHEST threshold whose sensitivity >= target.

    A case is called positive when ``p_disease >= threshold``. Screening fixes sensitivity
    (few missed patients) and then takes the threshold that keeps specificity highest, i.e.
    the highest one that still reaches the target.
    """
    rng = np.random.default_rng(seed)
    for t in range(trials):
        y, p = _case(rng, int(rng.integers(50, 300)))
        target = float((0.8, 0.9, 0.95, 1.0)[t % 4])
        sick = np.sort(p[y == 1])[::-1]
        k = math.ceil(target * len(sick) - 1e-9)  # sick patients that must score >= threshold
        ref = float(sick[k - 1])  # the k-th highest sick score
        got = float(find(y.copy(), p.copy(), target))
        sens = _sensitivity(y, p, got)
        if sens < target - 1e-12:
            raise AssertionError(say(
                en=f"at your threshold {got:.4f} sensitivity is {sens:.3f} < {target}: the "
                   "threshold is too high",
                zh=f"在你的阈值 {got:.4f} 下，敏感性为 {sens:.3f} < {target}：阈值太高了"))
        if got < ref - 1e-12:
            spec_got = classification_metrics(y, _two(p), threshold=got)["specificity"]
            spec_ref = classification_metrics(y, _two(p), threshold=ref)["specificity"]
            raise AssertionError(say(
                en=f"sensitivity {sens:.3f} >= {target} is met, but threshold {ref:.4f} meets it "
                   f"too with specificity {spec_ref:.3f} instead of {spec_got:.3f}: take the "
                   "highest threshold that still reaches the target (a sick patient's score)",
                zh=f"敏感性 {sens:.3f} >= {target}，目标已经达到，但阈值 {ref:.4f} 同样能达到，"
                   f"而且特异性是 {spec_ref:.3f} 而不是 {spec_got:.3f}：请取仍能达到目标的"
                   "最高阈值（某位患病者的得分）"))
    correct(say(
        en=f"your thresholds reach the target sensitivity at the best specificity in "
           f"{trials} random cases",
        zh=f"在 {trials} 个随机情形中，你的决策阈值都以最好的特异性达到了目标敏感性"))


def check_hospitals_needed(hospitals_needed: Callable[[float, float, int, float, float], int],
                           seed: int = 2) -> None:
    """``hospitals_needed(epsilon, delta, rounds, clip, target_std)``: fewest hospitals K.

    Client-level DP-FedAvg with every hospital in every round (q = 1) adds noise of std
    ``z * clip / K`` to each coordinate of the averaged update, where ``z`` spends
    ``(epsilon, delta)`` in ``rounds`` rounds (``fedlearn.privacy.calibrate_noise``). Return
    the smallest K with ``z * clip / K <= target_std``.
    """
    rng = np.random.default_rng(seed)
    cases = [(8.0, 1e-5, 20, 1.0, 0.01)] + [
        (float(rng.choice([1.0, 4.0, 8.0])), 1e-5, int(rng.choice([10, 20, 40])),
         float(rng.choice([0.5, 1.0])), float(rng.choice([0.05, 0.01, 0.002])))
        for _ in range(3)]
    for eps, delta, rounds, clip, target in cases:
        z = calibrate_noise(eps, delta, 1.0, rounds)
        ref = math.ceil(z * clip / target)
        got = int(hospitals_needed(eps, delta, rounds, clip, target))
        if got == ref:
            continue
        if got == math.ceil(z * clip / target ** 2) or got == math.ceil((z * clip / target) ** 2):
            raise AssertionError(say(
                en="the noise std on the mean falls like 1/K, not 1/sqrt(K): the server divides "
                   "the noisy SUM by K",
                zh="均值上的噪声标准差按 1/K 下降，而不是 1/sqrt(K)：服务器是把加了噪声的*总和*"
                   "除以 K"))
        if z * clip / got <= target:
            raise AssertionError(say(
                en=f"K = {got} works but {ref} hospitals already suffice: return the smallest K",
                zh=f"K = {got} 可行，但 {ref} 家医院就已足够：请返回最小的 K"))
        raise AssertionError(say(
            en=f"with K = {got} the noise std is {z * clip / got:.4g} > {target} "
               f"(z = {z:.3f} for epsilon {eps}, {rounds} rounds, q = 1)",
            zh=f"K = {got} 时噪声标准差为 {z * clip / got:.4g} > {target}"
               f"（epsilon 为 {eps}、{rounds} 轮、q = 1 时 z = {z:.3f}）"))
    correct(say(
        en=f"e.g. {cases[0][2]} rounds at epsilon = {cases[0][0]:g} need "
           f"{math.ceil(calibrate_noise(8.0, 1e-5, 1.0, 20) / 0.01)} hospitals for noise "
           "std 0.01 on the mean update; our consortium has six",
        zh=f"例如在 epsilon = {cases[0][0]:g} 下运行 {cases[0][2]} 轮，要让平均更新上的噪声"
           f"标准差降到 0.01，需要 {math.ceil(calibrate_noise(8.0, 1e-5, 1.0, 20) / 0.01)} "
           "家医院；而我们的联盟只有六家"))


def check_roc_from_noisy(roc: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                         trials: int = 8, seed: int = 3) -> None:
    """``roc(hist)``: sensitivity and specificity at every bin edge of a noisy histogram.

    ``hist`` has shape ``(2, bins)``: row 0 counts healthy, row 1 sick patients per score bin,
    with Laplace noise (so some counts are negative). The threshold at edge ``b`` calls bins
    ``b, b+1, ...`` positive, for ``b = 0 .. bins`` (``bins + 1`` values; at ``b = bins``
    nobody is positive). Negative counts are set to zero first.
    """
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        bins = int(rng.integers(3, 30))
        hist = rng.poisson(rng.uniform(0.5, 20), size=(2, bins)) + rng.laplace(0, 2, (2, bins))
        hist[:, 0] = np.abs(hist[:, 0]) + 1.0  # every class keeps some patients
        ref_sens, ref_spec = roc_from_histogram(hist)
        got = roc(hist.copy())
        if not isinstance(got, tuple) or len(got) != 2:
            raise AssertionError(say(
                en="return a pair (sensitivity, specificity) of arrays",
                zh="请返回一对数组：（敏感性，特异性）"))
        sens, spec = (np.asarray(a, dtype=float) for a in got)
        if sens.shape != ref_sens.shape or spec.shape != ref_spec.shape:
            raise AssertionError(say(
                en=f"with {bins} bins there are {bins + 1} thresholds (edges 0 to {bins}, the "
                   f"last one calling nobody positive); got {sens.shape[0]} sensitivities and "
                   f"{spec.shape[0]} specificities",
                zh=f"{bins} 个分箱对应 {bins + 1} 个阈值（边界 0 到 {bins}，最后一个阈值"
                   f"不判任何人为阳性）；收到的却是 {sens.shape[0]} 个敏感性和 "
                   f"{spec.shape[0]} 个特异性"))
        if np.allclose(sens, ref_sens, atol=1e-9) and np.allclose(spec, ref_spec, atol=1e-9):
            continue
        if np.allclose(sens[::-1], ref_sens, atol=1e-9) or np.isclose(sens[0], 0.0):
            raise AssertionError(say(
                en="at edge 0 everyone is called sick (sensitivity 1): count the patients in bin "
                   "b AND ABOVE, i.e. a cumulative sum from the top",
                zh="在边界 0 处所有人都被判为患病（敏感性为 1）：请统计第 b 个分箱*及以上*的"
                   "患者，即从顶端开始的累积和"))
        if (hist < 0).any() and ((sens > 1 + 1e-9).any() or (spec < -1e-9).any()
                                 or (np.diff(sens) > 1e-9).any()
                                 or (np.diff(spec) < -1e-9).any()):
            raise AssertionError(say(
                en="negative noisy counts make the curve leave [0, 1] or turn back: set them to "
                   "0 first (post-processing costs no privacy)",
                zh="加噪后出现的负计数会让曲线跑出 [0, 1] 或者折返：请先把它们设为 0"
                   "（后处理不消耗隐私预算）"))
        raise AssertionError(say(
            en=f"at {bins} bins your curve differs from the reference, e.g. sensitivity "
               f"{sens[:3].round(3)} vs {ref_sens[:3].round(3)}, specificity "
               f"{spec[:3].round(3)} vs {ref_spec[:3].round(3)}",
            zh=f"在 {bins} 个分箱时，你的曲线与参考结果不同，例如敏感性 "
               f"{sens[:3].round(3)} 对 {ref_sens[:3].round(3)}，特异性 "
               f"{spec[:3].round(3)} 对 {ref_spec[:3].round(3)}"))
    correct(say(
        en=f"your ROC matches fedlearn.privacy.threshold on {trials} noisy histograms",
        zh=f"在 {trials} 个加噪直方图上，你的 ROC 曲线与 fedlearn.privacy.threshold 的一致"))
