"""What YAML specs cost: loading (parse + meta check + real build) and verified export.

Prints, per fixture, the best-of-N wall time of ``rfalint.spec.load`` split into its
stages (read + expand, the meta-tensor build and shape check, the real build with weight
initialisation), the time of ``rfalint.spec.export`` (capture, rebuild, two more captures
and forwards for the round-trip checks) and the number of layers.

    python benchmarks/bench_spec.py [--repeat 3] [--threads N]

Timings depend on the machine and its load: the script prints the torch thread count and
the load average next to the figures.
"""

from __future__ import annotations

import argparse

import torch
from _timing import ROOT, best_of, machine_line

import rfalint
import rfalint.spec as spec
from rfalint.spec.build import _assemble, check_shapes
from rfalint.spec.limits import Limits

FIXTURES = ("vgg16", "resnet18", "resnet34", "mobilenetv2", "inception", "mpnet18")


def meta_check(doc) -> None:
    with torch.device("meta"):
        model = _assemble(doc, Limits())
    check_shapes(model, doc, Limits())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best is kept)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine_line(f"best of {args.repeat}"))
    header = (f"{'fixture':<12} {'layers':>6} {'params (M)':>10} {'parse':>8} {'meta check':>11} "
              f"{'real build':>11} {'load':>8} {'export':>8}")
    print(header)
    print("-" * len(header))
    for name in FIXTURES:
        path = ROOT / "fixtures" / f"{name}.yaml"
        doc = spec.parse(spec.read(path), str(path))
        spec.load(path)  # warm-up: imports, allocator
        parse = best_of(args.repeat, lambda: spec.parse(spec.read(path), str(path)))
        meta = best_of(args.repeat, lambda: meta_check(doc))
        real = best_of(args.repeat, lambda: _assemble(doc, Limits()))
        load = best_of(args.repeat, lambda: spec.load(path))
        model = rfalint.load_model(str(ROOT / "fixtures" / f"{name}.py")).model
        shape = (3, 32, 32)
        spec.export(model, shape, name)  # warm-up: fake tensor mode
        export = best_of(args.repeat, lambda: spec.export(model, shape, name))
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{name:<12} {len(doc.layers):>6} {params:>10.1f} {parse * 1e3:>5.0f} ms "
              f"{meta * 1e3:>8.0f} ms {real * 1e3:>8.0f} ms {load * 1e3:>5.0f} ms "
              f"{export:>6.2f} s")


if __name__ == "__main__":
    main()
