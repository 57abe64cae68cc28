"""The self-checks of notebook 08 accept the reference answers and reject likely mistakes."""

from __future__ import annotations

import math

import pytest
import torch

import fedlearn as fl
from fedlearn.exercises import nb08
from fedlearn.utils import state_sub

from .exercise_language import assert_correct, exercise_language, only_in, rejects  # noqa: F401

pytestmark = pytest.mark.usefixtures("exercise_language")


def _good_aggregate(glob, replies):  # the notebook's solution
    replies = sorted(replies, key=lambda r: r["partition_id"])
    ups = [fl.ClientUpdate(cid=r["partition_id"], delta=state_sub(r["weights"], glob),
                           num_examples=r["num_examples"]) for r in replies]
    return fl.FedAvg().aggregate(1, glob, ups)


def _arrival_order_float32(glob, replies):  # Flower's FedAvg: float32, in arrival order
    n = sum(r["num_examples"] for r in replies)
    out = {k: torch.zeros_like(v) for k, v in glob.items()}
    for r in replies:
        for k in out:
            out[k] += r["weights"][k] * (r["num_examples"] / n)
    return out


def _sorted_float32(glob, replies):
    return _arrival_order_float32(glob, sorted(replies, key=lambda r: r["partition_id"]))


def _unweighted(glob, replies):
    replies = sorted(replies, key=lambda r: r["partition_id"])
    return {k: sum(r["weights"][k].double() for r in replies).div(len(replies)).float()
            for k in glob}


def test_order_free_aggregate(capsys: pytest.CaptureFixture[str]) -> None:
    nb08.check_order_free_aggregate(_good_aggregate)
    assert_correct(capsys.readouterr().out)
    with rejects("order the replies arrive"):
        nb08.check_order_free_aggregate(_arrival_order_float32)
    with rejects("not bit for bit"):
        nb08.check_order_free_aggregate(_sorted_float32)
    with rejects("1/K"):
        nb08.check_order_free_aggregate(_unweighted)


def _good_round(times, timeout, heartbeat=60.0):  # the notebook's solution
    ends = [t if math.isfinite(t) else heartbeat for t in times.values()]
    return min(max(ends), timeout), sorted(k for k, t in times.items() if t <= timeout)


def test_round_outcome(capsys: pytest.CaptureFixture[str]) -> None:
    nb08.check_round_outcome(_good_round)
    assert_correct(capsys.readouterr().out)
    assert nb08.reference_round_outcome({0: 20.0, 1: math.inf}, 600.0) == (60.0, [0])

    def waits_for_the_dead(times, timeout, heartbeat=60.0):
        return min(max(times.values()), timeout), sorted(
            k for k, t in times.items() if t <= timeout)

    def keeps_stragglers(times, timeout, heartbeat=60.0):
        return _good_round(times, timeout, heartbeat)[0], sorted(
            k for k, t in times.items() if math.isfinite(t))

    with rejects("reported unavailable"):
        nb08.check_round_outcome(waits_for_the_dead)
    with rejects("arrives by the timeout"):
        nb08.check_round_outcome(keeps_stragglers)


def test_site_roles(capsys: pytest.CaptureFixture[str]) -> None:
    good = {"patient data": "hospital only", "node private key": "hospital only",
            "node config with the data path": "hospital only",
            "SuperLink TLS private key": "coordinator only", "node public key": "both",
            "CA certificate": "both", "Flower App (FAB)": "both",
            "global model weights": "both"}
    nb08.check_site_roles(good)
    assert_correct(capsys.readouterr().out)
    with rejects("CA certificate"):
        nb08.check_site_roles({**good, "CA certificate": "coordinator only"})
    with rejects("also place"):
        nb08.check_site_roles({k: v for k, v in good.items() if k != "patient data"})
    with rejects("locations must be"):
        nb08.check_site_roles({**good, "patient data": "cloud"})
