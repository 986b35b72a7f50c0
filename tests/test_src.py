import math

import numpy as np
import pytest
import torch

from sleeptrain.continual.data import patch_images, patches, read_idx, split_digits, stratified_split
from sleeptrain.continual.mlp import BiaslessMLP, SGDConfig, Trainer
from sleeptrain.continual.src import (PATCHES_PUBLISHED, SRCParams, hebbian_update, input_rates, layer_scales,
                                      sigma, src_sleep)
from sleeptrain.errors import ConfigError, DataError


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
    alphas = layer_scales([w1, w2], [float(a1.max()), float(a2.max())], alpha_scale=10.0)
    # layer 1: scale = max(2, 2) = 2, inv = 2, alpha = 1/2; layer 2: scale = max(3, 6.5) = 6.5, inv = 3.25
    assert alphas == pytest.approx([10 * 0.5, 10 / 3.25])


def test_normalisation_runs_the_net_in_testing_mode_on_all_tasks_with_the_output_function():
    """normalize_nn_data by hand: a 2-2-2 softmax net with dropout 0.5, data of two tasks."""
    net = BiaslessMLP([2, 2, 2], output="softmax_ce", dropout=0.5)
    with torch.no_grad():
        net.weights[0].copy_(torch.tensor([[4.0, 0.0], [0.0, 1.0]]))
        net.weights[1].copy_(torch.tensor([[1.0, 0.0], [0.0, 0.5]]))
    task1, task2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    # testing mode: hidden = relu(x W1') * (1 - 0.5): task 1 -> [2, 0], task 2 -> [0, 0.5]; max 2
    # output = softmax(hidden W2'): task 1 -> softmax([2, 0]) max 0.8808; task 2 -> softmax([0, 0.25]) max 0.5622
    maxima = net.activation_maxima(torch.cat([task1, task2]))
    assert maxima == pytest.approx([2.0, 1 / (1 + math.exp(-2))], abs=1e-6)
    alphas = layer_scales(list(net.weights), maxima, alpha_scale=1.0)
    # layer 1: scale max(4, 2) = 4 -> inv 4, alpha 1/4; layer 2: scale max(1, 0.8808) = 1 -> inv 1/4, alpha 4
    assert alphas == pytest.approx([0.25, 4.0])
    # the current task alone (task 2) gives other maxima: the seen data matter
    assert net.activation_maxima(task2) == pytest.approx([0.5, 1 / (1 + math.exp(-0.25))], abs=1e-6)


def test_input_spikes_are_bernoulli_with_the_codes_probability():
    """P(spike) = min(1, 2 dt max_rate x): sleepnn_old's `rand * (1 / (dt max_rate)) / 2 <= x`."""
    gen = torch.Generator().manual_seed(0)
    params = SRCParams(max_rate=100.0)
    x = torch.tensor([0.0, 0.5, 1.0, 5.0, 10.0])
    prob = input_rates(x, params, streams=1, generator=gen)[0]
    assert torch.allclose(prob.clamp(max=1), torch.tensor([0.0, 0.1, 0.2, 1.0, 1.0]))
    draws = (torch.rand(20000, 5, generator=gen) < prob).float().mean(0)
    assert torch.allclose(draws, prob.clamp(max=1), atol=0.01)


def test_masked_input_is_an_11_pixel_window_of_the_mean_image_anywhere_it_fits():
    """create_masked_input(X, n, 10): randi(28 - 10) start, x_pos:x_pos+10 -> an 11x11 window, 18 x 18 places."""
    gen = torch.Generator().manual_seed(0)
    params = SRCParams(max_rate=250.0, patch=11)
    prob = input_rates(torch.ones(784), params, streams=4000, generator=gen, image_shape=(28, 28)).reshape(4000, 28, 28) > 0
    assert (prob.sum((1, 2)) == 121).all()
    rows = prob.any(2).float().argmax(1)
    cols = prob.any(1).float().argmax(1)
    assert set(rows.tolist()) == set(range(18)) and set(cols.tolist()) == set(range(18))


def test_spikes_only_at_threshold_and_reset_after():
    # one input always spiking, one output neuron: impulse alpha*w = 1 per step, threshold 2.5
    w = torch.tensor([[1.0]])
    data = [1.0]                                   # activation max 1: alpha = alpha_scale / max(w, a) = 1
    params = SRCParams(iterations=7, max_rate=500.0, inc=0.0, dec=0.0, betas=[2.5], alpha_scale=1.0,
                       decay=1.0, mode="faithful")
    # P(input spike) = 2 * 0.001 * 500 * 1 = 1: v = 1, 2, 3 -> spike, reset; 1, 2, 3 -> spike; 1
    out = src_sleep([w], torch.tensor([1.0]), data, params)
    assert out["spikes"] == [7, 2]
    params.betas = [3.5]
    assert src_sleep([w], torch.tensor([1.0]), data, params)["spikes"] == [7, 1]


def test_input_rates_follow_the_mean_input_and_patches():
    gen = torch.Generator().manual_seed(0)
    params = SRCParams(max_rate=100.0, patch=2)
    prob = input_rates(torch.full((16,), 0.5), params, streams=3, generator=gen, image_shape=(4, 4))
    assert prob.shape == (3, 16) and torch.allclose(prob.max(), torch.tensor(0.1))
    assert ((prob > 0).sum(1) == 4).all()  # a 2x2 window per stream


def toy_net():
    """A 2-layer net where the new task dominated: SRC should raise weights from shared inputs."""
    torch.manual_seed(0)
    return [torch.rand(6, 8) * 0.5 - 0.1, torch.rand(2, 6) * 0.5 - 0.1]


def test_faithful_and_batched_agree_in_direction():
    mean_input = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0], dtype=torch.float32)
    deltas = {}
    for mode in ("faithful", "batched"):
        weights = toy_net()
        before = [w.clone() for w in weights]
        params = SRCParams(iterations=2000, max_rate=200.0, inc=0.01, dec=0.001, betas=[1.0, 1.0],
                           alpha_scale=2.0, mode=mode, streams=16)
        src_sleep(weights, mean_input, [1.0, 1.0], params, seed=1)
        deltas[mode] = torch.cat([(w - b).reshape(-1) for w, b in zip(weights, before)])
    f, b = deltas["faithful"], deltas["batched"]
    assert f.abs().sum() > 0 and b.abs().sum() > 0
    cosine = float(f @ b / (f.norm() * b.norm()))
    assert cosine > 0.8
    changed = (f.abs() > 1e-6) & (b.abs() > 1e-6)
    assert (torch.sign(f[changed]) == torch.sign(b[changed])).float().mean() > 0.9


def test_src_rejects_a_wrong_number_of_betas():
    with pytest.raises(ValueError, match="one beta per layer"):
        src_sleep(toy_net(), torch.ones(8), [1.0, 1.0], SRCParams(betas=[1.0]))


def test_parameter_vector_round_trip():
    p = PATCHES_PUBLISHED
    assert SRCParams().with_vector(p.vector()).vector() == p.vector()
    assert SRCParams().with_vector(p.vector(), iterations=7).iterations == 7


def test_a_patch_needs_the_image_shape_and_the_options_are_validated():
    with pytest.raises(ValueError, match="image_shape"):
        input_rates(torch.ones(16), SRCParams(patch=2), streams=1, generator=torch.Generator())
    with pytest.raises(ConfigError, match="src.max_rate"):
        SRCParams(max_rate=-1.0)


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
    same = patch_images(overlap=16, seed=0)  # no pixel of their own left: four identical images
    assert (same == same[0]).all() and same[0].sum() == 16
    with pytest.raises(DataError, match="overlap"):
        patch_images(overlap=17, seed=0)
    bench = patches(overlap=3)
    assert [t.classes for t in bench.tasks] == [[0, 1], [2, 3]] and len(bench.tasks[0].y_train) == 2
    assert len(patches(overlap=3, copies=10).tasks[0].y_train) == 20


def test_uniform_init_and_the_toolbox_output_gradient():
    net = BiaslessMLP([50, 40, 3], generator=torch.Generator().manual_seed(0))
    assert all(float(w.detach().abs().max()) <= 0.01 for w in net.weights)
    assert float(net.weights[0].detach().abs().max()) > 0.009
    with torch.no_grad():
        net.weights[1].fill_(-0.01)                # every output below 0: ReLU outputs stuck at 0
    x, y = torch.rand(4, 50), torch.tensor([0, 1, 2, 0])
    grads = {}
    for kind in ("toolbox", "exact"):
        net.output_grad = kind
        out = net(x)
        assert (out == 0).all()                    # the forward pass is the ReLU either way
        grads[kind] = torch.autograd.grad(net.loss(out, y), net.weights[1])[0]
    assert grads["exact"].abs().sum() == 0         # through the ReLU nothing can learn
    # nnbp: d = -(y - a) = -1 at the targets: the target outputs' weights are pushed up
    assert (grads["toolbox"][0] < 0).any() and grads["toolbox"].abs().sum() > 0


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


def write_idx(folder, split, images, labels):
    import gzip
    import struct

    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / f"{split}-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(bytes([0, 0, 8, 3]) + struct.pack(">III", *images.shape) + images.astype(np.uint8).tobytes())
    with gzip.open(folder / f"{split}-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(bytes([0, 0, 8, 1]) + struct.pack(">I", len(labels)) + labels.astype(np.uint8).tobytes())


def fake_mnist(folder, n_train=200, n_test=50, seed=0):
    rng = np.random.default_rng(seed)
    write_idx(folder, "train", rng.integers(0, 256, (n_train, 28, 28)), np.arange(n_train) % 10)
    write_idx(folder, "t10k", rng.integers(0, 256, (n_test, 28, 28)), np.arange(n_test) % 10)
    return folder


def test_split_idx_trains_on_the_first_images_and_sleeps_on_all(tmp_path):
    from sleeptrain.continual.data import cross_modal, split_fashion, split_mnist

    bench = split_mnist(fake_mnist(tmp_path / "m"), train_per_task=6)
    t1 = bench.tasks[0]
    assert t1.classes == [0, 1] and len(t1.y_train) == 6 and len(t1.seen) == 40 and len(t1.y_test) == 10
    assert torch.equal(t1.x_train, t1.seen[:6])    # the first ones in file order, as indices(1:5000)
    assert len(split_mnist(tmp_path / "m", train_per_task=None).tasks[0].y_train) == 40
    assert split_fashion(fake_mnist(tmp_path / "f", seed=1)).name == "split_fashion"
    both = cross_modal(tmp_path / "m", tmp_path / "f")
    assert [len(t.y_train) for t in both.tasks] == [200, 200] and both.sleep_source == "first"


def test_idx_errors_name_the_file_and_the_source(tmp_path):
    from sleeptrain.continual.data import split_fashion, split_mnist

    with pytest.raises(DataError, match=r"data_path: no train-images-idx3-ubyte\(.gz\) in .*yann.lecun.com"):
        split_mnist(tmp_path)
    folder = fake_mnist(tmp_path / "m")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="data_path: no t10k-labels-idx1-ubyte"):
        split_mnist(folder)
    with pytest.raises(DataError, match="fashion_path: .* is not a folder .*zalandoresearch"):
        split_fashion(tmp_path / "missing")
    write_idx(tmp_path / "bad", "train", np.zeros((5, 28, 28)), np.zeros(4))
    write_idx(tmp_path / "bad", "t10k", np.zeros((5, 28, 28)), np.zeros(5))
    with pytest.raises(DataError, match="do not match"):
        split_mnist(tmp_path / "bad")


@pytest.mark.shared
def test_split_mnist_from_shared(shared_data):
    from sleeptrain.continual.data import split_mnist

    bench = split_mnist(shared_data / "mnist")
    assert sum(len(t.y_test) for t in bench.tasks) == 10_000
    assert sum(len(t.seen) for t in bench.tasks) == 60_000
    assert [len(t.y_train) for t in bench.tasks] == [5000] * 5
    assert bench.tasks[0].x_train.shape[1] == 784
