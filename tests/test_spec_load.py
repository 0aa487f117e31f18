"""The YAML spec format: reading, expanding, building, and one-line errors with lines."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from clihelp import run

import rfalint.spec as spec
from rfalint.capture import capture
from rfalint.spec import Limits, SpecError

HEAD = """\
rfalint_spec: 1
input: {channels: 3, size: [16, 16]}
layers:
  - {name: conv1, type: Conv2d, args: {in_channels: 3, out_channels: 8, kernel_size: 3}}
"""  # conv1 is on line 4; a layer appended to HEAD is on line 5


def build_text(text: str, **limits):
    return spec.loads(textwrap.dedent(text), "spec.yaml", Limits(**limits))


# (spec text, line of the error, text the one-line message must contain)
BAD = {
    "malformed": ("rfalint_spec: 1\ninput: {channels: 3, size: [16, 16]\nlayers: []\n", 3,
                  "malformed YAML"),
    "unknown_type": (HEAD + "  - {name: conv3, type: Conv2D, args: [8, 8, 3]}\n", 5,
                     "layer 'conv3': unknown type 'Conv2D' (did you mean 'Conv2d'?)"),
    "unknown_op": (HEAD + "  - {name: x, type: rellu}\n", 5, "unknown type 'rellu' (did you "
                   "mean 'relu'?)"),
    "missing_arg": (HEAD + "  - {name: conv2, type: Conv2d, args: {in_channels: 8, "
                    "kernel_size: 3}}\n", 5, "Conv2d is missing required arg 'out_channels'"),
    "wrong_arg_type": (HEAD + "  - name: conv2\n    type: Conv2d\n    args:\n      "
                       "in_channels: 8\n      out_channels: eight\n      kernel_size: 3\n", 9,
                       "arg 'out_channels' of Conv2d: expected int, got string 'eight'"),
    "bool_is_not_int": (HEAD + "  - {name: conv2, type: Conv2d, args: {in_channels: 8, "
                        "out_channels: true, kernel_size: 3}}\n", 5,
                        "expected int, got boolean true"),
    "tuple_length": (HEAD + "  - {name: conv2, type: Conv2d, args: {in_channels: 8, "
                     "out_channels: 8, kernel_size: [3, 3, 3]}}\n", 5,
                     "expected int or list of 2 ints"),
    "unknown_arg": (HEAD + "  - {name: conv2, type: Conv2d, args: {in_channels: 8, "
                    "out_channels: 8, kernel: 3}}\n", 5,
                    "unknown arg 'kernel' for Conv2d (did you mean 'kernel_size'?)"),
    "device_arg": (HEAD + "  - {name: fc, type: Linear, args: {in_features: 8, out_features: 2, "
                   "device: cuda}}\n", 5, "unknown arg 'device'"),
    "too_many_positional": (HEAD + "  - {name: r, type: ReLU, args: [true, 1]}\n", 5,
                            "ReLU takes at most 1 positional args (inplace), got 2"),
    "unknown_field": (HEAD + "  - {name: conv2, type: Conv2d, agrs: [8, 8, 3]}\n", 5,
                      "unknown field 'agrs' (did you mean 'args'?)"),
    "no_type": (HEAD + "  - {name: conv2, args: [8, 8, 3]}\n", 5,
                "needs one of 'type', 'block' or 'reuse'"),
    "unknown_ref": (HEAD + "  - {name: relu, type: relu, from: conv}\n", 5,
                    "'from' refers to unknown layer 'conv' (did you mean 'conv1'?)"),
    "forward_ref": (HEAD + "  - {name: add, type: add, from: [conv1, conv2]}\n"
                    "  - {name: conv2, type: Conv2d, args: [8, 8, 1]}\n", 5,
                    "'from' refers to 'conv2', which is defined later (line 6)"),
    "self_cycle": (HEAD + "  - {name: relu, type: relu, from: relu}\n", 5,
                   "reads the layer itself (a cycle)"),
    "merge_mismatch": (HEAD + "  - {name: conv2, type: Conv2d, from: input, args: [3, 4, 3]}\n"
                       "  - {name: add, type: add, from: [conv1, conv2]}\n", 6,
                       "inputs do not match: 'conv1' (1, 8, 14, 14) and 'conv2' "
                       "(1, 4, 14, 14)"),
    "cat_mismatch": (HEAD + "  - {name: conv2, type: Conv2d, from: input, args: [3, 4, 1]}\n"
                     "  - {name: cat, type: cat, from: [conv1, conv2], args: {dim: 1}}\n", 6,
                     "inputs do not match: 'conv1' (1, 8, 14, 14) and 'conv2' (1, 4, 16, 16)"),
    "channel_mismatch": (HEAD + "  - {name: conv2, type: Conv2d, args: [4, 4, 3]}\n", 5,
                         "expects 4 input channels, gets 8 from 'conv1' (1, 8, 14, 14)"),
    "linear_mismatch": (HEAD + "  - {name: flat, type: flatten, args: {start_dim: 1}}\n"
                        "  - {name: fc, type: Linear, args: [100, 10]}\n", 6,
                        "expects 100 input features, gets 1568 from 'flat' (1, 1568)"),
    "map_collapses": (HEAD + "  - {name: pool, type: MaxPool2d, args: [32]}\n", 5,
                      "input 'conv1' (1, 8, 14, 14) does not fit"),
    "arity": (HEAD + "  - {name: add, type: add}\n", 5, "add takes 2 inputs, 'from' gives 1"),
    "tuple_output": (HEAD + "  - {name: pool, type: MaxPool2d, args: {kernel_size: 2, "
                     "return_indices: true}}\n", 5, "returns a tuple, not one tensor"),
    "in_place_hazard": (HEAD + "  - {name: relu, type: ReLU, args: {inplace: true}}\n"
                        "  - {name: add, type: add, from: [relu, conv1]}\n", 5,
                        "changes 'conv1', which 'add' reads afterwards"),
    "empty_file": ("", 1, "empty spec"),
    "empty_layers": ("rfalint_spec: 1\ninput: {channels: 3, size: [16, 16]}\nlayers: []\n", 3,
                     "empty spec: 'layers' lists no layers"),
    "expands_to_nothing": ("rfalint_spec: 1\ninput: {channels: 3, size: [16, 16]}\nlayers:\n"
                           "  - {type: relu, repeat: 0}\n", 3, "expand to nothing"),
    "no_version": ("input: {channels: 3, size: [16, 16]}\nlayers:\n  - {type: relu}\n", 1,
                   "missing 'rfalint_spec: 1'"),
    "future_version": (HEAD.replace("rfalint_spec: 1", "rfalint_spec: 2"), 1,
                       "unsupported format version 2"),
    "unknown_top_key": (HEAD + "layer: []\n", 5, "unknown top-level key 'layer' (did you mean "
                        "'layers'?)"),
    "no_input": (HEAD.replace("input: {channels: 3, size: [16, 16]}", "name: x"), 1,
                 "missing 'input"),
    "bad_input_size": (HEAD.replace("[16, 16]", "[16, 0]"), 2, "input 'size' must list"),
    "duplicate_key": (HEAD + "  - {name: a, type: relu, name: b}\n", 5, "duplicate key 'name'"),
    "duplicate_name": (HEAD + "  - {name: conv1, type: relu}\n", 5,
                       "name 'conv1' is already used by another layer (line 4)"),
    "layer_holds_layer": (HEAD + "  - {name: conv1.x, type: relu}\n", 5,
                          "'conv1' is a layer, so it cannot hold 'conv1.x'"),
    "reserved_name": (HEAD + "  - {name: forward, type: relu}\n", 5,
                      "'forward' is an nn.Module attribute"),
    "at_in_name": (HEAD + "  - {name: conv1@2, type: relu}\n", 5, "'@' is kept for second calls"),
    "input_as_name": (HEAD + "  - {name: input, type: relu}\n", 5, "'input' names the model or block input"),
    "repeat_over_limit": (HEAD + "  - {name: relus, type: relu, repeat: 100000}\n", 5,
                          "repeat 100000 is over the limit of 1000"),
    "repeat_not_count": (HEAD + "  - {name: relus, type: relu, repeat: -1}\n", 5,
                         "'repeat' must be a count"),
    "python_object": (HEAD + "  - !!python/object/apply:os.system ['echo pwned']\n", 5,
                      "YAML tag !!python/object/apply:os.system is not allowed"),
    "python_name": (HEAD + "  - {name: x, type: relu, args: !!python/name:os.system ''}\n", 5,
                    "YAML tag !!python/name:os.system is not allowed"),
    "binary_tag": (HEAD + "  - {name: x, type: relu, args: !!binary aGVsbG8=}\n", 5,
                   "YAML tag !!binary is not allowed"),
    "reuse_name": (HEAD + "  - {name: again, reuse: conv1, from: input}\n", 5,
                   "call 2 of 'conv1' is named 'conv1@2' (as the capture names it), not 'again'"),
    "reuse_args": (HEAD + "  - {reuse: conv1, args: [1]}\n", 5, "a reused layer takes no 'args'"),
    "bad_outputs": (HEAD + "outputs: [conv2]\n", 5, "'outputs' refers to unknown layer 'conv2'"),
}

BLOCKS = """\
rfalint_spec: 1
input: {channels: 3, size: [16, 16]}
blocks:
  unit:
    params: [c]
    defaults: {k: 3}
    layers:
      - {name: conv, type: Conv2d, args: {in_channels: $c, out_channels: $c, kernel_size: $k, padding: $(k - 1) // 2}}
      - {name: act, type: relu}
layers:
"""  # the block's conv is on line 8; a top-level layer appended to BLOCKS is on line 11

BAD_BLOCKS = {
    "unknown_block": (BLOCKS + "  - {name: a, block: unti, args: {c: 3}}\n", 11,
                      "unknown block 'unti' (did you mean 'unit'?)"),
    "missing_param": (BLOCKS + "  - {name: a, block: unit}\n", 11,
                      "block 'unit' needs parameter 'c'"),
    "unknown_param": (BLOCKS + "  - {name: a, block: unit, args: {c: 3, kk: 5}}\n", 11,
                      "block 'unit' has no parameter 'kk' (did you mean 'k'?)"),
    "unknown_expression_name": (BLOCKS.replace("$c, kernel", "$cc, kernel")
                                + "  - {name: a, block: unit, args: {c: 3}}\n", 8,
                                "layer 'a.conv': in '$cc': unknown parameter 'cc' (did you mean "
                                "'c'?) (in block 'unit' used at line 11)"),
    "expression_not_allowed": (BLOCKS.replace("$c, kernel", "$c ** 2, kernel")
                               + "  - {name: a, block: unit, args: {c: 3}}\n", 8,
                               "'c ** 2' is not allowed"),
    "top_level_parameter": (BLOCKS + "  - {name: a, type: Conv2d, args: [3, $c, 3]}\n", 11,
                            "parameters exist only inside blocks"),
    "recursion": (BLOCKS.replace("      - {name: act, type: relu}",
                                 "      - {name: again, block: unit, args: {c: $c}}")
                  + "  - {name: a, block: unit, args: {c: 3}}\n", 9,
                  "block 'unit' uses itself (unit -> unit)"),
    "reuse_block": (BLOCKS + "  - {name: a, block: unit, args: {c: 3}}\n  - {reuse: a}\n", 12,
                    "'reuse' names a single layer, and 'a' is a block or repeat"),
    "block_reads_outside": (BLOCKS.replace("      - {name: act, type: relu}",
                                           "      - {name: act, type: relu, from: stem}")
                            + "  - {name: stem, type: relu}\n"
                            + "  - {name: a, block: unit, args: {c: 3}}\n", 9,
                            "'from' refers to unknown layer 'stem'"),
}
# An expression that is not a number is reported where it is written (line 8 of the block).
BAD_BLOCKS["param_in_block_line"] = (
    BLOCKS + "  - {name: a, block: unit, args: {c: 3, k: [3]}}\n", 8,
    "layer 'a.conv': in '$(k - 1) // 2': 'k' is [3], not a number (in block 'unit' used at "
    "line 11)")


@pytest.mark.parametrize("case", sorted(BAD) + sorted(BAD_BLOCKS))
def test_bad_spec_names_file_line_and_layer(case):
    text, line, message = {**BAD, **BAD_BLOCKS}[case]
    with pytest.raises(SpecError) as info:
        spec.loads(text, "spec.yaml")
    assert str(info.value).startswith(f"spec.yaml:{line}: "), str(info.value)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("case", ["malformed", "unknown_type", "missing_arg", "wrong_arg_type",
                                  "unknown_arg", "unknown_ref", "forward_ref", "self_cycle",
                                  "merge_mismatch", "channel_mismatch", "empty_file",
                                  "empty_layers", "repeat_over_limit", "python_object",
                                  "reuse_name"])
def test_cli_check_bad_spec_exits_2_with_one_line(tmp_path, case):
    text, line, message = BAD[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = run("check", str(path), "--res", "16")
    assert result.code == 2
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err
    assert lines[0].startswith(f"rfalint: error: {path}:{line}: ") and message in lines[0]


def test_cli_check_missing_spec_file(tmp_path):
    result = run("check", str(tmp_path / "none.yaml"), "--res", "16")
    assert result.code == 2 and "no such file" in result.err


def test_limits():
    text = HEAD + "  - {name: fc, type: Linear, args: [100000, 100000]}\n"
    with pytest.raises(SpecError, match=r"spec.yaml:5: layer 'fc': the model has more than "
                                        r"1000000 parameters"):
        spec.loads(text, "spec.yaml", Limits(max_params=1_000_000))
    with pytest.raises(SpecError, match="larger than 100 bytes"):
        spec.loads(HEAD, "spec.yaml", Limits(max_bytes=100))
    upsample = HEAD + "  - {name: up, type: Upsample, args: {scale_factor: 1000}}\n"
    with pytest.raises(SpecError, match=r"spec.yaml:5: layer 'up': outputs 1568000000 values "
                                        r"\(1, 8, 14000, 14000\) at the input size, more than"):
        spec.loads(upsample, "spec.yaml")
    nested = BLOCKS + "  - {name: a, block: unit, args: {c: 3}, repeat: 1000}\n"
    with pytest.raises(SpecError, match="more than 500 layers"):
        spec.loads(nested, "spec.yaml", Limits(max_layers=500))
    deep = BLOCKS.replace("      - {name: act, type: relu}", "")
    with pytest.raises(SpecError, match="blocks nest deeper than 0"):
        spec.loads(deep + "  - {name: a, block: unit, args: {c: 3}}\n", "spec.yaml",
                   Limits(max_block_depth=0))


def test_alias_bomb_is_refused_before_it_is_walked():
    rows = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    rows += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    with pytest.raises(SpecError, match=r"more than 200000 values once its aliases are expanded"):
        spec.loads("\n".join(rows) + "\n", "bomb.yaml")


def test_file_size_is_checked_before_reading(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(HEAD + "#" * 2000 + "\n")
    with pytest.raises(SpecError, match=rf"{re.escape(str(path))}: spec is larger than 1000"):
        spec.load(path, Limits(max_bytes=1000))


def test_dict_spec_errors_name_the_layer_without_a_line():
    data = {"rfalint_spec": 1, "input": {"channels": 3, "size": [8, 8]},
            "layers": [{"name": "c", "type": "Conv2D", "args": [3, 3, 3]}]}
    with pytest.raises(SpecError) as info:
        spec.build(data)
    assert str(info.value) == "layer 'c': unknown type 'Conv2D' (did you mean 'Conv2d'?)"


# ----------------------------------------------------------------------------- building


def test_module_names_follow_layer_names_and_state_dict_keys():
    model = build_text(BLOCKS + """\
  - {name: stem, type: Conv2d, args: [3, 8, 3, 1, 1]}
  - {name: layer1, block: unit, args: {c: 8}, repeat: 2}
  - {name: head.pool, type: AdaptiveAvgPool2d, args: [1]}
  - {name: head.flat, type: Flatten}
  - {name: head.fc, type: Linear, args: [8, 2]}
""")
    names = [n for n, _ in model.named_modules()][1:]
    assert names == ["stem", "layer1", "layer1.0", "layer1.0.conv", "layer1.0.act", "layer1.1",
                     "layer1.1.conv", "layer1.1.act", "head", "head.pool", "head.flat",
                     "head.fc"]
    assert list(model.state_dict()) == ["stem.weight", "stem.bias", "layer1.0.conv.weight",
                                        "layer1.0.conv.bias", "layer1.1.conv.weight",
                                        "layer1.1.conv.bias", "head.fc.weight", "head.fc.bias"]
    graph = capture(model, (3, 16, 16))
    assert [(n.name, n.op) for n in graph][1:5] == [
        ("stem", "Conv2d"), ("layer1.0.conv", "Conv2d"), ("layer1.0.act", "relu"),
        ("layer1.1.conv", "Conv2d")]
    assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 2)


def test_unnamed_entries_are_numbered_like_sequential():
    model = build_text("""\
        rfalint_spec: 1
        input: {channels: 3, size: [8, 8]}
        blocks:
          pair:
            params: [c]
            layers:
              - {type: Conv2d, args: [$c, $c, 3, 1, 1]}
              - {type: ReLU}
        layers:
          - {type: Conv2d, args: [3, 4, 1]}
          - {block: pair, args: {c: 4}, repeat: 2}
          - {name: named, type: relu}
          - {type: Identity}
          - {type: relu, repeat: 0}
          - {type: Sigmoid}
    """)
    assert [n for n, _ in model.named_modules()][1:] == [
        "0", "1", "1.0", "1.1", "2", "2.0", "2.1", "named", "4", "5"]


def test_block_output_references_and_qualified_inner_names():
    model = build_text("""\
        rfalint_spec: 1
        input: {channels: 2, size: [8, 8]}
        blocks:
          fork:
            layers:
              - {name: a, type: Conv2d, args: [2, 2, 3, 1, 1]}
              - {name: b, type: Conv2d, from: input, args: [2, 2, 1]}
            output: a
        layers:
          - {name: f, block: fork}
          - {name: sum, type: add, from: [f, f.b]}
        outputs: [sum, f.b]
    """)
    graph = capture(model, (2, 8, 8))
    node = graph.by_name("sum")
    assert [graph[i].name for i in node.inputs] == ["f.a", "f.b"]
    out = model(torch.randn(1, 2, 8, 8))
    assert isinstance(out, tuple) and len(out) == 2


def test_reuse_shares_the_module_and_is_named_by_its_call():
    model = build_text(HEAD.replace("out_channels: 8, kernel_size: 3",
                                    "out_channels: 3, kernel_size: 3, padding: 1") + """\
  - {reuse: conv1}
  - {reuse: conv1, repeat: 2}
  - {name: out, type: add, from: [conv1@4, conv1@2]}
""")
    assert sum(p.numel() for p in model.parameters()) == 3 * 3 * 9 + 3
    graph = capture(model, (3, 16, 16))
    assert [n.name for n in graph] == ["input", "conv1", "conv1@2", "conv1@3", "conv1@4", "out"]
    assert graph.by_name("conv1@4").module is graph.by_name("conv1").module


def test_positional_args_lists_become_tuples_and_expressions_evaluate():
    model = build_text("""\
        rfalint_spec: 1
        input: {channels: 3, size: [16, 16]}
        blocks:
          factorised:
            params: [c, k]
            layers:
              - {name: a, type: Conv2d, args: [$c, $c * 2, [1, $k], 1, [0, $(k - 1) // 2]]}
              - {name: b, type: Conv2d, args: [$c * 2, $c, [$k, 1], 1, [$(k - 1) // 2, 0]]}
        layers:
          - {name: f, block: factorised, args: {c: 3, k: 7}}
    """)
    assert model.get_submodule("f.a").kernel_size == (1, 7)
    assert model.get_submodule("f.a").padding == (0, 3)
    assert model.get_submodule("f.b").out_channels == 3
    assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 3, 16, 16)


def test_yaml_anchors_and_merge_keys_work():
    model = build_text("""\
        rfalint_spec: 1
        input: {channels: 3, size: [8, 8]}
        layers:
          - {name: a, type: Conv2d, args: &conv {in_channels: 3, out_channels: 3, kernel_size: 3}}
          - {name: b, type: Conv2d, args: {<<: *conv, padding: 1}}
    """)
    assert model.get_submodule("b").padding == (1, 1)


def test_ops_keep_batch_and_follow_train_mode():
    model = build_text(HEAD + """\
  - {name: flat, type: view, args: {shape: [-1]}}
  - {name: drop, type: dropout, args: {p: 0.5}}
""")
    x = torch.ones(3, 3, 16, 16)
    assert model.eval()(x).shape == (3, 8 * 14 * 14)
    assert torch.equal(model(x), model(x))
    train = model.train()(x)
    assert (train == 0).any()


def test_programmatic_rewrite_of_an_exported_spec():
    """What `fix` does: drop the tail of a flat spec, add a new head, build it."""
    from conftest import fixture_model

    data = spec.export(fixture_model("resnet18", width=8), (3, 32, 32), "resnet18")
    cut = next(i for i, layer in enumerate(data["layers"]) if layer["name"].startswith("layer4"))
    data["layers"] = data["layers"][:cut] + [
        {"name": "avgpool", "type": "AdaptiveAvgPool2d", "args": {"output_size": 1},
         "from": data["layers"][cut - 1]["name"]},
        {"name": "flatten", "type": "flatten", "args": {"start_dim": 1}},
        {"name": "fc", "type": "Linear", "args": {"in_features": 32, "out_features": 10}},
    ]
    model = spec.build(data)
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    assert not any(name.startswith("layer4") for name, _ in model.named_modules())


def test_dump_writes_one_layer_per_line_and_reads_back():
    data = {"rfalint_spec": 1, "name": "n", "input": {"channels": 3, "size": [8, 8]},
            "layers": [{"name": "0", "type": "Conv2d", "args": {"in_channels": 3,
                                                              "out_channels": 4,
                                                              "kernel_size": (1, 3)}},
                       {"name": "b.yes", "type": "relu", "from": "0"}],
            "outputs": ["b.yes"]}
    text = spec.dump(data, header="a header")
    assert text.splitlines() == [
        "# a header", "rfalint_spec: 1", "name: n", "input: {channels: 3, size: [8, 8]}",
        "layers:",
        "  - {name: '0', type: Conv2d, args: {in_channels: 3, out_channels: 4, "
        "kernel_size: [1, 3]}}",
        "",
        "  - {name: b.yes, type: relu, from: '0'}",
        "outputs: [b.yes]"]
    model = spec.loads(text)
    assert [n for n, _ in model.named_modules()][1:] == ["0", "b", "b.yes"]


def _yaml_examples(path: Path) -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", path.read_text(), flags=re.S)
    return [b for b in blocks if b.startswith("rfalint_spec")]


@pytest.mark.parametrize("doc", ["README.md", "docs/spec.md"])
def test_documented_examples_build(root, doc):
    examples = _yaml_examples(root / doc)
    assert examples
    for text in examples:
        model = spec.loads(text, doc)
        assert isinstance(model, nn.Module)


def test_every_op_type_is_documented(root):
    from rfalint.spec.ops import OPS

    text = (root / "docs/spec.md").read_text()
    assert [op for op in OPS if f"`{op}`" not in text] == []
