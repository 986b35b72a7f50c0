"""SRC on a user's own torch.nn.Sequential (sleeptrain.continual.module_sleep)."""

import pytest
import torch

from sleeptrain.continual.data import patch_images
from sleeptrain.continual.module_sleep import activation_maxima, sleep_sequential
from sleeptrain.continual.src import PATCHES_PUBLISHED
from sleeptrain.errors import ConfigError


def test_the_documented_example_recovers_the_first_task():
    """Two tasks of two 10x10 patches sharing 12 pixels: plain SGD forgets T1, SRC brings it back."""
    torch.manual_seed(0)
    images = torch.from_numpy(patch_images(overlap=12, seed=0))
    labels = torch.arange(4)
    net = torch.nn.Sequential(torch.nn.Linear(100, 4, bias=False))
    torch.nn.init.uniform_(net[0].weight, -0.01, 0.01)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.5)  # lr * buffer = the toolbox's v = 0.5 v + lr g
    for task in ([0, 1], [2, 3]):
        for _ in range(4):
            loss = torch.nn.functional.cross_entropy(net(images[task]), labels[task])
            opt.zero_grad()
            loss.backward()
            opt.step()
    accuracy = lambda: float((net(images).argmax(1) == labels).float().mean())  # noqa: E731
    assert accuracy() == 0.5                                   # T1 forgotten
    net.append(torch.nn.Softmax(dim=1))                        # scales are taken after the output function
    info = sleep_sequential(net, images, PATCHES_PUBLISHED)    # replays the mean of all four images
    assert accuracy() == 1.0 and info["spikes"][-1] > 0


def test_activation_maxima_follow_relu_dropout_and_softmax():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                              torch.nn.Linear(2, 2, bias=False), torch.nn.Softmax(dim=1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[4.0, 0.0], [0.0, 1.0]]))
        net[3].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.5]]))
    maxima = activation_maxima(net, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert maxima == pytest.approx([2.0, float(torch.softmax(torch.tensor([2.0, 0.0]), 0)[0])])


@pytest.mark.parametrize("model, expected", [
    (torch.nn.Linear(3, 2, bias=False), "torch.nn.Sequential"),
    (torch.nn.Sequential(torch.nn.Linear(3, 2)), "Linear has a bias"),
    (torch.nn.Sequential(torch.nn.Linear(3, 2, bias=False), torch.nn.Tanh()), "Tanh is not supported"),
])
def test_other_networks_are_refused_in_one_line(model, expected):
    with pytest.raises(ConfigError, match=expected):
        sleep_sequential(model, torch.rand(4, 3))


def test_betas_and_inputs_must_fit_the_network():
    net = torch.nn.Sequential(torch.nn.Linear(3, 2, bias=False), torch.nn.ReLU(), torch.nn.Linear(2, 2, bias=False))
    with pytest.raises(ConfigError, match="one threshold per Linear layer"):
        sleep_sequential(net, torch.rand(4, 3), PATCHES_PUBLISHED)
    with pytest.raises(ConfigError, match=r"inputs: expected \(n, 3\)"):
        sleep_sequential(net, torch.rand(4, 5))
