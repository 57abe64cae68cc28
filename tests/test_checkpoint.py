"""Tests for fedlearn.checkpoint: round trip, model card, and every way a file can be wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fedlearn as fl
from fedlearn.checkpoint import (
    VERSION,
    CheckpointError,
    ModelCard,
    checkpoint_digest,
    digest_of,
    load_checkpoint,
    public_key_bytes,
    save_checkpoint,
    sign_checkpoint,
    state_digest,
    verify_checkpoint,
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


# ----------------------------------------------------------------------------- issue 14


def _rewrite(path: Path, edit_card=None, edit_state=None, recompute: bool = False) -> Path:
    """Edit a saved checkpoint's card (a dict) or weights; with ``recompute`` store the new
    digest as an adversary would (the file's own check then passes)."""
    payload = torch.load(path, weights_only=True)
    d = json.loads(payload["card"])
    if edit_card is not None:
        edit_card(d)
    payload["card"] = json.dumps(d)
    if edit_state is not None:
        edit_state(payload["state_dict"])
    if recompute:
        payload["sha256"] = digest_of(payload["card"], payload["state_dict"])
    out = path.with_name("edited.pt")
    torch.save(payload, out)
    return out


@pytest.mark.parametrize("edit", [
    lambda d: d.update(privacy={"epsilon": 0.1}),
    lambda d: d.update(threshold=0.01),
    lambda d: d["metrics"]["pooled"].update(auroc=0.99),
    lambda d: d.update(intended_use="diagnosis"),
], ids=["privacy", "threshold", "metric", "intended_use"])
def test_edited_card_is_detected(tmp_path: Path, trained: torch.nn.Module, edit):
    path = save_checkpoint(tmp_path / "m.pt", trained, card())
    with pytest.raises(CheckpointError, match="model card do not match the file's SHA-256"):
        load_checkpoint(_rewrite(path, edit))


def test_digest_covers_card_and_weights(trained: torch.nn.Module):
    state = trained.state_dict()
    text = card().to_json()
    d = digest_of(text, state)
    assert d == digest_of(json.dumps(json.loads(text), indent=None), state)  # canonical JSON
    assert d != digest_of(card(threshold=0.4, created=card().created).to_json(), state)
    bumped = {k: v.clone() for k, v in state.items()}
    bumped["head.3.bias"] += 1e-6
    assert d != digest_of(text, bumped)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_weights_are_refused_on_save(tmp_path: Path, trained: torch.nn.Module,
                                               bad: float):
    with torch.no_grad():
        trained.head[3].bias[0] = bad
    with pytest.raises(CheckpointError, match=r"refusing to save .*m.pt: weight 'head.3.bias' "
                                              r"has 1 NaN/inf value"):
        save_checkpoint(tmp_path / "m.pt", trained, card())
    assert not (tmp_path / "m.pt").exists()


def test_nonfinite_weights_are_refused_on_load(tmp_path: Path, trained: torch.nn.Module):
    path = save_checkpoint(tmp_path / "m.pt", trained, card())
    forged = _rewrite(path, edit_state=lambda s: s["head.3.bias"].fill_(float("nan")),
                      recompute=True)
    with pytest.raises(CheckpointError, match="edited.pt: weight 'head.3.bias' has 2 NaN"):
        load_checkpoint(forged)


@pytest.mark.parametrize("content", [b"hello world\n" * 10, b"PK\x03\x04" + b"\x00" * 60,
                                     bytes(range(256)) * 8],
                         ids=["text (was KeyError: 101)", "zip header", "bytes"])
def test_garbage_files_give_checkpoint_error(tmp_path: Path, content: bytes):
    path = tmp_path / "garbage.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"garbage.pt is not a readable checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("edit, phrase", [
    (lambda d: d.update(model="resnet"), r"model='resnet'.*does not build.*unknown model"),
    (lambda d: d["model_kwargs"].update(bogus=1),
     r"does not build.*unexpected keyword argument 'bogus'"),
    (lambda d: d.update(bogus=1), r"unknown field\(s\) \['bogus'\]"),
    (lambda d: d.pop("class_names"), r"lacks required field\(s\) \['class_names'\]"),
    (lambda d: d.update(class_names=["a", "b", "c"]),
     r"lists 3 class names \['a', 'b', 'c'\] but the model has 2 outputs"),
    (lambda d: d.update(class_names=["a", "a"]), "two distinct"),
    (lambda d: d.update(threshold="0.5"), r"threshold must be a number in \(0, 1\)"),
    (lambda d: d.update(threshold=1.0), r"threshold must be a number in \(0, 1\)"),
    (lambda d: d.update(privacy="none"), r"ModelCard.privacy must be a dict"),
    (lambda d: d.update(secure_aggregation="yes"), r"secure_aggregation must be a bool"),
], ids=["model", "model_kwarg", "card_field", "missing", "class_names", "duplicate",
        "threshold_str", "threshold_1", "privacy", "secagg"])
def test_malformed_cards_give_checkpoint_error_naming_the_file(tmp_path: Path,
                                                               trained: torch.nn.Module,
                                                               edit, phrase: str):
    path = save_checkpoint(tmp_path / "m.pt", trained, card())
    with pytest.raises(CheckpointError, match=phrase) as err:
        load_checkpoint(_rewrite(path, edit, recompute=True))  # digest valid: the card is checked
    assert "edited.pt" in str(err.value)


def test_card_that_is_not_json_or_missing(tmp_path: Path, trained: torch.nn.Module):
    path = save_checkpoint(tmp_path / "m.pt", trained, card())
    payload = torch.load(path, weights_only=True)
    for value, phrase in [("{oops", "is not valid JSON"), ("[1, 2]", "must be a JSON object"),
                          (None, "has no model card")]:
        payload["card"] = value
        torch.save(payload, path)
        with pytest.raises(CheckpointError, match=phrase):
            load_checkpoint(path)


def test_bad_cards_are_refused_at_save(tmp_path: Path, trained: torch.nn.Module):
    with pytest.raises(CheckpointError, match="refusing to save.*lists 3 class names"):
        save_checkpoint(tmp_path / "m.pt", trained, card(class_names=["a", "b", "c"]))
    with pytest.raises(CheckpointError, match="refusing to save.*unknown model 'resnet'"):
        save_checkpoint(tmp_path / "m.pt", trained, card(model="resnet"))
    with pytest.raises(CheckpointError, match="unexpected keyword argument 'bogus'"):
        save_checkpoint(tmp_path / "m.pt", trained, card(model_kwargs={**KWARGS, "bogus": 1}))
    assert not (tmp_path / "m.pt").exists()


def test_version_1_files_are_refused(tmp_path: Path, trained: torch.nn.Module):
    path = save_checkpoint(tmp_path / "m.pt", trained, card())
    payload = torch.load(path, weights_only=True)
    payload["version"] = 1
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="covers the weights but not the model card"):
        load_checkpoint(path)


def test_published_digest_catches_a_recomputed_digest(tmp_path: Path, trained: torch.nn.Module):
    path = save_checkpoint(tmp_path / "m.pt", trained, card())
    published = checkpoint_digest(path)
    assert load_checkpoint(path, expected_digest=published.upper()).digest == published
    forged = _rewrite(path, lambda d: d.update(threshold=0.01), recompute=True)
    assert load_checkpoint(forged).card.threshold == 0.01  # its own digest cannot tell
    with pytest.raises(CheckpointError, match="is not the published digest"):
        load_checkpoint(forged, expected_digest=published)


def test_signed_checkpoints_verify_and_forgeries_do_not(tmp_path: Path,
                                                        trained: torch.nn.Module):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    path = save_checkpoint(tmp_path / "m.pt", trained, card(), private_key=key)
    ck = load_checkpoint(path, public_key=key.public_key())
    assert ck.signature_verified and not load_checkpoint(path).signature_verified
    assert load_checkpoint(path, public_key=public_key_bytes(key)).signature_verified
    assert verify_checkpoint(path, public_key_bytes(key)) == ck.digest == checkpoint_digest(path)
    with pytest.raises(CheckpointError, match="signature does not verify with this public key"):
        load_checkpoint(path, public_key=other.public_key())
    forged = _rewrite(path, lambda d: d.update(threshold=0.01), recompute=True)
    with pytest.raises(CheckpointError, match="signature does not verify"):
        load_checkpoint(forged, public_key=key.public_key())
    plain = save_checkpoint(tmp_path / "plain.pt", trained, card())
    with pytest.raises(CheckpointError, match="plain.pt is not signed"):
        load_checkpoint(plain, public_key=key.public_key())
    sign_checkpoint(plain, key)  # sign an existing file in place
    assert load_checkpoint(plain, public_key=key.public_key()).signature_verified
    with pytest.raises(CheckpointError, match="32 raw Ed25519 bytes"):
        load_checkpoint(plain, public_key=b"short")
    with pytest.raises(CheckpointError, match="Ed25519PrivateKey"):
        save_checkpoint(tmp_path / "x.pt", trained, card(), private_key="secret")  # type: ignore


def test_checkpoint_module_imports_cryptography_lazily():
    code = ("import sys, fedlearn.checkpoint; "
            "assert 'cryptography' not in sys.modules, 'cryptography imported eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})


# ----------------------------------------------------------------------------- notebook 07 cells

# The code cells the lead adds to notebook 07 after its checkpoint section (issue 14), written
# out with their Markdown in build/nb07_checkpoint_cells.md; this test runs them in the
# notebook's namespace at that point, with a small model standing in for the trained one.
NB07_CELLS = [
    """\
# An adversary lowers the decision threshold and recomputes the digest: the file still loads
import fedlearn.checkpoint as ckpt

published = ckpt.checkpoint_digest(path)  # the consortium prints this beside the download link
payload = torch.load(path, weights_only=True)
edited = json.loads(payload["card"])
edited["threshold"] = 0.05
payload["card"] = json.dumps(edited)
payload["sha256"] = ckpt.digest_of(payload["card"], payload["state_dict"])  # one line
forged = outdir / "pneumonia_v1_forged.pt"
torch.save(payload, forged)
print(f"published digest {published[:16]}...; the forged file loads with threshold "
      f"{load_checkpoint(forged).card.threshold}")
try:
    load_checkpoint(forged, expected_digest=published)
except CheckpointError as err:
    print("CheckpointError:", str(err).replace(str(outdir), "<outdir>")[:150], "...")
""",
    """\
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

consortium_key = Ed25519PrivateKey.generate()  # stays with the consortium, never shared
public = ckpt.public_key_bytes(consortium_key)  # 32 bytes every hospital receives once
signed = save_checkpoint(outdir / "pneumonia_v1_signed.pt", secure.model, card,
                         private_key=consortium_key)
print("signed file verifies:", load_checkpoint(signed, public_key=public).signature_verified)
payload = torch.load(signed, weights_only=True)  # the same forgery, on the signed file
edited = json.loads(payload["card"])
edited["threshold"] = 0.05
payload["card"] = json.dumps(edited)
payload["sha256"] = ckpt.digest_of(payload["card"], payload["state_dict"])
torch.save(payload, forged)
stranger = ckpt.public_key_bytes(Ed25519PrivateKey.generate())
for name, file, key in [("forged file", forged, public), ("genuine file, another key", signed,
                                                          stranger)]:
    try:
        load_checkpoint(file, public_key=key)
    except CheckpointError as err:
        print(f"{name}: CheckpointError:", str(err).replace(str(outdir), "<outdir>")[:120], "...")
""",
]


def test_nb07_checkpoint_cells_run(tmp_path: Path, trained: torch.nn.Module,
                                   capsys: pytest.CaptureFixture[str]):
    import types

    c = card()
    ns = {"json": json, "torch": torch, "Path": Path, "outdir": tmp_path, "card": c,
          "secure": types.SimpleNamespace(model=trained), "CheckpointError": CheckpointError,
          "load_checkpoint": load_checkpoint, "save_checkpoint": save_checkpoint,
          "path": save_checkpoint(tmp_path / "pneumonia_v1.pt", trained, c)}
    for code in NB07_CELLS:
        exec(compile(code, "<nb07 cell>", "exec"), ns)  # noqa: S102 - our own cell code
    out = capsys.readouterr().out
    for phrase in ("the forged file loads with threshold 0.05",
                   "CheckpointError: <outdir>/pneumonia_v1_forged.pt: its digest",
                   "is not the published digest", "signed file verifies: True",
                   "forged file: CheckpointError: <outdir>/pneumonia_v1_forged.pt: the Ed25519 "
                   "signature does not verify",
                   "genuine file, another key: CheckpointError: <outdir>/pneumonia_v1_signed.pt"):
        assert phrase in out, out
    md = Path(__file__).parents[1] / "build" / "nb07_checkpoint_cells.md"
    if md.is_file():  # the hand-off file for the lead (build/ is not committed)
        import re

        assert re.findall(r"```python\n(.*?)```", md.read_text(), re.S) == NB07_CELLS
