"""Flower deployments that lose a hospital: a SuperNode killed mid-run (the run goes on with
the others and equals a replay with those participants) and one that never connects (a clear
error, and nothing left running). Separate from test_flower.py so that these slow, mostly
waiting processes run beside the others under pytest-xdist."""

from __future__ import annotations

from pathlib import Path

import pytest

import fedlearn as fl
from fedlearn.flower import Federation, NodesNotConnectedError, write_partitions
from fedlearn.flower.runner import max_abs_diff, run_on_federation

from .flower_helpers import CONFIG, SPEC, _assert_no_leftovers, _clients, _replay


@pytest.mark.slow
def test_node_dying_mid_run_is_survived(tmp_path: Path) -> None:
    clients = _clients()
    paths = write_partitions(clients, tmp_path / "data")
    fed = Federation(paths, tmp_path / "state", connect_timeout=240)

    def kill_after_round_one(row: dict[str, object]) -> None:
        if row["round"] == 1:
            fed.kill_node(2)  # SIGKILL: no goodbye to the SuperLink

    # The kill follows the ServerApp's round-1 log row, which we poll: on a loaded machine
    # round 2 may already be under way (and node 2's reply in) when we see it, so the run has
    # three rounds and the test asks for what must hold either way: everybody in round 1,
    # node 2 gone from some later round on (its lost message reported), and the weights of a
    # replay with exactly those participants.
    with fed:
        res = run_on_federation(fed, fl.FedAvg(CONFIG), 3, SPEC, seed=0, min_nodes=2,
                                evaluate="none", on_round=kill_after_round_one)
    _assert_no_leftovers(fed.groups())
    rounds = res.history.rounds
    who = [r["participants"] for r in rounds]
    assert who[0] == [0, 1, 2] and who[-1] == [0, 1], who
    first_without = who.index([0, 1])
    assert who[first_without:] == [[0, 1]] * (len(who) - first_without), who
    assert all(w == [0, 1, 2] for w in who[:first_without]), who
    assert rounds[first_without]["failures"]  # the dead node's message came back as an error
    expected = _replay(clients, fl.FedAvg(CONFIG), who)
    assert max_abs_diff(res.final_state, expected) == 0.0


@pytest.mark.slow
def test_node_that_never_connects_is_a_clear_error(tmp_path: Path) -> None:
    paths = write_partitions(_clients()[:1], tmp_path / "data")
    fed = Federation(paths, tmp_path / "state", connect_timeout=0.5)
    with pytest.raises(NodesNotConnectedError, match="0 of 1 SuperNodes"):
        fed.start()
    _assert_no_leftovers(fed.groups())  # start() stopped what it had started
    logs = sorted(p.name for p in (tmp_path / "state" / "logs").iterdir())
    assert logs == ["node0.log", "superlink.log"]

