"""fedlearn on a real Flower federation (flwr 1.42): same weights as the simulation.

The fast tests check the pieces in process (what travels, how replies are aggregated,
what is refused). The slow ones start real SuperLink/SuperNode processes on loopback:
a 3-node, 2-round run must reproduce :func:`fedlearn.run` bit for bit, SecAgg+ with DP
must match a hand replay up to its noise, a node killed mid-run must be survived, and no
test may leave a process behind. Each federation run takes one to three minutes here
(a fresh ClientApp process per message, 3 s polling), so the slow runs share one
federation and use a 5-feature logistic regression on three small synthetic hospitals.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import fedlearn as fl
from fedlearn.algorithms.fedprox import FedProx, ProximalHook
from fedlearn.flower import (
    DPOptions,
    Federation,
    ModelSpec,
    PortInUseError,
    RemoteClient,
    RunFailedError,
    SecAggOptions,
    free_ports,
    load_partition,
    max_abs_diff,
    run_on_federation,
    save_partition,
    write_partitions,
)
from fedlearn.flower.config import (
    dumps_hooks,
    loads_hooks,
    train_config_from_json,
    train_config_to_json,
)
from fedlearn.utils import derive_seed

from .flower_helpers import CONFIG, SPEC, _assert_no_leftovers, _clients

# ------------------------------------------------------------------------------ in process


def test_what_travels_round_trips(tmp_path: Path) -> None:
    assert ModelSpec.from_json(SPEC.to_json()) == SPEC
    torch.testing.assert_close(ModelSpec.from_json(SPEC.to_json()).build().state_dict(),
                               fl.make_model("logreg", in_features=5, seed=0).state_dict())
    cfg = fl.TrainConfig(epochs=2, steps=None, batch_size=None, class_weights=(1.0, 3.0))
    assert train_config_from_json(train_config_to_json(cfg)) == cfg
    client = _clients()[2]
    back = load_partition(save_partition(client, tmp_path / "p.pt"))
    assert (back.cid, back.name) == (client.cid, client.name)
    for a, b in zip(back.train.tensors + back.test.tensors,
                    client.train.tensors + client.test.tensors, strict=True):
        assert torch.equal(a, b)


def test_clients_only_unpickle_fedlearn_hooks() -> None:
    (hook,) = loads_hooks(dumps_hooks([ProximalHook(0.1)]))
    assert isinstance(hook, ProximalHook) and hook.mu == 0.1
    assert loads_hooks(b"") == ()

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system"):
        loads_hooks(pickle.dumps((Evil(),)))
    with pytest.raises(pickle.UnpicklingError, match="LocalHook"):
        loads_hooks(pickle.dumps((1, 2)))


def test_partitions_need_ordered_ids(tmp_path: Path) -> None:
    clients = _clients()
    paths = write_partitions(clients, tmp_path)
    assert [load_partition(p).cid for p in paths] == [0, 1, 2]
    with pytest.raises(ValueError, match="0..2 in order"):
        write_partitions(clients[::-1], tmp_path)


def test_round_instruction_carries_config_and_hooks() -> None:
    from fedlearn.flower.client_app import KEY_HOOKS, KEY_TRAIN_CONFIG
    from fedlearn.flower.server_app import round_instruction

    remote = [RemoteClient(k, f"h{k}") for k in range(3)]
    entry = round_instruction(fl.FedAvg(CONFIG), 1, remote)
    assert train_config_from_json(entry[KEY_TRAIN_CONFIG]) == CONFIG and KEY_HOOKS not in entry
    entry = round_instruction(FedProx(CONFIG, mu=0.5), 1, remote)
    assert loads_hooks(entry[KEY_HOOKS])[0].mu == 0.5

    class PerHospital(fl.FedAvg):
        def configure_round(self, rnd, clients):  # type: ignore[no-untyped-def]
            return {c.cid: fl.ClientInstruction(fl.TrainConfig(steps=c.cid + 1))
                    for c in clients}

    with pytest.raises(NotImplementedError, match="different instructions"):
        round_instruction(PerHospital(), 1, remote)


def test_strategies_that_need_more_than_weights_are_refused(tmp_path: Path) -> None:
    from fedlearn.flower.secure import check_secure_strategy
    from fedlearn.flower.server_app import FedlearnFlowerStrategy, RunRecorder

    class WithState(fl.FedAvg):
        def process_update(self, rnd, client, update):  # type: ignore[no-untyped-def]
            return update

    rec = RunRecorder(tmp_path, ["a"])
    with pytest.raises(NotImplementedError, match="process_update"):
        FedlearnFlowerStrategy(WithState(), [], 1, rec)
    check_secure_strategy(fl.FedAvg(CONFIG))
    check_secure_strategy(FedProx(CONFIG, mu=0.1))
    with pytest.raises(NotImplementedError, match="plain FedAvg"):
        check_secure_strategy(fl.FedAvg(CONFIG, server_lr=0.5))


@pytest.fixture
def task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower stamps messages with the running task's ids; give this process some."""
    from flwr.supercore.task_identity import TaskIdentity

    for attr in ("_run_id", "_task_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, attr, 1)


def test_aggregation_ignores_arrival_order(task_identity: None, tmp_path: Path) -> None:
    """Replies arriving in any order give fedlearn's weights bit for bit; Flower's own
    float32 sum in arrival order only approximately."""
    from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
    from flwr.serverapp.strategy import FedAvg as FlowerFedAvg

    from fedlearn.flower.server_app import FedlearnFlowerStrategy, RunRecorder

    clients = _clients()
    strategy = fl.FedAvg(CONFIG)
    model = SPEC.build()
    glob = {k: v.clone() for k, v in model.state_dict().items()}
    ref = strategy.aggregate(1, glob, [c.fit(model, glob, CONFIG, seed=c.cid) for c in clients])
    request = Message(content=RecordDict({"arrays": ArrayRecord(glob),
                                          "config": ConfigRecord()}),
                      dst_node_id=7, message_type="train")
    replies = []
    for c in clients:
        c.fit(model, glob, CONFIG, seed=c.cid)
        metrics = MetricRecord({"num-examples": c.num_train, "partition-id": c.cid})
        replies.append(Message(RecordDict({"arrays": ArrayRecord(model.state_dict()),
                                           "metrics": metrics}), reply_to=request))
    ours = FedlearnFlowerStrategy(strategy, [], 3, RunRecorder(tmp_path, ["a", "b", "c"]))
    ours._global = glob
    rng = random.Random(0)
    for _ in range(4):
        rng.shuffle(replies)
        arrays, _ = ours.aggregate_train(1, replies)
        assert arrays is not None
        assert max_abs_diff(arrays.to_torch_state_dict(), ref) == 0.0
        theirs, _ = FlowerFedAvg().aggregate_train(1, replies)
        assert theirs is not None
        assert max_abs_diff(theirs.to_torch_state_dict(), ref) < 1e-6


def test_rounds_without_updates(task_identity: None, tmp_path: Path) -> None:
    """Only errors back: the run fails (as fl.run would); a strategy that asks to stop
    (e.g. a spent privacy budget) ends training quietly instead."""
    from flwr.app import ArrayRecord, ConfigRecord, Error, Message, RecordDict

    from fedlearn.flower.server_app import FedlearnFlowerStrategy, RunRecorder

    glob = SPEC.build().state_dict()
    request = Message(content=RecordDict({"arrays": ArrayRecord(glob),
                                          "config": ConfigRecord()}),
                      dst_node_id=7, message_type="train")
    ours = FedlearnFlowerStrategy(fl.FedAvg(CONFIG), [], 3, RunRecorder(tmp_path, ["a"]))
    ours._global = glob
    with pytest.raises(RuntimeError, match="no hospital replied.*disk full"):
        ours.aggregate_train(1, [Message(Error(0, "disk full"), reply_to=request)])

    class Budget(fl.FedAvg):
        def stop_reason(self, rnd: int) -> str | None:
            return "budget spent" if rnd >= 2 else None

    rec = RunRecorder(tmp_path, ["a"])
    stopping = FedlearnFlowerStrategy(Budget(CONFIG), [], 3, rec)
    assert list(stopping.configure_train(2, ArrayRecord(glob), ConfigRecord(), None)) == []
    assert stopping.aggregate_train(2, []) == (None, None)
    assert "budget spent" in json.loads((tmp_path / "result.json").read_text())["stopped"]


def test_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    a, b = free_ports(2)
    assert a != b
    with socket.socket() as s:
        s.bind(("127.0.0.1", a))
        s.listen()
        fed = Federation([tmp_path / "p.pt"], tmp_path / "state", port=a, node_ports=[b])
        with pytest.raises(PortInUseError, match=str(a)):
            fed.start()
        assert fed.groups() == []  # refused before starting anything


def test_bad_runs_are_refused_before_submission(tmp_path: Path) -> None:
    fed = Federation([tmp_path / f"p{k}.pt" for k in range(3)], tmp_path / "state")

    class WithState(fl.FedAvg):
        def process_update(self, rnd, client, update):  # type: ignore[no-untyped-def]
            return update

    with pytest.raises(NotImplementedError, match="process_update"):
        run_on_federation(fed, WithState(CONFIG), 1, SPEC)
    with pytest.raises(NotImplementedError, match="plain FedAvg"):
        run_on_federation(fed, fl.FedAvg(CONFIG, server_lr=2.0), 1, SPEC,
                          secagg=SecAggOptions())
    with pytest.raises(ValueError, match="SecAgg"):
        run_on_federation(fed, fl.FedAvg(CONFIG), 1, SPEC, dp=DPOptions(1.0, 1.0))
    with pytest.raises(ValueError, match="min_nodes"):
        run_on_federation(fed, fl.FedAvg(CONFIG), 1, SPEC, min_nodes=4)
    assert fed.groups() == []  # nothing was started


# ---------------------------------------------------------------------- real processes


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """One SuperLink and three SuperNodes, shared by the runs that do not break it."""
    root = tmp_path_factory.mktemp("flower")
    paths = write_partitions(_clients(), root / "data")
    fed = Federation(paths, root / "state", connect_timeout=240)
    with fed:
        yield fed
    _assert_no_leftovers(fed.groups())


@pytest.mark.slow
def test_flower_run_equals_simulation(federation: Federation) -> None:
    torch.set_num_threads(1)
    clients = _clients()
    res = run_on_federation(federation, fl.FedAvg(CONFIG), 2, SPEC, seed=0,
                            names=[c.name for c in clients], evaluate="final")
    sim = fl.run(SPEC.build(), clients, fl.FedAvg(CONFIG), rounds=2, seed=0, progress=False,
                 eval_every=2)
    assert sim.final_state is not None
    # same data, seeds, steps and summation order: identical float32 weights
    assert max_abs_diff(res.final_state, sim.final_state) == 0.0
    rounds = res.history.rounds_frame()
    assert rounds["participants"].tolist() == [[0, 1, 2], [0, 1, 2]]
    assert rounds["num_examples"].tolist() == [120, 120]
    # every hospital scored the final model on its own test set, as the simulation does
    flower_acc = res.history.per_client("accuracy")
    for name, acc in sim.per_client("accuracy").items():
        assert flower_acc[name] == pytest.approx(acc, abs=1e-12)
    assert res.network_bytes > 0


@pytest.mark.slow
def test_secagg_with_dp_matches_clipped_replay(federation: Federation) -> None:
    """One round of SecAgg+ with client clipping and central noise, checked by hand:
    final = sum_k n_k (w + clip(delta_k)) / n + N(0, sigma^2), sigma = z C / m."""
    clients = _clients()
    dp = DPOptions(noise_multiplier=0.05, clipping_norm=0.2)
    res = run_on_federation(federation, fl.FedAvg(CONFIG), 1, SPEC, seed=0,
                            evaluate="none", secagg=SecAggOptions(), dp=dp)
    model = SPEC.build()
    glob = {k: v.clone() for k, v in model.state_dict().items()}
    ups = [c.fit(model, glob, CONFIG, seed=derive_seed(0, 1, c.cid)) for c in clients]
    assert min(u.norm for u in ups) > dp.clipping_norm  # clipping is active for everyone
    n = sum(u.num_examples for u in ups)
    keys = list(glob)

    def flat(state: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([state[k].double().flatten() for k in keys])

    deltas = [flat(u.delta) for u in ups]
    clipped = flat(glob) + sum(u.num_examples / n * d * min(1.0, dp.clipping_norm / d.norm())
                               for u, d in zip(ups, deltas, strict=True))
    unclipped = flat(glob) + sum(u.num_examples / n * d for u, d in zip(ups, deltas,
                                                                       strict=True))
    sigma = dp.noise_std(len(clients))
    resid = flat(res.final_state) - clipped
    assert 0.5 * sigma < float(resid.std()) < 1.5 * sigma
    assert float((unclipped - clipped).abs().max()) > 5 * sigma  # so clipping was needed
    assert res.history.rounds[0]["num_participants"] == 3


@pytest.mark.slow
def test_a_round_without_updates_fails_the_run(federation: Federation) -> None:
    """Every hospital raises (the initial model has the wrong shape): the run must end as
    finished:failed with the hospitals' errors, not carry on with unchanged weights."""
    wrong = {"linear.weight": torch.zeros(2, 4), "linear.bias": torch.zeros(2)}
    with pytest.raises(RunFailedError, match="finished:failed"):
        run_on_federation(federation, fl.FedAvg(CONFIG), 1, SPEC, evaluate="none",
                          initial_state=wrong, out_dir=federation.state_dir / "bad-run")
    result = json.loads((federation.state_dir / "bad-run" / "result.json").read_text())
    assert result["status"] == "failed"
    assert "no hospital replied" in result["error"]
    assert "size mismatch" in result["error"]  # the hospitals' own exception, forwarded
