import math

import numpy as np
import pytest
import torch

from sleeptrain.continual.data import patch_images, patches, read_idx, split_digits, stratified_split
from sleeptrain.continual.mlp import BiaslessMLP, SGDConfig, Trainer
from sleeptrain.continual.src import (PATCHES_PUBLISHED, SRCParams, hebbian_update, input_rates, layer_scales,
                                      sigma, src_sleep)
from sleeptrain.errors import DataError


def test_sigma_by_hand():
    w = torch.tensor([0.0, 0.001, -0.001, 0.005, -0.005])
    expected = [2 * (1 - 1 / (1 + math.exp(-v / 0.001))) for v in w.tolist()]
    assert torch.allclose(sigma(w), torch.tensor(expected))
    assert sigma(torch.tensor(0.0)) == 1.0 and float(sigma(torch.tensor(-1.0))) == pytest.approx(2.0)


def test_hebbian_update_by_hand():
    w = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    post = torch.tensor([[1.0, 0.0]])      # only the first output neuron spiked
    pre = torch.tensor([[1.0, 0.0, 1.0]])  # inputs 0 and 2 spiked, input 1 silent
    hebbian_update(w, post, pre, inc=0.1, dec=0.01)
    # row 0: +inc*sigma(0)=+0.1 for input 0, -dec*sigma(0)=-0.01 for input 1, +0.1*sigma(-1)~+0.2 for input 2
    assert torch.allclose(w[0], torch.tensor([0.1, -0.01, -1.0 + 0.2]), atol=1e-6)
    assert torch.equal(w[1], torch.zeros(3))  # no post-synaptic spike: no change


def test_batched_update_sums_the_streams():
    w = torch.zeros(1, 2)
    post = torch.tensor([[1.0], [1.0], [0.0]])
    pre = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    hebbian_update(w, post, pre, inc=0.1, dec=0.01)
    assert torch.allclose(w, torch.tensor([[0.2, 0.1 - 0.01]]))


def test_scale_factors_on_a_hand_made_two_layer_net():
    w1 = torch.tensor([[0.5, -1.0], [2.0, 0.0]])   # max positive weight 2
    w2 = torch.tensor([[1.0, 3.0]])                # max positive weight 3
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    a1 = torch.relu(x @ w1.T)                      # [[0.5, 2], [0, 0]] -> max 2
    a2 = torch.relu(a1 @ w2.T)                     # [[6.5], [0]] -> max 6.5
    alphas = layer_scales([w1, w2], [a1, a2], alpha_scale=10.0)
    # layer 1: scale = max(2, 2) = 2, inv = 2, alpha = 1/2; layer 2: scale = max(3, 6.5) = 6.5, inv = 3.25
    assert alphas == pytest.approx([10 * 0.5, 10 / 3.25])


def test_spikes_only_at_threshold_and_reset_after():
    # one input always spiking, one output neuron: impulse alpha*w = 1 per step, threshold 2.5
    w = torch.tensor([[1.0]])
    data = torch.tensor([[1.0]])                   # alpha = alpha_scale / max(w, a) = 1
    params = SRCParams(iterations=7, max_rate=500.0, inc=0.0, dec=0.0, betas=[2.5], alpha_scale=1.0,
                       decay=1.0, mode="faithful")
    # P(input spike) = 2 * 0.001 * 500 * 1 = 1: v = 1, 2, 3 -> spike, reset; 1, 2, 3 -> spike; 1
    out = src_sleep([w], torch.tensor([1.0]), data, params)
    assert out["spikes"] == [7, 2]
    params.betas = [3.5]
    assert src_sleep([w], torch.tensor([1.0]), data, params)["spikes"] == [7, 1]


def test_input_rates_follow_the_mean_input_and_patches():
    gen = torch.Generator().manual_seed(0)
    params = SRCParams(max_rate=100.0, patch=2, image_shape=(4, 4))
    prob = input_rates(torch.full((16,), 0.5), params, streams=3, generator=gen)
    assert prob.shape == (3, 16) and torch.allclose(prob.max(), torch.tensor(0.1))
    assert ((prob > 0).sum(1) == 4).all()  # a 2x2 window per stream


def toy_net():
    """A 2-layer net where the new task dominated: SRC should raise weights from shared inputs."""
    torch.manual_seed(0)
    return [torch.rand(6, 8) * 0.5 - 0.1, torch.rand(2, 6) * 0.5 - 0.1]


def test_faithful_and_batched_agree_in_direction():
    mean_input = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0], dtype=torch.float32)
    data = mean_input[None, :]
    deltas = {}
    for mode in ("faithful", "batched"):
        weights = toy_net()
        before = [w.clone() for w in weights]
        params = SRCParams(iterations=2000, max_rate=200.0, inc=0.01, dec=0.001, betas=[1.0, 1.0],
                           alpha_scale=2.0, mode=mode, streams=16)
        src_sleep(weights, mean_input, data, params, seed=1)
        deltas[mode] = torch.cat([(w - b).reshape(-1) for w, b in zip(weights, before)])
    f, b = deltas["faithful"], deltas["batched"]
    assert f.abs().sum() > 0 and b.abs().sum() > 0
    cosine = float(f @ b / (f.norm() * b.norm()))
    assert cosine > 0.8
    changed = (f.abs() > 1e-6) & (b.abs() > 1e-6)
    assert (torch.sign(f[changed]) == torch.sign(b[changed])).float().mean() > 0.9


def test_src_rejects_a_wrong_number_of_betas():
    with pytest.raises(ValueError, match="one beta per layer"):
        src_sleep(toy_net(), torch.ones(8), torch.ones(1, 8), SRCParams(betas=[1.0]))


def test_parameter_vector_round_trip():
    p = PATCHES_PUBLISHED
    assert SRCParams.from_vector(p.vector()).vector() == p.vector()


# --- networks and data --------------------------------------------------------------------------------------------

def test_biasless_mlp_dropout_scales_at_test_time():
    net = BiaslessMLP([4, 3, 2], dropout=0.25)
    x = torch.ones(1, 4)
    hidden = torch.relu(x @ net.weights[0].T) * 0.75
    expected = torch.relu(hidden @ net.weights[1].T)
    assert torch.allclose(net(x), expected)
    assert not any(name.endswith("bias") for name, _ in net.named_parameters())


@pytest.mark.parametrize("output", ["relu_mse", "softmax_ce"])
def test_sgd_learns_a_separable_task(output):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(200, 10, generator=gen)
    y = (x[:, 0] > x[:, 1]).long()
    net = BiaslessMLP([10, 16, 2], output=output, generator=gen)
    Trainer(net, seed=0).fit(x, y, SGDConfig(lr=0.1, momentum=0.5, batch_size=10, epochs=20))
    assert net.accuracy(x, y) > 0.9


def test_patch_images_share_exactly_the_overlap():
    images = patch_images(overlap=5, seed=0)
    assert images.shape == (4, 100)
    shared = (images.sum(0) == 4).sum()
    assert shared == 5 and (images.sum(1) == 100 // 6).all()
    with pytest.raises(DataError, match="overlap"):
        patch_images(overlap=16, seed=0)
    bench = patches(overlap=3, copies=10)
    assert [t.classes for t in bench.tasks] == [[0, 1], [2, 3]] and len(bench.tasks[0].y_train) == 20


def test_split_digits_is_class_incremental():
    bench = split_digits()
    assert [t.classes for t in bench.tasks] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    for t in bench.tasks:
        assert set(t.y_train.tolist()) == set(t.classes) and set(t.y_test.tolist()) == set(t.classes)
        assert float(t.x_train.max()) <= 1.0


def test_stratified_split_is_disjoint_and_complete():
    y = np.repeat(np.arange(3), 10)
    tr, te = stratified_split(y, 0.2, seed=0)
    assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == 30
    assert (np.bincount(y[te]) == 2).all()


def test_idx_reader(tmp_path):
    import gzip
    import struct

    data = np.arange(24, dtype=np.uint8)
    with gzip.open(tmp_path / "x-idx3-ubyte.gz", "wb") as fh:
        fh.write(bytes([0, 0, 8, 3]) + struct.pack(">III", 2, 3, 4) + data.tobytes())
    assert np.array_equal(read_idx(tmp_path / "x-idx3-ubyte.gz"), data.reshape(2, 3, 4))
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="not an unsigned-byte IDX file"):
        read_idx(tmp_path / "bad")


@pytest.mark.shared
def test_split_mnist_from_shared(shared_data):
    from sleeptrain.continual.data import split_mnist

    bench = split_mnist(shared_data / "mnist")
    assert sum(len(t.y_train) + len(t.y_test) for t in bench.tasks) == 10_000
    assert bench.tasks[0].x_train.shape[1] == 784
