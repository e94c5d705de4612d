"""probgen.metrics.domain.reconstruction_accuracy: the domain classifier's verdict on reconstructions,
checked with reconstructors whose answer is known (the images themselves; one constant image)."""

import pytest
import torch

from probgen.config import DataConfig
from probgen.data import load_dataset
from probgen.metrics.domain import reconstruction_accuracy, train_domain_net

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data_and_net(tmp_path_factory):
    root = tmp_path_factory.mktemp("no-data")
    data = load_dataset(DataConfig(dataset="dsprites", limit=300, image_size=32, data_root=str(root)))
    return data, train_domain_net(data, steps=30, device=CPU, show_progress=False)


def test_perfect_reconstructions_score_what_the_images_score(data_and_net):
    data, net = data_and_net
    acc = reconstruction_accuracy(net, data, lambda x, rows: x, CPU, batch_size=7)  # batches of odd size
    assert acc["num_images"] == len(data.splits["test"]) and acc["split"] == "test"
    assert "shape" in acc["reconstructions"] and acc["reconstructions"].keys() == acc["images"].keys()
    assert acc["reconstructions"] == acc["images"]


def test_a_constant_reconstruction_scores_the_share_of_its_class(data_and_net):
    data, net = data_and_net
    blank = torch.zeros(1, *data.image_shape)
    acc = reconstruction_accuracy(net, data, lambda x, rows: blank.expand(len(x), -1, -1, -1), CPU)
    logits = net.classify(torch.zeros(1, *data.image_shape, dtype=torch.uint8))
    predicted = {k: int(v.argmax(1)) for k, v in logits.items()}
    split = data.splits["test"]
    for name in predicted:
        column = split.factor_classes[:, data.factor_names.index(name)]
        assert acc["reconstructions"][name] == pytest.approx(float((column == predicted[name]).float().mean()))
    assert acc["reconstructions"]["shape"] < 0.6  # three shapes, interleaved: no constant image gets most right
