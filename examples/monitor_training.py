"""Log layer saturation each epoch while training (rfalint.saturation.Monitor).

A tiny CNN learns to tell horizontal from vertical stripes in noisy 16 px images; after
each epoch the monitor reports every layer's saturation over that epoch's training
batches, s_mu and the saturation tail. Runs on a CPU in seconds:

    python examples/monitor_training.py [--epochs 3] [--every 2] [--samples 512]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn as nn

from rfalint.saturation import Monitor


def stripes(samples: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.randint(0, 2, (samples,), generator=generator)
    phase = torch.arange(16).float().mul(1.2).sin()
    images = torch.where(labels.view(-1, 1, 1, 1).bool(), phase.view(1, 1, 16, 1),
                         phase.view(1, 1, 1, 16)).expand(samples, 3, 16, 16)
    return images + 0.8 * torch.randn(samples, 3, 16, 16, generator=generator), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--every", type=int, default=1, help="record every k-th batch")
    parser.add_argument("--samples", type=int, default=512)
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    images, labels = stripes(args.samples, generator)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 2))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)

    with Monitor(model, every=args.every) as monitor:
        for epoch in range(1, args.epochs + 1):
            monitor.reset()  # saturation of this epoch's batches only
            model.train()
            for start in range(0, len(images), 32):
                optimiser.zero_grad()
                loss = nn.functional.cross_entropy(model(images[start:start + 32]),
                                                   labels[start:start + 32])
                loss.backward()
                optimiser.step()
            model.eval()
            with monitor.paused(), torch.no_grad():  # evaluation is not recorded
                accuracy = (model(images).argmax(1) == labels).float().mean().item()
            print(f"epoch {epoch}: loss {loss.item():.3f}, accuracy {accuracy:.1%}, "
                  f"{monitor.report()}")


if __name__ == "__main__":
    main()
