"""SRC on a user's own network: `sleep_sequential(model, inputs, params)` runs Sleep Replay Consolidation in place on
any `torch.nn.Sequential` of bias-free `nn.Linear` layers with `nn.ReLU` between them (and optionally `nn.Dropout`,
which the toolbox's testing mode turns into a (1 - p) scaling, and a final `nn.ReLU` or `nn.Softmax`).

    import torch
    from sleeptrain.continual.module_sleep import sleep_sequential
    from sleeptrain.continual.src import SRCParams

    net = torch.nn.Sequential(torch.nn.Linear(784, 256, bias=False), torch.nn.ReLU(),
                              torch.nn.Linear(256, 10, bias=False))
    ...train on task 1, then on task 2...
    seen = torch.cat([task1_inputs, task2_inputs])     # inputs in [0, 1]
    sleep_sequential(net, seen, SRCParams(betas=[14.5, 44.6], iterations=20000, patch=11), image_shape=(28, 28))

The sleep replays the mean of `inputs` and scales each layer from the network's activations on them
(`normalize_nn_data`), exactly as the benchmark runner does; `params` (the `src:` section of a continual config)
holds one beta per Linear layer; `image_shape` is needed with `params.patch`.
"""

from __future__ import annotations

import torch

from sleeptrain.continual.src import SRCParams, src_sleep
from sleeptrain.errors import ConfigError

ALLOWED = (torch.nn.Linear, torch.nn.ReLU, torch.nn.Dropout, torch.nn.Softmax, torch.nn.Identity)


def linear_layers(model: torch.nn.Module) -> list[torch.nn.Linear]:
    """The Linear layers of a Sequential SRC can run on; a one-line error for anything else."""
    if not isinstance(model, torch.nn.Sequential):
        raise ConfigError(f"model: SRC runs on a torch.nn.Sequential of bias-free Linear and ReLU layers, got "
                          f"{type(model).__name__}")
    layers = []
    for i, module in enumerate(model):
        if not isinstance(module, ALLOWED):
            raise ConfigError(f"model[{i}]: {type(module).__name__} is not supported by SRC (allowed: Linear without "
                              f"bias, ReLU, Dropout, Softmax)")
        if isinstance(module, torch.nn.Linear):
            if module.bias is not None:
                raise ConfigError(f"model[{i}]: Linear has a bias; SRC's spiking network has none (bias=False)")
            layers.append(module)
    if not layers:
        raise ConfigError("model: no Linear layer to sleep on")
    return layers


@torch.no_grad()
def activation_maxima(model: torch.nn.Sequential, inputs: torch.Tensor, chunk: int = 8192) -> list[float]:
    """Each Linear layer's largest activation on `inputs` in testing mode: after the ReLU (or Softmax) that follows
    it, hidden Dropout as a (1 - p) scaling (non-inverted, as the authors' toolbox), the last layer raw if nothing
    follows it."""
    linear_at = [i for i, m in enumerate(model) if isinstance(m, torch.nn.Linear)]
    maxima = [0.0] * len(linear_at)
    for start in range(0, len(inputs), chunk):
        h = inputs[start:start + chunk]
        layer = -1
        for i, module in enumerate(model):
            if isinstance(module, torch.nn.Linear):
                h, layer = h @ module.weight.T, layer + 1
            elif isinstance(module, torch.nn.Dropout):
                h = h * (1.0 - module.p)
            elif not isinstance(module, torch.nn.Identity):
                h = module(h)
            next_is_linear = i + 1 < len(model) and isinstance(model[i + 1], torch.nn.Linear)
            if layer >= 0 and (next_is_linear or i + 1 == len(model)):
                maxima[layer] = max(maxima[layer], float(h.max()))
    return maxima


def sleep_sequential(model: torch.nn.Sequential, inputs: torch.Tensor, params: SRCParams | None = None,
                     seed: int = 0, image_shape: tuple[int, int] | None = None) -> dict:
    """Run SRC in place on `model`'s Linear weights, replaying the mean of `inputs` (all tasks seen so far, values in
    [0, 1]) and scaling from the model's activations on them. Returns the sleep's spike counts and scales."""
    layers = linear_layers(model)
    params = params or SRCParams(betas=[1.0] * len(layers))
    if len(params.betas) != len(layers):
        raise ConfigError(f"params.betas: one threshold per Linear layer ({len(layers)}), got {len(params.betas)}")
    if inputs.ndim != 2 or inputs.shape[1] != layers[0].in_features:
        raise ConfigError(f"inputs: expected (n, {layers[0].in_features}), got {tuple(inputs.shape)}")
    inputs = inputs.to(layers[0].weight.dtype)
    maxima = activation_maxima(model, inputs)
    if params.patch and (image_shape is None or image_shape[0] * image_shape[1] != inputs.shape[1]):
        raise ConfigError(f"image_shape: params.patch={params.patch} needs the (height, width) of the "
                          f"{inputs.shape[1]}-pixel inputs, got {image_shape}")
    return src_sleep([layer.weight.data for layer in layers], inputs.mean(dim=0), maxima, params, seed=seed,
                     image_shape=image_shape)
