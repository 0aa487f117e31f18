"""`rfalint check` must not pay for torch's compiler stack: on meta tensors, torch's own
shape kernels import sympy and torch._dynamo (over a second), so the capture computes
the shapes of common ops itself (rfalint.capture.shapes). Checked in a fresh interpreter,
since other tests import those modules."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import FIXTURES

HEAVY = ("sympy", "torch._dynamo", "fvcore")

CHECK = f"""
import json, sys
import rfalint
for name, shape in [("resnet18", (3, 32, 32)), ("vgg11", (3, 32, 32)), ("densenet", (3, 64, 64)),
                    ("se_resnet", (3, 64, 64)), ("unet", (3, 64, 64))]:
    model = rfalint.load_model(str({str(FIXTURES)!r}) + "/" + name + ".py").model
    result = rfalint.check(model, shape)
    assert result.cost.counter == "rfalint-graph", name
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""


def test_check_imports_neither_sympy_nor_dynamo_nor_fvcore():
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
