import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fedlearn as fl
from fedlearn.algorithms import Scaffold
from fedlearn.compression import (
    Compressed,
    ErrorFeedback,
    Quantize8bit,
    TopK,
    compression_ratio,
    dequantize_8bit,
    quantize_8bit,
)

from .helpers import blobs


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e4, 1e4, allow_nan=False, width=32), min_size=1, max_size=200))
def test_quantise_dequantise_error_is_at_most_half_a_step(values):
    x = torch.tensor(values, dtype=torch.float32)
    codes, lo, scale = quantize_8bit(x)
    assert codes.dtype == torch.uint8
    err = (dequantize_8bit(codes, lo, scale, torch.float64) - x.double()).abs()
    # half a quantisation step, plus float32 rounding of the inputs themselves
    assert float(err.max()) <= scale / 2 + 1e-6 * max(1.0, float(x.abs().max()))


def test_quantisation_hits_the_endpoints_and_constant_tensors_are_exact():
    x = torch.tensor([-2.0, 0.1, 3.0])
    codes, lo, scale = quantize_8bit(x)
    assert codes[0] == 0 and codes[2] == 255 and lo == -2.0 and scale == pytest.approx(5 / 255)
    c = torch.full((4,), 1.5)
    codes, lo, scale = quantize_8bit(c)
    assert torch.equal(dequantize_8bit(codes, lo, scale), c)


def test_stochastic_rounding_is_unbiased():
    x = torch.linspace(-1.0, 1.0, 50) ** 3
    g = torch.Generator().manual_seed(0)
    draws = []
    for _ in range(2000):
        codes, lo, scale = quantize_8bit(x, generator=g)
        draws.append(dequantize_8bit(codes, lo, scale, torch.float64))
    mean = torch.stack(draws).mean(0)
    assert float((mean - x.double()).abs().max()) < 0.1 * scale  # a tenth of a step
    assert float((draws[0] - x.double()).abs().max()) <= scale + 1e-7


def test_bytes_on_the_wire():
    delta = {"a": torch.randn(10, 5), "b": torch.randn(7)}
    _, nb = Quantize8bit().compress(delta)
    assert nb == 50 + 8 + 7 + 8
    _, nb = TopK(k=6).compress(delta)
    assert nb == 6 * 8
    assert compression_ratio(TopK(fraction=0.1), delta) == pytest.approx(57 * 4 / (6 * 8))


def test_topk_keeps_exactly_the_k_largest_entries():
    g = torch.Generator().manual_seed(1)
    delta = {"a": torch.randn(6, 4, generator=g), "b": torch.randn(9, generator=g)}
    sent, _ = TopK(fraction=0.2).compress(delta)  # ceil(0.2 * 33) = 7
    flat = fl.utils.flatten_state(delta)
    flat_sent = fl.utils.flatten_state(sent)
    kept = flat_sent != 0
    assert int(kept.sum()) == 7
    assert torch.equal(flat_sent[kept], flat[kept])  # kept values are exact
    assert float(flat[~kept].abs().max()) <= float(flat[kept].abs().min())


@pytest.mark.parametrize("compressor", [TopK(fraction=0.1), Quantize8bit()])
def test_error_feedback_loses_nothing_only_delays(compressor):
    ef = ErrorFeedback(compressor)
    g = torch.Generator().manual_seed(2)
    total_true = {"w": torch.zeros(40)}
    total_sent = {"w": torch.zeros(40)}
    for _ in range(12):
        d = {"w": torch.randn(40, generator=g)}
        sent, _ = ef(7, d)
        total_true["w"] += d["w"]
        total_sent["w"] += sent["w"]
        residual = ef.residuals[7]["w"]
        assert torch.allclose(total_sent["w"] + residual, total_true["w"], atol=1e-5)
    assert float(ef.residuals[7]["w"].abs().sum()) > 0  # top-k / rounding left something over


def _clients():
    return [fl.Client(i, blobs(40, seed=i, shift=0.5 * i), blobs(30, seed=20 + i))
            for i in range(3)]


def test_keeping_everything_is_the_uncompressed_run():
    cfg = fl.TrainConfig(epochs=1, batch_size=8, lr=0.2)
    m = fl.make_model("logreg", in_features=5, seed=0)
    a, b = copy.deepcopy(m), copy.deepcopy(m)
    ha = fl.run(a, _clients(), fl.FedAvg(cfg), rounds=3, eval_every=0, progress=False)
    hb = fl.run(b, _clients(), Compressed(fl.FedAvg(cfg), TopK(fraction=1.0)), rounds=3,
                eval_every=0, progress=False)
    for k in a.state_dict():
        assert torch.equal(a.state_dict()[k], b.state_dict()[k])
    assert (hb.rounds_frame()["bytes_up"] == 2 * ha.rounds_frame()["bytes_up"]).all()
    assert hb.strategy == "FedAvg + top-k + EF"


def test_compressed_run_counts_encoded_bytes_and_still_learns():
    cfg = fl.TrainConfig(epochs=2, batch_size=8, lr=0.2)
    n_params = fl.num_parameters(fl.make_model("logreg", in_features=5))
    res = {}
    for name, strat in [("raw", fl.FedAvg(cfg)),
                        ("q8", Compressed(fl.FedAvg(cfg), Quantize8bit(stochastic=True))),
                        ("top", Compressed(fl.FedAvg(cfg), TopK(k=3)))]:
        h = fl.run(fl.make_model("logreg", in_features=5, seed=0), _clients(), strat,
                   rounds=8, progress=False)
        res[name] = h
    assert (res["q8"].rounds_frame()["bytes_up"] == 3 * (n_params + 2 * 8)).all()  # 2 tensors
    assert (res["top"].rounds_frame()["bytes_up"] == 3 * 3 * 8).all()
    raw_acc = res["raw"].final("accuracy")
    assert res["q8"].final("accuracy") >= raw_acc - 0.05
    assert res["top"].final("accuracy") > res["top"].metric("accuracy").iloc[0]


def test_side_payload_of_the_inner_strategy_is_kept():
    cfg = fl.TrainConfig(steps=3, batch_size=None, lr=0.1)
    h = fl.run(fl.make_model("logreg", in_features=5, seed=0), _clients(),
               Compressed(Scaffold(cfg), Quantize8bit()), rounds=1, eval_every=0,
               progress=False)
    n_params = fl.num_parameters(fl.make_model("logreg", in_features=5))
    # compressed delta + uncompressed float32 control variate, per client
    assert h.rounds[0]["bytes_up"] == 3 * ((n_params + 16) + 4 * n_params)
    assert h.rounds[0]["bytes_down"] == 3 * 2 * 4 * n_params  # delegated download_nbytes


def test_topk_argument_validation():
    with pytest.raises(ValueError, match="exactly one"):
        TopK()
    with pytest.raises(ValueError, match="fraction"):
        TopK(fraction=0.0)
    with pytest.raises(ValueError, match="k must"):
        TopK(k=0)
