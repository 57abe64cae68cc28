import pytest
import torch

import fedlearn as fl


@pytest.mark.parametrize("norm", ["none", "batch", "group"])
@pytest.mark.parametrize("channels", [1, 3])
def test_small_cnn_shapes(norm, channels):
    m = fl.SmallCNN(in_channels=channels, num_classes=4, norm=norm, width=8)
    out = m(torch.rand(5, channels, 28, 28))
    assert out.shape == (5, 4)
    has_bn = any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())
    has_gn = any(isinstance(x, torch.nn.GroupNorm) for x in m.modules())
    assert has_bn == (norm == "batch") and has_gn == (norm == "group")


def test_small_cnn_rejects_wrong_input_and_config():
    m = fl.SmallCNN(in_channels=1)
    with pytest.raises(ValueError, match=r"expects \(N, 1, 28, 28\)"):
        m(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match="in_channels"):
        fl.SmallCNN(in_channels=2)
    with pytest.raises(ValueError, match="norm"):
        fl.SmallCNN(norm="layer")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="divisible"):
        fl.SmallCNN(norm="group", width=6, groups=4)


def test_logreg_and_mlp():
    lr = fl.LogisticRegression(13, 2)
    assert lr(torch.rand(4, 13)).shape == (4, 2)
    assert fl.num_parameters(lr) == 13 * 2 + 2
    mlp = fl.MLP(784, 3, hidden=(32, 16))
    assert mlp(torch.rand(2, 1, 28, 28)).shape == (2, 3)
    with pytest.raises(ValueError):
        fl.MLP(4, 2, hidden=(0,))


def test_make_model_seeded_and_does_not_touch_global_rng():
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    a = fl.make_model("cnn", seed=7, width=8)
    after = torch.rand(1)
    assert torch.equal(before, after)  # global stream untouched
    b = fl.make_model("cnn", seed=7, width=8)
    c = fl.make_model("cnn", seed=8, width=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    with pytest.raises(ValueError, match="unknown model"):
        fl.make_model("resnet")
