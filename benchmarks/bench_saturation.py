"""Wall time of ``rfalint saturation`` against plain inference on the same data.

ResNet18 with the Cifar stem (fixtures/resnet18_cifar.py), 32 px, batch 64, random images
held in memory (the data source costs nothing, so the figures isolate the hooks and the
float64 covariance accumulation). Target: streaming overhead <= 1.5x plain inference on
CPU. Runs alternate plain/saturation and the best of ``--repeats`` is reported, because
shared machines are noisy.

    python benchmarks/bench_saturation.py [--device cpu|cuda] [--samples 3072]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import rfalint
from rfalint.saturation.data import TensorSource
from rfalint.saturation.run import Distributed, measured_layers, resolve_device, stream
from rfalint.saturation.stats import layer_stats

ROOT = Path(__file__).resolve().parents[1]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain(model, source, batch_size, device) -> tuple[float, float]:
    """(wall, process CPU) seconds of inference over ``source``."""
    sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        for first in range(0, len(source), batch_size):
            model(source.load(first, min(first + batch_size, len(source))).to(device))
    sync(device)
    return time.perf_counter() - start, time.process_time() - cpu


def saturation(model, nodes, source, batch_size, device) -> tuple[float, float, float, list]:
    """(wall, process CPU) seconds of streaming, wall seconds of the eigen step, stats."""
    sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    moments, _, _ = stream(model, nodes, source, batch_size, device, Distributed(device))
    sync(device)
    streamed, streamed_cpu = time.perf_counter() - start, time.process_time() - cpu
    stats = [layer_stats(m, 0.99) for m in moments.values()]
    return streamed, streamed_cpu, time.perf_counter() - start - streamed, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--samples", type=int, default=3072)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = rfalint.load_model(str(ROOT / "fixtures" / "resnet18_cifar.py")).model.eval()
    start = time.perf_counter()
    analysis = rfalint.analyze(model, (3, 32, 32))
    capture_s = time.perf_counter() - start
    nodes = measured_layers(analysis)
    model.to(device)
    data = torch.randn(args.samples, 3, 32, 32)
    source = TensorSource("tensors", "in-memory random images", args.samples, (3, 32, 32),
                          array=data)
    plain(model, TensorSource("tensors", "warm-up", 128, (3, 32, 32), array=data[:128]),
          args.batch_size, device)

    plain_runs, sat_runs, eig_runs, plain_cpu, sat_cpu = [], [], [], [], []
    for _ in range(args.repeats):
        wall, cpu = plain(model, source, args.batch_size, device)
        plain_runs.append(wall)
        plain_cpu.append(cpu)
        streamed, streamed_cpu, eig, stats = saturation(model, nodes, source, args.batch_size,
                                                        device)
        sat_runs.append(streamed)
        sat_cpu.append(streamed_cpu)
        eig_runs.append(eig)

    best_plain, best_sat, best_eig = min(plain_runs), min(sat_runs), min(eig_runs)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"ResNet18-Cifar, 32 px, batch {args.batch_size}, {args.samples} images, {name}, "
          f"torch {torch.__version__}, {len(nodes)} conv/linear layers measured")
    print(f"plain inference      : {best_plain:8.3f} s  ({args.samples / best_plain:8.1f} img/s)"
          f"   runs {', '.join(f'{t:.3f}' for t in plain_runs)}")
    print(f"saturation streaming : {best_sat:8.3f} s  ({args.samples / best_sat:8.1f} img/s)"
          f"   runs {', '.join(f'{t:.3f}' for t in sat_runs)}")
    print(f"eigendecomposition   : {best_eig:8.3f} s  (once per run, all layers, float64 CPU)")
    print(f"graph capture        : {capture_s:8.3f} s  (once per run)")
    print(f"overhead (streaming / plain)      : {best_sat / best_plain:.2f}x  (target <= 1.5x on CPU)")
    print(f"overhead (streaming + eig / plain): {(best_sat + best_eig) / best_plain:.2f}x")
    print(f"overhead in process CPU time      : {min(sat_cpu) / min(plain_cpu):.2f}x  "
          "(steadier than wall time on a shared machine)")
    s_mu = sum(s.saturation for s in stats) / len(stats)
    print(f"s_mu on random inputs, untrained weights: {s_mu:.1%} (sanity figure only)")


if __name__ == "__main__":
    main()
