"""Sleep Replay Consolidation (SRC; Tadros, Krishnan, Ramyaa & Bazhenov, Nature Communications 2022).

After a task is learned, the ReLU network is run as a spiking network of Heaviside neurons, driven by Bernoulli
spikes whose rates follow the mean input of all tasks seen so far (the only stored information), and its weights
change by a local Hebbian rule. This replays and strengthens old tasks' structure that backprop on the new task had
overwritten. `faithful` (the default) follows the authors' MATLAB code line by line (`sleep/sleepnn_old.m`,
`utils/normalize_nn_data.m`, `utils/create_masked_input.m`, as `MNIST/run_sleep_with_replay.m` calls them):

- scales (`normalize_nn_data`): the net runs in testing mode (hidden activations x (1 - dropout)) over all seen
  tasks' training inputs; `prev = 1; for layer l: scale = max(max(0, W_l), max(0, a_{l+1})); inv = scale / prev;
  alpha_l = alpha_scale / inv; prev = inv`, a_{l+1} taken after the output function (softmax probabilities for a
  softmax net); weights are not rescaled (the code rescales a copy it throws away);
- input (`create_masked_input`, `sleepnn_old`): at each step a fresh (patch x patch) window of the mean image at a
  uniform random position (MNIST: mask_size 10 -> 11 x 11 pixels; the rest 0), spikes with
  P = min(1, 2 dt max_rate x_bar) (dt = 0.001: `rand * rescale_fac / 2 <= x`);
- for each layer, `v = decay v + alpha_l W s_prev` (W_inh = 0, DC = 0: no inhibition term), spike where
  `v >= threshold * beta_l` (threshold 1.0), then on every post-synaptic spike `W += inc sigma(W)` where the
  pre-synaptic neuron spiked and `W -= dec sigma(W)` where it did not, `sigma(w) = 2 (1 - 1/(1 + exp(-w/0.001)))`;
  spiking neurons reset to 0 (the code records a refractory end but never reads it: no refractory period).

`batched` is our named speed-up: `streams` independent noise streams per step (own membranes, own input spikes), the
summed Hebbian update applied, for ceil(Ts/streams) steps — the same number of stream-steps, fewer sequential
iterations. Keep `streams` small: each stream needs enough time steps for its membranes to integrate up to the
deeper layers' thresholds (64 streams left the MNIST output layer silent; 4 matched faithful).
"""

from __future__ import annotations

import math

import torch

from sleeptrain.continual.options import SRCSection

DT = 0.001


# the SRC parameters are the `src:` section of the continual config (one schema); SRCParams is its name here
SRCParams = SRCSection

MNIST_PUBLISHED = SRCParams()  # x of the paper for 784-1200-1200-10
PATCHES_PUBLISHED = SRCParams(iterations=30_000, max_rate=64.0, inc=0.0035, dec=0.0002, betas=[1.045],
                              alpha_scale=4.25)


def sigma(w: torch.Tensor) -> torch.Tensor:
    """2 (1 - sigmoid(w / 0.001)): ~2 for negative weights, 1 at zero, ~0 for positive ones (bounds growth)."""
    return 2.0 * (1.0 - torch.sigmoid(w / 0.001))


def layer_scales(weights: list[torch.Tensor], activation_max: list[float], alpha_scale: float) -> list[float]:
    """alpha_l of `normalize_nn_data.m`: `activation_max[l]` is the largest activation of layer l+1 on the data, as
    the toolbox's testing-mode `nnff` computes it (`BiaslessMLP.activation_maxima`). The code divides its copy of the
    weights by the factors and discards the copy; only the factors (x alpha_scale) reach the sleep."""
    prev, alphas = 1.0, []
    for w, a_max in zip(weights, activation_max):
        scale = max(float(w.detach().clamp_min(0).max()), max(float(a_max), 0.0))
        inv = scale / prev if prev else 0.0
        alphas.append((1.0 / inv if inv > 0 else 1.0) * alpha_scale)
        prev = inv
    return alphas


@torch.no_grad()
def hebbian_update(w: torch.Tensor, post: torch.Tensor, pre: torch.Tensor, inc: float, dec: float) -> None:
    """In place: for each stream and each post-synaptic spike, +inc*sigma(W) towards pre-synaptic spikes,
    -dec*sigma(W) towards silent inputs. post: (streams, n_out), pre: (streams, n_in), 0/1 floats.

    Only the rows of neurons that spiked change, so only they are computed: spikes are sparse, and sigma over the
    whole matrix at every step would dominate the cost."""
    rows = torch.nonzero(post.any(dim=0)).flatten()
    if rows.numel() == 0:
        return
    post_rows = post[:, rows]
    both = post_rows.T @ pre                          # streams where post and pre spiked
    post_only = post_rows.sum(0)[:, None] - both       # streams where post spiked, pre silent
    w_rows = w[rows]
    w[rows] = w_rows + sigma(w_rows) * (inc * both - dec * post_only)


def input_rates(mean_input: torch.Tensor, params: SRCParams, streams: int, generator: torch.Generator,
                image_shape: tuple[int, int] | None = None) -> torch.Tensor:
    """Per-stream spike probabilities: 2 dt max_rate x_bar, optionally restricted to a random patch of the
    `image_shape` (height, width) image."""
    prob = (2.0 * DT * params.max_rate * mean_input).expand(streams, -1)
    if not params.patch:
        return prob
    if image_shape is None:
        raise ValueError("src.patch needs the image shape (height, width) of the inputs: pass image_shape")
    h, w = image_shape
    rows = torch.randint(0, h - params.patch + 1, (streams,), generator=generator)
    cols = torch.randint(0, w - params.patch + 1, (streams,), generator=generator)
    r = torch.arange(h)[None, :, None]
    c = torch.arange(w)[None, None, :]
    inside = ((r >= rows[:, None, None]) & (r < rows[:, None, None] + params.patch)
              & (c >= cols[:, None, None]) & (c < cols[:, None, None] + params.patch))
    return prob * inside.reshape(streams, h * w)


@torch.no_grad()
def src_sleep(weights: list[torch.Tensor], mean_input: torch.Tensor, activation_max: list[float], params: SRCParams,
              seed: int = 0, neuron_counts: bool = False, image_shape: tuple[int, int] | None = None) -> dict:
    """Run SRC in place on `weights` (list of (n_out, n_in) tensors of a bias-free ReLU net).

    `mean_input`: x_bar, the mean input of the data the sleep replays (values in [0, 1]); `activation_max`: each
    layer's largest activation on the normalisation data (`BiaslessMLP.activation_maxima`). Returns counts for
    logging; `image_shape` (height, width): the inputs' image, needed with `params.patch`; with `neuron_counts`, also `neuron_spikes`: each layer's spike count per neuron (input layer first,
    the toolbox's `sum_spikes`)."""
    if len(params.betas) != len(weights):
        raise ValueError(f"SRC needs one beta per layer: {len(weights)} layers, {len(params.betas)} betas")
    if params.mode not in ("faithful", "batched"):
        raise ValueError(f"SRC mode must be faithful or batched, got {params.mode!r}")
    alphas = layer_scales(weights, activation_max, params.alpha_scale)
    streams = 1 if params.mode == "faithful" else params.streams
    steps = params.iterations if params.mode == "faithful" else math.ceil(params.iterations / streams)
    gen = torch.Generator().manual_seed(seed)
    mem = [torch.zeros(streams, w.shape[0]) for w in weights]
    spikes_total = [0] * (len(weights) + 1)
    per_neuron = [torch.zeros(len(mean_input.reshape(-1)))] + [torch.zeros(w.shape[0]) for w in weights]
    for _ in range(steps):
        prob = input_rates(mean_input.reshape(-1), params, streams, gen, image_shape)
        pre = (torch.rand(prob.shape, generator=gen) < prob).float()
        spikes_total[0] += int(pre.sum())
        if neuron_counts:
            per_neuron[0] += pre.sum(0)
        for l, w in enumerate(weights):
            mem[l].mul_(params.decay).add_(alphas[l] * (pre @ w.T))
            post = (mem[l] >= params.betas[l]).float()
            hebbian_update(w, post, pre, params.inc, params.dec)
            mem[l].mul_(1.0 - post)  # reset the neurons that spiked
            spikes_total[l + 1] += int(post.sum())
            if neuron_counts:
                per_neuron[l + 1] += post.sum(0)
            pre = post
    info = {"mode": params.mode, "steps": steps, "streams": streams, "alphas": alphas, "spikes": spikes_total}
    return {**info, "neuron_spikes": per_neuron} if neuron_counts else info
