"""How much the cost model adds to ``check``.

Prints, per fixture, the best-of-N wall time of ``rfalint.check`` without and with the cost
model, the ratio, and the cost model's two counters timed alone (fvcore traces a real
forward; the rfalint-graph counter only reads the captured graph).

    python benchmarks/bench_cost.py [--repeat 5] [--res 32] [--threads N]

Timings depend on the machine and its load: the script prints the torch thread count and
the load average next to the figures.
"""

from __future__ import annotations

import argparse

import torch
from _timing import ROOT, best_of, machine_line

import rfalint
from rfalint.analysis.cost import FVCORE, GRAPH, measure
from rfalint.errors import ModelError

FIXTURES = ("resnet18", "vgg16", "densenet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (best is kept)")
    parser.add_argument("--res", type=int, default=32, help="input side in pixels")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine_line(f"best of {args.repeat}, {args.res} px"))
    header = (f"{'fixture':<10} {'check --no-cost':>16} {'check':>10} {'ratio':>6} "
              f"{'fvcore alone':>13} {'graph alone':>12} {'GMACs':>8} (counter)")
    print(header)
    print("-" * len(header))
    shape = (3, args.res, args.res)
    for name in FIXTURES:
        model = rfalint.load_model(str(ROOT / "fixtures" / f"{name}.py")).model
        rfalint.check(model, shape, cost=True)  # warm-up: imports, allocator, jit
        plain = best_of(args.repeat, lambda: rfalint.check(model, shape, cost=False))
        full = best_of(args.repeat, lambda: rfalint.check(model, shape, cost=True))
        graph = rfalint.analyze(model, shape).graph
        try:
            seconds = best_of(args.repeat, lambda: measure(model, graph, counter=FVCORE))
            fv = f"{seconds * 1e3:.0f} ms"
        except ModelError:  # e.g. a classifier that only fits another resolution
            fv = "fails"
        own = best_of(args.repeat, lambda: measure(model, graph, counter=GRAPH))
        cost = measure(model, graph)
        print(f"{name:<10} {plain * 1e3:>13.0f} ms {full * 1e3:>7.0f} ms {full / plain:>5.2f}x "
              f"{fv:>13} {own * 1e3:>9.1f} ms {cost.macs_total / 1e9:>8.3f} ({cost.counter})")


if __name__ == "__main__":
    main()
