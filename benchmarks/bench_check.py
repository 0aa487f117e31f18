"""Speed and memory of rfalint's capture + RF analysis, against one plain forward pass.

Run:  python benchmarks/bench_check.py [--quick]

Prints, per fixture, the median time of (a) one plain forward pass in eval/no_grad mode
and (b) ``rfalint.analyze`` (fake-tensor capture + RF engine + border analysis, no cost
model), then a depth-scaling series on plain residual nets, then the peak resident memory
of an analysis at 224 and 1024 px measured in fresh subprocesses.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import torch
import torch.nn as nn

from _timing import ROOT, median_of

import rfalint  # noqa: E402


def forward_time(model: nn.Module, shape, repeat: int) -> float:
    x = torch.randn((1, *shape))
    model.eval()

    def run():
        with torch.no_grad():
            model(x)

    return median_of(repeat, run)


def analysis_time(model: nn.Module, shape, repeat: int) -> float:
    return median_of(repeat, lambda: rfalint.analyze(model, shape))


class ResidualNet(nn.Module):
    """A stem and ``blocks`` residual blocks of two 3x3 convs: depth without width."""

    def __init__(self, blocks: int, width: int = 16):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                          nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width))
            for _ in range(blocks))
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = torch.relu(x + block(x))
        return self.head(x.mean((2, 3)))


MEMORY_SNIPPET = """
import sys
sys.path.insert(0, {root!r})
import rfalint

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024

model = rfalint.load_model({target!r}).model
loaded = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current RSS
rfalint.analyze(model, (3, {res}, {res}))
print(loaded, status("VmHWM:"))
"""


def peak_memory_mb(target: str, res: int) -> tuple[float, float]:
    """RSS (MB) after loading the model, and the peak during one analysis (Linux
    /proc/self/status; the peak is reset after loading), in a fresh process."""
    code = MEMORY_SNIPPET.format(root=str(ROOT), target=target, res=res)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, analysed = out.stdout.strip().splitlines()[-1].split()
    return float(loaded), float(analysed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, shorter series")
    args = parser.parse_args()
    repeat = 2 if args.quick else 5
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {repeat} runs\n")

    fixtures = [("vgg16", (3, 32, 32), {}), ("resnet18", (3, 224, 224), {}),
                ("resnet152", (3, 224, 224), {}), ("densenet", (3, 224, 224), {}),
                ("inception", (3, 224, 224), {}), ("unet", (3, 256, 256), {})]
    print(f"{'fixture':<12}{'input':>14}{'nodes':>7}{'forward s':>11}{'analysis s':>12}{'ratio':>7}")
    for name, shape, kwargs in fixtures:
        model = rfalint.load_model(str(ROOT / "fixtures" / f"{name}.py"), kwargs).model
        fwd = forward_time(model, shape, repeat)
        ana = analysis_time(model, shape, repeat)
        nodes = len(rfalint.analyze(model, shape).graph)
        print(f"{name:<12}{'x'.join(map(str, shape)):>14}{nodes:>7}{fwd:>11.3f}{ana:>12.3f}"
              f"{ana / fwd:>7.2f}")

    print("\ndepth scaling (residual nets, width 16, 64x64 input)")
    print(f"{'blocks':>7}{'nodes':>7}{'forward s':>11}{'analysis s':>12}{'ms/node':>9}")
    for blocks in ((50, 200) if args.quick else (50, 200, 800)):
        model = ResidualNet(blocks)
        shape = (3, 64, 64)
        fwd = forward_time(model, shape, max(1, repeat // 2))
        ana = analysis_time(model, shape, max(1, repeat // 2))
        nodes = len(rfalint.analyze(model, shape).graph)
        print(f"{blocks:>7}{nodes:>7}{fwd:>11.3f}{ana:>12.3f}{1000 * ana / nodes:>9.3f}")

    print("\nresident memory (fresh process, MB): after loading the model -> peak during analysis")
    for target in ("fixtures/resnet18.py", "fixtures/resnet152.py"):
        (load_lo, low), (load_hi, high) = (peak_memory_mb(str(ROOT / target), r) for r in (224, 1024))
        print(f"{target:<24} 224 px: {load_lo:7.1f} -> {low:7.1f}   1024 px: {load_hi:7.1f} -> "
              f"{high:7.1f}   ratio of peaks {high / low:.2f}")


if __name__ == "__main__":
    main()
