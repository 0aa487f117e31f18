"""Cost of ``rfalint saturation`` against plain inference on the same data.

ResNet18 with the Cifar stem (fixtures/resnet18_cifar.py), 32 px, random images held in
memory (the data source costs next to nothing, so the figures isolate the hooks and the
moment accumulation), at each ``--batch-sizes``:

* plain inference vs saturation streaming (targets: <= 1.3x on CPU, <= 1.5x on a GPU);
* the training-time :class:`rfalint.saturation.Monitor` on the same inference passes, and
  training steps (forward, backward, SGD) with and without it;
* the eigendecomposition and the graph capture, once per run.

Runs alternate plain and measured passes and the best of ``--repeats`` is reported,
because shared machines are noisy; process CPU time is printed too (steadier on a shared
CPU). ``--e2e`` adds the whole command as a separate process against plain inference over
the same ``.npy`` file, minus the process start (Python, ``import rfalint.cli``).

    python benchmarks/bench_saturation.py [--device cpu|cuda] [--samples 1024]
        [--batch-sizes 64,256] [--e2e] [--e2e-model fixtures/resnet50.py --e2e-res 224]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _timing  # noqa: F401  (puts this checkout first on sys.path)
import numpy as np
import torch

import rfalint
from rfalint.load import input_shape, parse_resolution
from rfalint.saturation import Monitor
from rfalint.saturation.data import TensorSource, open_source
from rfalint.saturation.run import Distributed, measured_layers, resolve_device, stream
from rfalint.saturation.stats import all_layer_stats

ROOT = Path(__file__).resolve().parents[1]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(fn, device) -> tuple[float, float]:
    """(wall, process CPU) seconds of ``fn()``."""
    sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - start, time.process_time() - cpu


def plain(model, source, batch_size, device) -> None:
    with torch.inference_mode():
        for batch in source.batches(batch_size, pin_memory=device.type == "cuda"):
            model(batch.to(device, non_blocking=True))


def training(model, source, batch_size, device, steps: int) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    for number, batch in enumerate(source.batches(batch_size)):
        if number == steps:
            break
        opt.zero_grad()
        model(batch.to(device)).square().mean().backward()
        opt.step()


def best(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return min(r[0] for r in runs), min(r[1] for r in runs)


def bench_batch(model, nodes, source, batch_size, device, repeats) -> None:
    plain_runs, sat_runs, mon_runs, train_runs, train_mon_runs = [], [], [], [], []
    eig = []
    steps = 2
    for _ in range(repeats):
        plain_runs.append(clock(lambda: plain(model, source, batch_size, device), device))
        out = {}
        sat_runs.append(clock(lambda: out.update(m=stream(model, nodes, source, batch_size,
                                                          device, Distributed(device))[0]),
                              device))
        eig.append(clock(lambda: all_layer_stats(out["m"], 0.99), device)[0])
        with Monitor(model, [n.name for n in nodes]) as monitor:
            mon_runs.append(clock(lambda: plain(model, source, batch_size, device), device))
            clock(lambda: monitor.report(), device)
        model.train()
        train_runs.append(clock(lambda: training(model, source, batch_size, device, steps),
                                device))
        with Monitor(model, [n.name for n in nodes]):
            train_mon_runs.append(clock(lambda: training(model, source, batch_size, device,
                                                         steps), device))
        model.eval()
    (p, pc), (s, sc), (m, mc) = best(plain_runs), best(sat_runs), best(mon_runs)
    (t, tc), (tm, tmc) = best(train_runs), best(train_mon_runs)
    n = len(source)
    print(f"-- batch {batch_size}")
    print(f"plain inference      : {p:8.3f} s  ({n / p:8.1f} img/s)   runs "
          f"{', '.join(f'{r[0]:.3f}' for r in plain_runs)}")
    print(f"saturation streaming : {s:8.3f} s  ({n / s:8.1f} img/s)   runs "
          f"{', '.join(f'{r[0]:.3f}' for r in sat_runs)}")
    print(f"Monitor, same passes : {m:8.3f} s")
    print(f"eigendecomposition   : {min(eig):8.3f} s  (once per run, all layers)")
    print(f"overhead streaming / plain   : {s / p:.2f}x wall, {sc / pc:.2f}x process CPU "
          f"(target <= {1.5 if device.type == 'cuda' else 1.3}x)")
    print(f"overhead Monitor / plain     : {m / p:.2f}x wall, {mc / pc:.2f}x process CPU")
    print(f"training {steps} steps        : {t:.3f} s plain, {tm:.3f} s with Monitor: "
          f"{tm / t:.2f}x wall, {tmc / tc:.2f}x process CPU")


def end_to_end(args, device) -> None:
    """The whole CLI process against plain inference over the same file."""
    model_file = str(ROOT / args.e2e_model)
    torch.manual_seed(0)
    model = rfalint.load_model(model_file).model.eval()
    shape = input_shape(model, parse_resolution(args.e2e_res), None)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "x.npy"
        np.save(data, np.random.default_rng(0).normal(size=(args.e2e_samples, *shape))
                .astype(np.float32))
        source = open_source(str(data), shape)
        model.to(device)
        plain(model, TensorSource("tensors", "warm-up", 2, shape, array=torch.zeros(2, *shape)),
              2, device)
        inference = min(clock(lambda: plain(model, source, args.e2e_batch_size, device),
                              device)[0] for _ in range(2))
        starts, wholes = [], []
        command = [sys.executable, "-m", "rfalint", "saturation", model_file, "--data", str(data),
                   "--res", args.e2e_res, "--device", device.type, "--batch-size",
                   str(args.e2e_batch_size), "--format", "json"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)
        for _ in range(2):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import rfalint.cli"], check=True, env=env)
            starts.append(time.perf_counter() - start)
            start = time.perf_counter()
            subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
            wholes.append(time.perf_counter() - start)
    start_s, whole = min(starts), min(wholes)
    print(f"-- end to end: {args.e2e_model} at {args.e2e_res} px, {args.e2e_samples} images, "
          f"batch {args.e2e_batch_size}, {device.type}")
    print(f"whole process        : {whole:8.3f} s")
    print(f"process start        : {start_s:8.3f} s  (python -c 'import rfalint.cli')")
    print(f"plain inference      : {inference:8.3f} s  (in-process, same file)")
    print(f"end to end / plain   : {(whole - start_s) / inference:.2f}x  "
          "((whole process - start) / plain inference)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--batch-sizes", default="64,256", help="'' for --e2e only")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 is steadiest on a shared machine)")
    parser.add_argument("--e2e", action="store_true", help="also time the whole CLI process")
    parser.add_argument("--e2e-model", default="fixtures/resnet18_cifar.py")
    parser.add_argument("--e2e-res", default="32")
    parser.add_argument("--e2e-samples", type=int, default=2048)
    parser.add_argument("--e2e-batch-size", type=int, default=128)
    args = parser.parse_args()

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
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
    plain(model, TensorSource("tensors", "warm-up", 128, (3, 32, 32), array=data[:128]), 64,
          device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"ResNet18-Cifar, 32 px, {args.samples} images, {name}, "
          f"{_timing.machine_line()}, {len(nodes)} conv/linear layers measured")
    print(f"graph capture        : {capture_s:8.3f} s  (once per run)")
    for batch_size in (int(b) for b in args.batch_sizes.split(",") if b):
        bench_batch(model, nodes, source, batch_size, device, args.repeats)
    if args.e2e:
        end_to_end(args, device)


if __name__ == "__main__":
    main()
