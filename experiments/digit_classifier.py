"""A small CNN digit classifier and its training loop, for R5's downstream test (real + generated digits).

No probgen module has a classifier (probgen's domain feature network is internal to `probgen eval`),
so this is a plain torch module: two conv layers (32, 64; k3) with max-pooling and a dense head."""

from __future__ import annotations

import torch
from torch import nn


class DigitCNN(nn.Module):
    """(N, C, H, W) images in [0, 1] -> (N, classes) logits."""

    def __init__(self, channels: int = 1, classes: int = 10, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Dropout(0.25),
            nn.Linear(2 * width * 9, 128), nn.ReLU(), nn.Linear(128, classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train_and_test(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    epochs: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    width: int = 32,
) -> float:
    """Train a fresh :class:`DigitCNN` with Adam on (x_train in [0, 1], y_train) and return its test accuracy."""
    torch.manual_seed(seed)
    model = DigitCNN(x_train.shape[1], int(max(y_train.max(), y_test.max())) + 1, width)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(x_train)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n)
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x_test), 1000):
            correct += (model(x_test[i : i + 1000]).argmax(1) == y_test[i : i + 1000]).sum().item()
    return correct / len(x_test)
