"""How long a resolution sweep takes against one ``check``.

Prints the best-of-N wall time of ``rfalint.check`` on ResNet50 at 224 px (the default:
cost counter "auto", fix estimates), of ``check`` with the graph counter, and of a
40-point ``rfalint.sweep`` (16..640 px in steps of 16), with the ratio, the number of
captures, replays and RF propagations the sweep needed, and the time per sweep point. These are
in-process times; ``bench_process.py`` times whole processes.

    python benchmarks/bench_sweep.py [--repeat 3] [--points 40] [--fixture resnet50]

Timings depend on the machine and its load: the script prints the torch thread count and
the load average next to the figures.
"""

from __future__ import annotations

import argparse

from _timing import ROOT, best_of, machine_line

import rfalint
from rfalint.sweep import sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best is kept)")
    parser.add_argument("--points", type=int, default=40, help="sweep points, 16 px apart")
    parser.add_argument("--fixture", default="resnet50")
    args = parser.parse_args()
    model = rfalint.load_model(str(ROOT / "fixtures" / f"{args.fixture}.py")).model
    shape = (3, 224, 224)
    sizes = [16 * (i + 1) for i in range(args.points)]
    print(machine_line())
    check = best_of(args.repeat, lambda: rfalint.check(model, shape, name=args.fixture))
    check_graph = best_of(args.repeat, lambda: rfalint.check(
        model, shape, name=args.fixture, counter="rfalint-graph"))
    result = {}
    swept = best_of(args.repeat, lambda: result.setdefault(
        "last", sweep(model, 3, 2, sizes, args.fixture)))
    last = result["last"]
    print(f"{args.fixture}: check at 224 px            {check:7.3f} s")
    print(f"{args.fixture}: check, graph counter       {check_graph:7.3f} s")
    print(f"{args.fixture}: sweep {sizes[0]}..{sizes[-1]} px, {len(sizes)} points "
          f"{swept:7.3f} s = {swept / check:.2f}x one check "
          f"({swept / len(sizes) * 1000:.0f} ms per point; {last.captures} capture(s), "
          f"{last.replays} replay(s), {last.rf_computations} RF propagation(s))")


if __name__ == "__main__":
    main()
