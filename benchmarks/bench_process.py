"""Whole-process speed of `rfalint check`, as a user in a pre-commit hook feels it.

Run:  python benchmarks/bench_process.py [--repeat 5]

Every figure is the wall time of a fresh Python process, runs of the compared commands
alternating (so load changes hit all of them alike), median of ``--repeat``:

* floor: python + ``import torch`` + build the model (what any tool must pay);
* frozen floor: the same with the garbage-collector set-up of ``rfalint.__main__``
  (imports with the collector off, then :func:`gc.freeze`), which saves about a second on
  a 2-core machine, mostly at exit; ``check - frozen floor`` is the time rfalint's own
  work takes (its imports, argument parsing, capture, analysis, JSON);
* check: ``python -m rfalint check MODEL --res R --format json``;
* forward: the floor plus one plain forward pass at that resolution (eval, no_grad).

Part 1 prints ``check - floor`` (rfalint's overhead as users feel it; the target is
<= 0.2 s) and ``check - frozen floor`` for ResNet18 and Cifar VGG11 at 32 px. Part 2
prints ``check / forward`` (the target is <= 1.0) for ResNet50 and DenseNet-121 at
224 px and ResNet18 at 1024 px.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from _timing import ROOT, machine_line

BUILD = """
import importlib.util, sys, torch
sys.path.insert(0, {fixtures!r})
spec = importlib.util.spec_from_file_location("fixture", {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
model = getattr(module, {factory!r})().eval()
"""
FACTORIES = {"resnet18": "resnet18", "vgg11": "vgg11", "resnet50": "resnet50",
             "densenet": "DenseNet"}
FORWARD = """
with torch.no_grad():
    model(torch.randn(1, 3, {res}, {res}))
"""


FROZEN = "import gc\ngc.disable()\nimport torch\ngc.freeze()\ngc.enable()\n{build}\ngc.freeze()\n"


def commands(fixture: str, res: int) -> dict[str, list[str]]:
    path = str(ROOT / "fixtures" / f"{fixture}.py")
    build = BUILD.format(fixtures=str(ROOT / "fixtures"), path=path, factory=FACTORIES[fixture])
    return {
        "floor": [sys.executable, "-c", build],
        "frozen": [sys.executable, "-c", FROZEN.format(build=build)],
        "check": [sys.executable, "-m", "rfalint", "check", path, "--res", str(res),
                  "--format", "json", "--fail-on", "never"],
        "forward": [sys.executable, "-c", build + FORWARD.format(res=res)],
    }


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def alternating(cmds: dict[str, list[str]], names: list[str], repeat: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm the file cache once
        wall(cmds[name])
    for _ in range(repeat):
        for name in names:
            times[name].append(wall(cmds[name]))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(machine_line(f"median of {args.repeat}, alternating whole processes"))
    print("\noverhead above the floor (python + torch + build), --res 32, --format json")
    print(f"{'model':12} {'floor':>8} {'frozen':>8} {'check':>8} {'overhead':>9} "
          f"{'own work':>9}")
    for fixture in ("resnet18", "vgg11"):
        t = alternating(commands(fixture, 32), ["floor", "frozen", "check"], args.repeat)
        print(f"{fixture:12} {t['floor']:8.2f} {t['frozen']:8.2f} {t['check']:8.2f} "
              f"{t['check'] - t['floor']:8.2f}s {t['check'] - t['frozen']:8.2f}s")
    print("\ncheck against one plain forward pass, each in its own process")
    print(f"{'model':12} {'res':>5} {'forward':>8} {'check':>8} {'ratio':>7}")
    for fixture, res in (("resnet50", 224), ("densenet", 224), ("resnet18", 1024)):
        t = alternating(commands(fixture, res), ["forward", "check"], args.repeat)
        print(f"{fixture:12} {res:5} {t['forward']:8.2f} {t['check']:8.2f} "
              f"{t['check'] / t['forward']:7.2f}")


if __name__ == "__main__":
    main()
