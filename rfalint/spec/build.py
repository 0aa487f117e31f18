"""From a :class:`~rfalint.spec.document.Document` to an ordinary ``nn.Module``.

The module tree follows the layer names: ``layer3.1.conv2`` is the child ``conv2`` of the
scope ``layer3.1``, so ``named_modules()`` and ``state_dict()`` keys are the spec's names
(and, for an exported spec, the original model's: its weights load with
``load_state_dict``). The forward runs the layer list in order.

Before real weights exist the spec is built once on the ``meta`` device: constructor
errors and the parameter limit are checked there, and a forward on a meta input of the
spec's ``input`` size finds layers that do not fit their inputs (channels, merges of
different shapes) without allocating anything.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn

from rfalint.errors import first_line
from rfalint.spec.document import INPUT, Document, Layer
from rfalint.spec.errors import SpecError
from rfalint.spec.limits import Limits


class Step(NamedTuple):
    name: str  # the layer's name; its output is stored under it
    path: str  # the module it calls (differs from name for a reused layer)
    inputs: tuple[str, ...]
    release: tuple[str, ...]  # values no later step reads


class Scope(nn.Module):
    """A namespace of a spec model (``layer1``, ``layer1.0``): holds layers, never called."""


class SpecModel(nn.Module):
    """A model built from a spec: a module tree named after the layers and a forward that
    runs them in the spec's order. Returns one tensor, or a tuple for several outputs."""

    def __init__(self, name: str, steps: list[Step], outputs: list[str]):
        super().__init__()
        self._spec_name = name
        self._spec_steps = steps
        self._spec_outputs = outputs

    def forward(self, x: torch.Tensor):
        values = {INPUT: x}
        for step in self._spec_steps:
            module = self.get_submodule(step.path)
            values[step.name] = module(*(values[s] for s in step.inputs))
            for name in step.release:
                del values[name]
        outputs = tuple(values[name] for name in self._spec_outputs)
        return outputs[0] if len(outputs) == 1 else outputs

    def extra_repr(self) -> str:
        return f"spec={self._spec_name!r}"


def _steps(doc: Document) -> list[Step]:
    last_use = {INPUT: -1}
    for i, layer in enumerate(doc.layers):
        for source in layer.inputs:
            last_use[source] = i
    keep = set(doc.outputs)
    steps = []
    for i, layer in enumerate(doc.layers):
        release = tuple(dict.fromkeys(s for s in layer.inputs if last_use[s] == i and s not in keep))
        steps.append(Step(layer.name, layer.reuse or layer.name, tuple(layer.inputs), release))
    return steps


def _construct(layer: Layer) -> nn.Module:
    try:
        return layer.type.factory(**layer.args)
    except Exception as exc:
        args = ", ".join(f"{k}={v!r}" for k, v in layer.args.items())
        raise SpecError(f"{layer.type.name}({args}) failed: "
                        f"{first_line(exc) or type(exc).__name__}",
                        layer.where, layer.name) from None


def _assemble(doc: Document, limits: Limits) -> SpecModel:
    model = SpecModel(doc.name, _steps(doc), list(doc.outputs))
    params = 0
    for layer in doc.layers:
        if layer.reuse is not None:
            continue
        module = _construct(layer)
        params += sum(p.numel() for p in module.parameters())
        if params > limits.max_params:
            raise SpecError(f"the model has more than {limits.max_params} parameters (the "
                            "limit for a spec)", layer.where, layer.name)
        parent = model
        *scopes, leaf = layer.name.split(".")
        for part in scopes:
            if part not in parent._modules:
                parent.add_module(part, Scope())
            parent = parent._modules[part]
        parent.add_module(leaf, module)
    return model


def _shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape))


# Module attribute -> (input dim it must equal, what to call it): the usual misfit, named
# plainly instead of by the message of the meta kernel.
_EXPECTS = {"in_channels": (1, "channels"), "num_features": (1, "channels"),
            "num_channels": (1, "channels"), "in_features": (-1, "features")}


def _misfit(module: nn.Module, x: torch.Tensor) -> str | None:
    for attr, (dim, what) in _EXPECTS.items():
        want = getattr(module, attr, None)
        if isinstance(want, int) and x.dim() > 1 and x.shape[dim] != want:
            return f"expects {want} input {what}, gets {x.shape[dim]}"
    return None


def check_shapes(model: SpecModel, doc: Document, limits: Limits = Limits()) -> None:
    """Run the meta-built model layer by layer on a meta input of the spec's size."""
    layers = {layer.name: layer for layer in doc.layers}
    model.eval()  # batch norm on a 1x1 map is fine in eval mode, as in the capture
    values = {INPUT: torch.empty((1, *doc.input_shape), device="meta")}
    with torch.no_grad():
        for step in model._spec_steps:
            layer = layers[step.name]
            module = model.get_submodule(step.path)
            inputs = [values[s] for s in step.inputs]
            if len(inputs) == 1:
                source = f"'{step.inputs[0]}' {_shape(inputs[0])}"
                misfit = _misfit(module, inputs[0])
                if misfit is not None:
                    raise SpecError(f"{misfit} from {source}", layer.where, layer.name)
            try:
                out = module(*inputs)
            except Exception as exc:
                if len(inputs) == 1:
                    what = f"input {source} does not fit: {first_line(exc) or type(exc).__name__}"
                else:
                    what = "inputs do not match: " + " and ".join(
                        f"'{s}' {_shape(t)}" for s, t in zip(step.inputs, inputs))
                raise SpecError(what, layer.where, layer.name) from None
            if not isinstance(out, torch.Tensor):
                raise SpecError(f"{layer.type.name} returns a {type(out).__name__}, not one "
                                "tensor (return_indices?)", layer.where, layer.name)
            if out.numel() > limits.max_activation:
                raise SpecError(f"outputs {out.numel()} values {_shape(out)} at the input size, "
                                f"more than the limit of {limits.max_activation}",
                                layer.where, layer.name)
            values[step.name] = out
    _check_in_place(model, doc)


def _check_in_place(model: SpecModel, doc: Document) -> None:
    """An in-place layer overwrites its input: nothing after it may read that input."""
    for i, layer in enumerate(doc.layers):
        module = model.get_submodule(layer.reuse or layer.name)
        if not getattr(module, "inplace", False):
            continue
        source = layer.inputs[0]
        later = next((other.name for other in doc.layers[i + 1:] if source in other.inputs), None)
        if later is None and source in doc.outputs:
            later = "the model output"
        if later is not None:
            raise SpecError(f"works in place (inplace: true) and so changes '{source}', which "
                            f"'{later}' reads afterwards; set inplace: false",
                            layer.where, layer.name)


def build_document(doc: Document, limits: Limits = Limits()) -> SpecModel:
    """Check ``doc`` on meta tensors, then build it with real (freshly initialised) weights."""
    with torch.device("meta"):
        meta = _assemble(doc, limits)
    check_shapes(meta, doc, limits)
    return _assemble(doc, limits)
