"""Tests for fedlearn.checkpoint: round trip, model card, and every way a file can be wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import fedlearn as fl
from fedlearn.checkpoint import (
    VERSION,
    CheckpointError,
    ModelCard,
    load_checkpoint,
    save_checkpoint,
    state_digest,
)

KWARGS = {"norm": "batch", "width": 4, "hidden": 8}


def card(**over: object) -> ModelCard:
    base = dict(model="cnn", model_kwargs=dict(KWARGS), task="pneumonia vs normal",
                class_names=["normal", "pneumonia"],
                data={"dataset": "pneumoniamnist", "test split": "official (624 images)"},
                hospitals=[{"name": "University hospital", "n_train": 1462},
                           {"name": "Rural clinic", "n_train": 163}],
                training={"strategy": "FedAvg", "rounds": 20, "seed": 0},
                metrics={"pooled": {"auroc": 0.956, "accuracy": 0.899}},
                privacy={"mechanism": "DP-FedAvg", "epsilon": 8.0, "delta": 1e-5},
                secure_aggregation=True, threshold=0.5, intended_use="teaching only")
    base.update(over)
    return ModelCard(**base)  # type: ignore[arg-type]


@pytest.fixture
def trained() -> torch.nn.Module:
    model = fl.make_model("cnn", seed=3, **KWARGS)
    with torch.no_grad():  # non-default BN statistics, so buffers must round-trip too
        model.train()
        model(torch.rand(16, 1, 28, 28))
    return model.eval()


def test_round_trip_predicts_identically(tmp_path: Path, trained: torch.nn.Module):
    path = save_checkpoint(tmp_path / "model.pt", trained, card())
    ck = load_checkpoint(path)
    x = torch.rand(10, 1, 28, 28)
    assert torch.equal(fl.predict_proba(ck.model, x), fl.predict_proba(trained, x))
    assert not ck.model.training
    out = ck.predict(x)
    assert out["P(pneumonia)"].to_numpy() == pytest.approx(
        fl.predict_proba(trained, x)[:, 1].numpy())
    assert ck.card == card(created=ck.card.created, versions=ck.card.versions)
    assert ck.card.privacy["epsilon"] == 8.0
    assert ck.card.versions["torch"] == torch.__version__


def test_predict_returns_probabilities_and_decisions(tmp_path: Path, trained: torch.nn.Module):
    save_checkpoint(tmp_path / "m.pt", trained, card(threshold=0.3))
    ck = load_checkpoint(tmp_path / "m.pt")
    x = torch.rand(7, 1, 28, 28)
    out = ck.predict(x)
    assert list(out.columns) == ["P(normal)", "P(pneumonia)", "prediction"]
    assert out[["P(normal)", "P(pneumonia)"]].sum(axis=1).to_numpy() == pytest.approx(1.0,
                                                                                     abs=1e-5)
    expected = ["pneumonia" if p >= 0.3 else "normal" for p in out["P(pneumonia)"]]
    assert out["prediction"].tolist() == expected
    with pytest.raises(ValueError, match="expects"):
        ck.predict(torch.rand(2, 3, 28, 28))


def test_markdown_card_is_written(tmp_path: Path, trained: torch.nn.Module):
    save_checkpoint(tmp_path / "m.pt", trained, card())
    text = (tmp_path / "m.md").read_text()
    for needle in ("# Model card", "Rural clinic", "epsilon = 8.0", "secure aggregation: yes",
                   "| pooled |", "0.956", "teaching only"):
        assert needle in text


def test_missing_file(tmp_path: Path):
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        load_checkpoint(tmp_path / "nothing.pt")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_file_gives_a_clear_error(tmp_path: Path, trained: torch.nn.Module, damage: str):
    path = save_checkpoint(tmp_path / "m.pt", trained, card())
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2] if damage == "truncate" else b"\x00not a model" * 50)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_bare_state_dict_is_refused(tmp_path: Path, trained: torch.nn.Module):
    torch.save(trained.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="not a fedlearn checkpoint"):
        load_checkpoint(tmp_path / "bare.pt")


def test_modified_weights_are_detected(tmp_path: Path, trained: torch.nn.Module):
    path = save_checkpoint(tmp_path / "m.pt", trained, card())
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["head.3.bias"] += 0.01
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(path)


def test_newer_format_is_refused(tmp_path: Path, trained: torch.nn.Module):
    path = save_checkpoint(tmp_path / "m.pt", trained, card())
    payload = torch.load(path, weights_only=True)
    payload["version"] = VERSION + 1
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="upgrade fedlearn"):
        load_checkpoint(path)


def test_mismatched_model_names_the_difference(tmp_path: Path, trained: torch.nn.Module):
    save_checkpoint(tmp_path / "m.pt", trained, card())
    wider = fl.make_model("cnn", norm="batch", width=8, hidden=8)
    with pytest.raises(CheckpointError, match="shape mismatch.*features.0.weight"):
        load_checkpoint(tmp_path / "m.pt", model=wider)
    no_bn = fl.make_model("cnn", norm="none", width=4, hidden=8)
    with pytest.raises(CheckpointError, match="unexpected.*running_mean"):
        load_checkpoint(tmp_path / "m.pt", model=no_bn)


def test_card_that_does_not_describe_the_model_is_refused_at_save(tmp_path: Path,
                                                                   trained: torch.nn.Module):
    with pytest.raises(CheckpointError, match="do not fit"):
        save_checkpoint(tmp_path / "m.pt", trained, card(model_kwargs={**KWARGS, "width": 8}))
    assert not (tmp_path / "m.pt").exists()


def test_card_validation():
    with pytest.raises(ValueError, match="threshold"):
        card(threshold=1.5)
    with pytest.raises(CheckpointError, match="required"):
        ModelCard.from_json(json.dumps({"model": "cnn"}))
    with pytest.raises(CheckpointError, match="JSON"):
        ModelCard.from_json("{not json")
    c = card()
    assert ModelCard.from_json(c.to_json()) == c


def test_state_digest_sees_every_change(trained: torch.nn.Module):
    state = {k: v.clone() for k, v in trained.state_dict().items()}
    d = state_digest(state)
    assert d == state_digest({k: state[k] for k in reversed(list(state))})
    bumped = dict(state)
    bumped["features.1.running_var"] = state["features.1.running_var"] * (1 + 1e-7)
    assert state_digest(bumped) != d
    renamed = {("x" + k if i == 0 else k): v for i, (k, v) in enumerate(state.items())}
    assert state_digest(renamed) != d
