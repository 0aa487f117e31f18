"""From a captured graph to a flat spec, and a verified export of a model.

:func:`from_graph` writes one layer per graph node, in execution order, under the node's
name: leaf modules with the constructor arguments read back from their attributes,
functional ops with the arguments the capture recorded, a module called again as
``reuse``. Whatever it cannot express exactly it refuses with the op and the layer: a
functional op that takes weight tensors, an operand that is a constant or parameter,
arguments the capture could not see, multi-output ops, data-dependent control flow.

:func:`export` adds the round trip: it builds the spec, loads the model's weights into it
and checks the rebuilt graph (names, ops, inputs, shapes, geometry) and the outputs
against the model, so what it returns is known to reproduce the model.
"""

from __future__ import annotations

import copy

from typing import Any

import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten

from rfalint.capture import capture
from rfalint.errors import first_line
from rfalint.graph import Graph, Node
from rfalint.spec.document import FORMAT_VERSION, INPUT
from rfalint.spec.errors import ExportError, SpecError
from rfalint.spec.ops import OPS, REQUIRED, Op
from rfalint.spec.types import TYPES, ArgError, LayerType, convert

# Functional ops that take weights as tensor arguments, and the module that holds them.
_WEIGHTED = {"conv1d": "Conv1d", "conv2d": "Conv2d", "conv3d": "Conv3d",
             "conv_transpose1d": "ConvTranspose1d", "conv_transpose2d": "ConvTranspose2d",
             "conv_transpose3d": "ConvTranspose3d", "linear": "Linear",
             "batch_norm": "BatchNorm2d", "layer_norm": "LayerNorm", "group_norm": "GroupNorm",
             "instance_norm": "InstanceNorm2d", "prelu": "PReLU"}

# Recorded call arguments that carry no meaning for the spec when they have these values:
# op modules never work in place, and dropout follows the module's train/eval mode.
_NEUTRAL = {"training": False, "return_indices": False}


def from_graph(graph: Graph, name: str | None = None) -> dict[str, Any]:
    """The spec dict of a captured graph (flat: no blocks). Raises :class:`ExportError`."""
    if graph.capture_mode == "real":
        raise ExportError("the model's forward reads tensor values (the capture had to run it "
                          "on real data: data-dependent control flow or .item()), which a spec "
                          "cannot express")
    if len(graph.outputs) != 1:
        names = ", ".join(f"'{graph[i].name}'" for i in graph.outputs)
        raise ExportError(f"the model returns {len(graph.outputs)} tensors ({names}); export "
                          "writes single-output models")
    layers: list[dict[str, Any]] = []
    first_call: dict[int, str] = {}
    prev = INPUT
    for node in graph.nodes[1:]:
        _check_dataflow(node)
        entry: dict[str, Any] = {"name": node.name}
        if node.module is not None and id(node.module) in first_call:
            entry["reuse"] = first_call[id(node.module)]
            body: dict[str, Any] = {}
        elif node.module is not None:
            first_call[id(node.module)] = node.name
            entry["type"], body = _module_entry(node)
        else:
            entry["type"], body = _functional_entry(node)
        inputs = [graph[i].name for i in node.inputs]
        if inputs != [prev]:
            entry["from"] = inputs[0] if len(inputs) == 1 else inputs
        if body:
            entry["args"] = body
        layers.append(entry)
        prev = node.name
    spec: dict[str, Any] = {
        "rfalint_spec": FORMAT_VERSION,
        "name": name or graph.model_name,
        "input": {"channels": graph.input_shape[0], "size": list(graph.resolution)},
        "layers": layers,
    }
    output = graph[graph.outputs[0]].name
    if output != prev:
        spec["outputs"] = [output]
    return spec


def _refuse(node: Node, what: str) -> ExportError:
    return ExportError(f"cannot export layer '{node.name}' (op {node.op}): {what}")


def _check_dataflow(node: Node) -> None:
    if len(node.out_shapes) != 1:
        raise _refuse(node, f"it returns {len(node.out_shapes)} tensors; a spec layer returns one")
    if any(slot != 0 for slot in node.input_slots):
        raise _refuse(node, "it reads one of several outputs of another op")


# ----------------------------------------------------------------------------- modules


def _module_entry(node: Node) -> tuple[str, dict[str, Any]]:
    module = node.module
    if isinstance(module, Op):
        params = module.definition.params
        return module.rfalint_op, {k: _plain(v) for k, v in module.kwargs.items()
                           if v != params[k].default}
    layer_type = TYPES.get(type(module).__name__)
    if layer_type is None or layer_type.factory is not type(module):
        raise _refuse(node, f"module type {type(module).__qualname__} is not in the spec's "
                            "allowlist")
    return layer_type.name, _constructor_args(node, layer_type)


def _fingerprint(module: nn.Module) -> tuple:
    """What makes two modules the same layer: public attributes and tensor shapes."""
    attrs = {k: v for k, v in vars(module).items()
             if not k.startswith("_") and k != "training" and not isinstance(v, torch.Tensor)}
    tensors = [(k, tuple(t.shape)) for k, t in
               [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]]
    return type(module), attrs, tensors


def _rebuilds(layer_type: LayerType, args: dict[str, Any], reference: tuple) -> bool:
    with torch.device("meta"):
        try:
            return _fingerprint(layer_type.factory(**args)) == reference
        except Exception:
            return False


def _constructor_args(node: Node, layer_type: LayerType) -> dict[str, Any]:
    """Read constructor arguments back from the module's attributes, check that they
    rebuild the same module, then drop what the defaults or a shorter form give anyway."""
    module = node.module
    args: dict[str, Any] = {}
    for pname, param in layer_type.params.items():
        if not hasattr(module, pname):
            if param.default is REQUIRED:
                raise _refuse(node, f"cannot read its required argument '{pname}'")
            continue  # only shapes initial values (PReLU's init): the weights carry them
        value = getattr(module, pname)
        if param.hint is bool and (value is None or isinstance(value, torch.Tensor)):
            value = value is not None  # bias=True <-> a bias parameter exists
        try:
            args[pname] = convert(_plain(value), param.hint)
        except ArgError as exc:
            raise _refuse(node, f"argument '{pname}': {exc}") from None
    reference = _fingerprint(module)
    key = repr((layer_type.name, args, reference))
    if key in _SHORTEST:  # networks repeat layers: each distinct one is minimised once
        return copy.deepcopy(_SHORTEST[key])
    if not _rebuilds(layer_type, args, reference):
        raise _refuse(node, f"{layer_type.name}(...) with the arguments read from its "
                            "attributes does not rebuild it (a modified or subclassed layer?)")
    for pname in list(args):
        default = layer_type.params[pname].default
        value = args[pname]
        shorter = [c for c in (value[0] if _uniform(value) else None,) if c is not None]
        if default is not REQUIRED:
            trial = {k: v for k, v in args.items() if k != pname}
            if _rebuilds(layer_type, trial, reference):
                del args[pname]
                continue
        for candidate in shorter:
            trial = {**args, pname: candidate}
            if _rebuilds(layer_type, trial, reference):
                args[pname] = candidate
                break
    _SHORTEST[key] = {k: _plain(v) for k, v in args.items()}
    return copy.deepcopy(_SHORTEST[key])


# (layer type, arguments read, fingerprint) -> the shortest arguments that rebuild it
_SHORTEST: dict[str, dict[str, Any]] = {}


def _uniform(value: Any) -> bool:
    return isinstance(value, tuple) and len(value) > 0 and len(set(value)) == 1


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ----------------------------------------------------------------------------- functional


def _functional_entry(node: Node) -> tuple[str, dict[str, Any]]:
    op = node.op
    if op in _WEIGHTED:
        raise _refuse(node, f"functional '{op}' takes its weights as tensors; use the "
                            f"module (nn.{_WEIGHTED[op]}) so that a spec can hold them")
    if op not in OPS:
        raise _refuse(node, f"op '{op}' has no spec type (see the supported ops in "
                            "docs/spec.md)")
    definition = OPS[op]
    if definition.arity is not None and len(node.inputs) != definition.arity:
        if len(node.inputs) < definition.arity:
            raise _refuse(node, f"an operand of '{op}' is not computed from the input (a "
                                "constant, parameter or buffer), which a spec cannot hold")
        raise _refuse(node, f"'{op}' takes {definition.arity} inputs here, got {len(node.inputs)}")
    if op in ("view", "reshape"):
        return op, {"shape": _per_sample_shape(node)}
    args: dict[str, Any] = {}
    for key, value in node.call_args.items():
        if key in definition.params:
            args[key] = value
        elif not _ignorable(key, value):
            raise _refuse(node, f"argument {key}={value!r} has no spec form")
    missing = [k for k in definition.params if k not in args]
    if definition.positional_loss and missing:
        raise _refuse(node, f"its arguments were not recorded ({', '.join(missing)}): the "
                            "capture cannot see positional arguments of C functions; pass them "
                            "by keyword or use the nn module")
    out = {}
    for key, value in args.items():
        param = definition.params[key]
        try:
            value = convert(_plain(value), param.hint)
        except ArgError as exc:
            raise _refuse(node, f"argument '{key}': {exc}") from None
        if value != param.default:
            out[key] = _plain(value)
    return op, out


def _ignorable(key: str, value: Any) -> bool:
    if key == "inplace" or key.startswith("_") or value is None:
        return True
    return key in _NEUTRAL and value == _NEUTRAL[key]


def _per_sample_shape(node: Node) -> list[int]:
    """view/reshape keep the batch dim in a spec; refuse one that moves it."""
    if node.in_shape is None or not node.out_shape or node.out_shape[0] != node.in_shape[0]:
        raise _refuse(node, f"it reshapes {node.in_shape} -> {node.out_shape} across the batch "
                            "dimension; a spec reshapes each sample")
    return list(node.out_shape[1:])


# ----------------------------------------------------------------------------- round trip


def export(model: nn.Module, input_shape: tuple[int, ...], name: str = "model") -> dict[str, Any]:
    """Capture ``model``, write it as a spec and verify the round trip; returns the spec.

    Verified: the rebuilt model holds the same parameters and buffers (names and shapes),
    its graph has the same nodes, ops, inputs, shapes and window geometry (so the same
    receptive fields), and with the model's weights it computes the same output.
    """
    from rfalint.spec import build  # the package API builds from dicts

    graph = capture(model, tuple(input_shape), name=name)
    spec = from_graph(graph, name)
    try:
        built = build(spec)
    except SpecError as exc:
        raise ExportError(f"the exported spec does not rebuild: {exc}") from None
    _same_state(model, built)
    built.load_state_dict(model.state_dict())
    _same_graph(graph, capture(built, tuple(input_shape), name=name))
    _same_output(model, built, tuple(input_shape))
    return spec


def _same_state(model: nn.Module, built: nn.Module) -> None:
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in built.state_dict().items()}
    unused = [k for k in want if k not in have]
    if unused:
        listed = ", ".join(unused[:4]) + (f" and {len(unused) - 4} more" if len(unused) > 4 else "")
        raise ExportError(f"no layer of the exported spec holds {listed} (a module never called "
                          "in eval mode, a tensor passed to a functional op, or a module "
                          "registered twice); the spec would drop them")
    changed = [k for k in have if want.get(k) != have[k]]
    if changed:
        k = changed[0]
        raise ExportError(f"the exported spec changes '{k}': {want.get(k)} -> {have[k]}")


def _node_key(graph: Graph, node: Node) -> tuple:
    return (node.name, node.op, node.kind, [graph[i].name for i in node.inputs],
            node.out_shapes, node.geometry)


def _same_graph(original: Graph, rebuilt: Graph) -> None:
    for a, b in zip(original.nodes, rebuilt.nodes):
        if _node_key(original, a) != _node_key(rebuilt, b):
            raise ExportError(f"the exported spec rebuilds layer '{a.name}' ({a.op}) as "
                              f"'{b.name}' ({b.op}) with different inputs, shape or geometry")
    if len(original) != len(rebuilt):
        raise ExportError(f"the exported spec rebuilds {len(rebuilt)} graph nodes, the model "
                          f"has {len(original)}")


def _same_output(model: nn.Module, built: nn.Module, input_shape: tuple[int, ...]) -> None:
    """Same output on a random batch of 2: batch 2 also catches reshapes that fix the batch."""
    x = torch.randn((2, *input_shape), generator=torch.Generator().manual_seed(0))
    model.eval()
    built.eval()
    with torch.no_grad():
        try:
            want = [t for t in tree_flatten(model(x))[0] if isinstance(t, torch.Tensor)]
        except Exception as exc:
            raise ExportError(f"the model does not run on a batch of 2 ({type(exc).__name__}: "
                              f"{first_line(exc)}), so its "
                              "reshapes cannot be written per sample") from None
        have = built(x)
    if len(want) != 1:
        raise ExportError(f"the model returns {len(want)} tensors; export writes single-output "
                          "models")
    want = want[0]
    if want.shape != have.shape:
        raise ExportError(f"on a batch of 2 the exported spec gives shape {tuple(have.shape)}, "
                          f"the model {tuple(want.shape)} (a reshape that fixes the batch size?)")
    scale = max(1.0, want.abs().max().item()) if want.numel() else 1.0
    if not torch.allclose(want, have, rtol=1e-4, atol=1e-5 * scale):
        raise ExportError("the exported spec does not compute the model's output (an argument "
                          "the capture does not record?)")
