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


# What `rfalint check --format json` must not import: a pre-commit hook pays for every module
# (rich: tables of text output; yaml: specs and --arg; pydantic: typer >= 0.29's validation).
NOT_FOR_JSON = ("rich", "yaml", "pydantic", "matplotlib", "rfalint.fix", "rfalint.spec",
                "rfalint.saturation", "rfalint.sweep", "rfalint.visual", "rfalint.baseline")

RUN_CLI = f"""
import gc, json, sys
import rfalint
assert "torch" not in sys.modules, "import rfalint must not import torch"
sys.argv = ["rfalint", "check", {str(FIXTURES / "resnet18.py")!r}, "--res", "32",
            "--format", "json", "--fail-on", "never"]
from rfalint.__main__ import main
try:
    main()
except SystemExit as exit:
    code = exit.code
sys.stdout = sys.__stdout__
print(json.dumps({{"code": code, "gc": gc.isenabled(), "frozen": gc.get_freeze_count(),
                  "loaded": sorted(m for m in {NOT_FOR_JSON!r} if m in sys.modules)}}))
"""


def test_json_check_process_imports_only_what_it_needs():
    proc = subprocess.run([sys.executable, "-c", RUN_CLI], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    last = json.loads(proc.stdout.splitlines()[-1])
    assert last["code"] == 0 and last["loaded"] == []
    # the launcher froze torch's objects (rfalint.__main__) and left the collector on
    assert last["gc"] and last["frozen"] > 100_000
