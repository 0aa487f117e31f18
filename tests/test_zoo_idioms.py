"""Model-zoo idioms that used to break capture: norm+act subclasses with their own
forward, "same"-padding conv subclasses, create-style Sequential factories, drop-path,
layer scale, scripting branches, re-parameterisable blocks, fixed final pools and 3-D
medical segmentation nets with several outputs."""

from __future__ import annotations

import pytest
import torch.nn as nn

import rfalint
from rfalint.errors import ModelError
from rfalint.graph import Kind

from conftest import fixture_model


@pytest.mark.parametrize("pool", ["avg7", "mean", "adaptive", "flatten"])
def test_every_readout_style_gives_resnet18s_rf(pool):
    analysis = rfalint.analyze(fixture_model("zoo_resnet", pool=pool, width=8), (3, 224, 224))
    # A fixed AvgPool2d(7) is a window like any pool (as VGG's last pool, 196 -> 212): it
    # adds (7 - 1) x 32 to the 435 of the last conv.
    assert analysis.rf_final.r_max == ((627, 627) if pool == "avg7" else (435, 435))
    assert analysis.complete
    assert len(analysis.border.sequence) == 17  # stem + 16 block convs, no shortcut convs


def test_norm_act_subclass_records_its_ops_and_children():
    graph = rfalint.analyze(fixture_model("zoo_resnet", width=8), (3, 64, 64)).graph
    names = [n.name for n in graph]
    assert "layers.0.bn1.batch_norm" in names and "layers.0.bn1.act" in names
    assert "stem.conv" in names and "stem.bn" in names  # create-style Sequential


def test_same_padding_conv_subclass_pads_then_convolves():
    graph = rfalint.analyze(fixture_model("zoo_efficientnet", width=8), (3, 64, 64)).graph
    stem = [n for n in graph if n.scope == "conv_stem"]
    assert [n.op for n in stem] == ["pad", "conv2d"]
    assert stem[1].kind is Kind.CONV and stem[1].out_shape[2:] == (32, 32)


def test_reparameterisable_block_has_the_rf_of_its_fused_form():
    train = rfalint.analyze(fixture_model("repvgg", width=4), (3, 224, 224))
    deploy = rfalint.analyze(fixture_model("repvgg", width=4, deploy=True), (3, 224, 224))
    assert train.rf_final.r_max == deploy.rf_final.r_max
    assert train.rf_final.r_min < deploy.rf_final.r_min  # 1x1 and identity branches


def test_3d_medical_net_with_deep_supervision_outputs():
    analysis = rfalint.analyze(fixture_model("unet3d_medical", width=2, depth=3), (1, 16, 32, 32))
    graph = analysis.graph
    assert len(graph.outputs) == 2
    assert [graph[o].name for o in graph.outputs] == ["seg.0", "seg.1"]
    assert analysis.rfs[graph.by_name("seg.1").id].r_max == (35, 35, 35)


class _Detached(nn.Module):
    def forward(self, x):
        import torch

        return torch.from_numpy(x.detach().numpy())


class _LosesTrack(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.escape = _Detached()
        self.head = nn.Conv2d(4, 4, 3)

    def forward(self, x):
        return self.head(self.escape(self.conv(x)))


def test_lost_output_names_the_last_traced_module_and_the_culprit():
    with pytest.raises(ModelError) as info:
        rfalint.analyze(_LosesTrack(), (3, 16, 16))
    message = str(info.value)
    assert "\n" not in message
    assert "the last traced tensor came from 'escape.detach'" in message
    assert "'escape' returned a tensor not computed from its inputs" in message
