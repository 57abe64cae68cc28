"""Flower deployments that lose a hospital: a SuperNode killed without a goodbye once the
federation is up (the run goes on with
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

    # SIGKILL once the federation is up, before the run is submitted: the SuperLink still lists
    # the node (no goodbye) until it misses its heartbeats, so the first round sends it work and
    # must survive its silence. (Killing it from the polled round log raced the rounds on a
    # loaded machine: all three rounds could finish before the kill.)
    with fed:
        fed.kill_node(2)
        res = run_on_federation(fed, fl.FedAvg(CONFIG), 2, SPEC, seed=0, min_nodes=2,
                                evaluate="none")
    _assert_no_leftovers(fed.groups())
    rounds = res.history.rounds
    who = [r["participants"] for r in rounds]
    assert who == [[0, 1], [0, 1]], who
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

