"""Two CPU processes under torchrun (gloo) give the one-process result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import rfalint
from clihelp import run

MODEL = textwrap.dedent('''
    import torch.nn as nn


    def net():
        return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(6, 6, 3, stride=2), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))
''')


def test_two_processes_match_one(tmp_path):
    model = tmp_path / "net.py"
    model.write_text(MODEL)
    torch.manual_seed(0)
    torch.save(rfalint.load_model(str(model)).model.state_dict(), tmp_path / "w.pt")
    # 37 samples in batches of 5: shards of 18 and 19, the last batches ragged.
    np.save(tmp_path / "x.npy",
            np.random.default_rng(1).normal(size=(37, 3, 8, 8)).astype(np.float32))
    args = ["saturation", str(model), "--res", "8", "--data", str(tmp_path / "x.npy"),
            "--weights", str(tmp_path / "w.pt"), "--batch-size", "5", "--format", "json",
            "--device", "cpu"]  # gloo, also on a machine with one GPU

    single = run(*args)
    assert single.code == 0, single.err
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # --standalone: rendezvous on a free local port, so parallel test runs do not collide.
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "rfalint", *args],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    one, two = json.loads(single.out), json.loads(proc.stdout)  # rank 0 printed, alone
    assert (one["processes"], two["processes"]) == (1, 2)
    assert two["data"]["samples"] == one["data"]["samples"] == 37
    for a, b in zip(one["layers"], two["layers"], strict=True):
        assert (a["name"], a["observations"], a["intrinsic_dim"]) == \
            (b["name"], b["observations"], b["intrinsic_dim"])
        # Other batch boundaries, other float32 round-off in the per-batch GEMMs (~1e-7).
        assert b["total_variance"] == pytest.approx(a["total_variance"], rel=1e-6)
    assert two["s_mu"] == one["s_mu"] and two["width"] == one["width"]
    assert two["saturation_tail"] == one["saturation_tail"]
