"""Capture a model's dataflow graph by running its forward once.

The tracer is a ``TorchFunctionMode`` plus module hooks: functional calls (``F.conv2d``,
``x + y``, ``torch.cat``, ``F.interpolate``) are seen by the mode, leaf modules from the op
table by their hooks, and Python control flow simply runs. Tensors are tracked by object
identity, so in-place ops, modules called twice and tuple/dict outputs need no special
cases. The forward runs on fake tensors first (no compute, no activation memory); models
whose control flow reads tensor values are re-run on a real dummy input.

Example::

    >>> import torch.nn as nn
    >>> from rfalint.capture import capture
    >>> g = capture(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()), (3, 32, 32))
    >>> [(n.name, n.op, n.out_shape) for n in g]
    [('input', 'input', (1, 3, 32, 32)), ('0', 'Conv2d', (1, 8, 30, 30)), ('1', 'ReLU', (1, 8, 30, 30))]
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
from torch.func import functional_call
from torch.nn.modules.lazy import LazyModuleMixin
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_flatten_with_path

from rfalint import ops  # the registry (read at call time: rfalint.ops imports geometry)
from rfalint.capture import geometry, shapes
from rfalint.capture.gates import mark_gates
from rfalint.capture.tape import ATOMS, Mismatch, Tape, bind, fill
from rfalint.errors import CollapseError, ModelError
from rfalint.graph import Graph, Kind, Node

if TYPE_CHECKING:
    from rfalint.ops import OpRecord, Registry


# Calls that never carry tensor dataflow worth a node (shape queries, printing, ...).
IGNORED = {"zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like",
           "randint_like", "new_zeros", "new_ones", "new_empty", "new_full", "new_tensor",
           "size", "dim", "numel", "shape", "get", "item", "tolist", "__get__", "__len__",
           "__format__", "__repr__", "__bool__", "__iter__", "is_contiguous", "data_ptr",
           "stride", "storage_offset", "element_size", "is_floating_point", "__contains__",
           "__hash__", "__index__", "__int__", "__float__", "numpy", "backward", "register_hook",
           "retain_grad", "set_", "device", "dtype", "is_complex", "_set_grad_enabled"}


@dataclass
class _ModelIndex:
    """What a recorder needs to know about the model, computed once per capture (and
    shared by the replays of that capture)."""

    model: nn.Module
    registry: Registry
    names: dict[nn.Module, str]
    # Decided before any forward is patched for speed, so patching cannot change it.
    leaves: dict[nn.Module, tuple[OpRecord, dict[str, Any]]]

    @classmethod
    def of(cls, model: nn.Module, registry: Registry) -> "_ModelIndex":
        return cls(model, registry, {m: n for n, m in model.named_modules()},
                   {m: (record, record.read_args(m)) for m in model.modules()
                    if (record := registry.module_record(m))})


class _Recorder(TorchFunctionMode):
    """Turns every tensor-producing call into a Node; with a ``tape``, also records every
    call and module call the model's Python made, for a replay (:class:`Captures`)."""

    def __init__(self, index: _ModelIndex, spatial_dims: int, shape_only: bool = False,
                 tape: Tape | None = None, hooks: bool = True):
        super().__init__()
        self.index = index
        self.registry = index.registry
        self.spatial_dims = spatial_dims
        self.shape_only = shape_only  # meta/fake tensors: values are never read
        self.fake_tensor_type: type | None = None  # set by a fake-tensor run
        self.tape = tape
        self.quiet = 0  # > 0 while rfalint's own code runs inside the mode: not taped
        self.nodes: list[Node] = []
        self.producer: dict[int, tuple[int, int]] = {}  # id(tensor) -> (node id, output slot)
        self.alive: list[torch.Tensor] = []  # keeps ids unique while capturing
        self.names = index.names
        self.leaves = index.leaves
        self.scope: list[str] = []
        # per open module call: (module, leaf_depth and quiet before it), for unwinding
        self.frames: list[tuple[nn.Module, int, int]] = []
        self.leaf_depth = 0
        self.leaf_inputs: list[Any] = []
        self.used_names: Counter[str] = Counter()
        self.lost_at = ""  # first module whose output lost track of the input
        # per module call torch started: [module, opened by _pre, closed by _post]
        self.calls: list[list] = []
        self.handles = []
        if hooks:
            for module in index.model.modules():
                self.handles += [
                    module.register_forward_pre_hook(self._start, prepend=True),
                    module.register_forward_pre_hook(self._pre_hook, with_kwargs=True),
                    module.register_forward_hook(self._post_hook, with_kwargs=True),
                    module.register_forward_hook(self._close_failed, with_kwargs=True,
                                                 always_call=True)]

    def taping(self) -> bool:
        return self.tape is not None and not self.quiet

    # ------------------------------------------------------------------ bookkeeping

    def remove_hooks(self) -> None:
        for handle in self.handles:
            handle.remove()

    def current_scope(self) -> str:
        return self.scope[-1] if self.scope else ""

    def _unique(self, name: str, is_module: bool) -> str:
        """A module called again gets ``name@2``; a repeated functional op ``add_1`` (as fx)."""
        count = self.used_names[name]
        self.used_names[name] += 1
        if count == 0:
            return name
        unique = f"{name}@{count + 1}" if is_module else f"{name}_{count}"
        while unique in self.used_names:
            count += 1
            unique = f"{name}@{count + 1}" if is_module else f"{name}_{count}"
        self.used_names[unique] += 1
        return unique

    def _tensor_inputs(self, tree: Any) -> list[torch.Tensor]:
        return [t for t in _tensors(tree) if id(t) in self.producer]

    def _info(self, t: torch.Tensor) -> geometry.TensorInfo:
        node_id, _ = self.producer[id(t)]
        return geometry.TensorInfo(tuple(t.shape), self.nodes[node_id].layout)

    def add_input(self, x: torch.Tensor) -> None:
        layout = tuple(range(x.dim() - self.spatial_dims, x.dim()))
        self._add(Node(0, "input", "input", Kind.INPUT, [], [tuple(x.shape)], layout), [x])

    def _add(self, node: Node, outputs: list[torch.Tensor]) -> Node:
        node.id = len(self.nodes)
        self.nodes.append(node)
        for slot, t in enumerate(outputs):
            self.producer[id(t)] = (node.id, slot)
            self.alive.append(t)
        return node

    def _record(self, op: str, type_name: str, name: str, inputs: list[torch.Tensor],
                args: dict[str, Any], result: Any, module: nn.Module | None) -> None:
        outputs = _tensors(result)
        if not outputs:
            return
        infos = [self._info(t) for t in inputs]
        call = geometry.Call(op, infos, args, [tuple(t.shape) for t in outputs])
        record = self.registry.op(op)
        if all(info.layout is None for info in infos):
            effect = geometry.nonspatial(call)  # head or gate: positions are already gone
        elif record is None:
            effect = geometry.unknown(call, f"unsupported op '{op}'")
        else:
            effect = record.geometry(call)
        sources = [self.producer[id(t)] for t in inputs]
        node = Node(
            id=-1,
            name=self._unique(name, module is not None),
            op=type_name,
            kind=effect.kind,
            inputs=[s[0] for s in sources],
            input_slots=[s[1] for s in sources],
            out_shapes=call.out_shapes,
            layout=effect.layout,
            in_shape=infos[0].shape,
            geometry=effect.geometry,
            module=module,
            call_args={k: v for k, v in args.items() if not _holds_tensor(v)},
            gates=effect.gates,
            scope=self.current_scope(),
            note=effect.note,
            aliases=_aliases(inputs, outputs, module),
        )
        self._add(node, outputs)

    # ------------------------------------------------------------------ module hooks

    def _start(self, module: nn.Module, args: tuple) -> None:
        """The first pre-hook of every module call: the call's own bookkeeping entry, so
        that a call whose later pre-hooks or forward raise is closed (_close_failed)."""
        self.calls.append([module, False, False])

    def _pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.calls[-1][1] = True
        self._pre(module, args, kwargs)

    def _post_hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        self.calls[-1][2] = True
        self._post(module, args, kwargs, output)

    def _pre(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self.taping():
            self.tape.record("pre", module, args, kwargs)
        self.frames.append((module, self.leaf_depth, self.quiet))
        name = self.names.get(module, self.current_scope())
        self.scope.append(name)
        if self.leaf_depth or module in self.leaves:
            self.leaf_depth += 1
            if self.leaf_depth == 1:
                self.leaf_inputs.append(self._tensor_inputs((args, kwargs)))

    def _post(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        self.frames.pop()
        if self.taping():
            self.tape.record("post", module, args, kwargs, output)
        self.quiet += 1  # the shapes read below are rfalint's, not the model's
        try:
            self._leave(module, args, kwargs, output)
        finally:
            self.quiet -= 1

    def _close_failed(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        """Called after every forward, also one that raised. After a normal one ``_post``
        has closed the call already; after one that raised, close it here: the model's
        Python may catch the exception and go on (``try: y = conv(x) except ...``)."""
        if not self.calls or self.calls[-1][0] is not module:
            return  # a global pre-hook raised before this call's entry was made
        _, opened, closed = self.calls.pop()
        if not opened or closed:
            return  # a pre-hook raised before rfalint's, or the forward returned
        error = sys.exc_info()[1]
        if error is not None and not hasattr(error, "rfalint_scope"):
            error.rfalint_scope = self.current_scope()  # type: ignore[attr-defined]
        if self.taping():
            self.tape.record("abort", module, (), {})
        self.abort(module)

    def abort(self, module: nn.Module) -> None:
        """Forget the open call of ``module``, whose forward raised."""
        _, leaf_depth, quiet = self.frames.pop()
        self.scope.pop()
        if self.leaf_depth and not leaf_depth:
            self.leaf_inputs.pop()
        self.leaf_depth, self.quiet = leaf_depth, quiet

    def _leave(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        name = self.scope.pop()
        if not self.leaf_depth:
            self._check_traced(name, args, kwargs, output)
            return
        self.leaf_depth -= 1
        if self.leaf_depth:
            return
        inputs = self.leaf_inputs.pop()
        if not inputs:
            return
        record, margs = self.leaves[module]
        shown = record.op if record.shows_op else type(module).__name__
        self._record(record.op, shown, name or type(module).__name__.lower(), inputs, margs,
                     output, module)

    def _check_traced(self, name: str, args: tuple, kwargs: dict, output: Any) -> None:
        """Remember the first module that took a traced tensor and returned only untraced
        ones: if no output can be traced to the input, the error names it."""
        if self.lost_at or not self._tensor_inputs((args, kwargs)):
            return
        returned = _tensors(output)
        if returned and not any(id(t) in self.producer for t in returned):
            self.lost_at = name or "the top-level module"

    def _call(self, func, args: tuple, kwargs: dict) -> Any:
        """Run ``func``; without data, shape-preserving ops just return a tensor of the
        input's shape (meta kernels of activations and norms go through slow decompositions)."""
        raw = getattr(func, "__name__", "")
        record = self.registry.resolve(raw) if self.shape_only and args else None
        if record is not None and (record.shape_preserving or record.shape is not None) \
                and self._without_data(args, kwargs):
            if record.shape_preserving and isinstance(args[0], torch.Tensor):
                return args[0] if _aliases_input(func, record.name, raw, args, kwargs) \
                    else shapes.elementwise_like(args[0])
            if record.shape is not None and "out" not in kwargs:
                result = _shape_only_result(func, record, raw, args, kwargs)
                if result is not None:
                    return result
        return func(*args, **kwargs)

    def _without_data(self, args: tuple, kwargs: dict) -> bool:
        """Whether every tensor operand is a meta or fake one. A CPU tensor made inside
        the forward (``torch.tensor(x.shape[-1])``) has values the model's Python may read:
        its ops run for real."""
        fake = self.fake_tensor_type
        return all(t.is_meta or fake is not None and isinstance(t, fake)
                   for t in _tensors((args, kwargs)))

    def _mark_head_failure(self, exc: Exception, args: tuple, kwargs: dict) -> None:
        """Remember the failing op's inputs when they are all past the readout.

        A classifier built for one resolution (flatten + Linear(512 * 7 * 7)) fails at
        another, but the feature extractor before it was fully captured and can be analysed.
        """
        if hasattr(exc, "rfalint_head_inputs") or _needs_real_data(exc):
            return
        inputs = self.leaf_inputs[-1] if self.leaf_depth else self._tensor_inputs((args, kwargs))
        if inputs and all(self.nodes[self.producer[id(t)][0]].layout is None for t in inputs):
            exc.rfalint_head_inputs = inputs  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ functional ops

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        try:
            result = self._call(func, args, kwargs)
        except Exception as exc:
            self._mark_head_failure(exc, args, kwargs)
            if self.taping():  # kept only if the model's Python catches it
                self.tape.record("fail", func, args, kwargs, type(exc))
                self.tape.last_failure, self.tape.last_message = exc, str(exc)
            raise
        if self.taping():
            self.tape.record("call", func, args, kwargs, result)
        if self.leaf_depth:
            return result
        raw = getattr(func, "__name__", "")
        if raw == "__get__" and isinstance(result, torch.Tensor):
            # an attribute that is a tensor (x.real, x.data, x.mT): named after it
            raw = getattr(getattr(func, "__self__", None), "__name__", raw)
        if raw in IGNORED or raw.startswith("_") and not raw.startswith("__"):
            return result
        op = self.registry.normalise(raw)
        if op in IGNORED:
            return result
        inputs = self._tensor_inputs((args, kwargs))
        if not inputs:
            return result
        bound = _bind(self.registry.op(op), args, kwargs)
        if op in ("max", "min") and isinstance(bound.get("dim"), torch.Tensor):
            op = "maximum" if op == "max" else "minimum"
        scope = self.current_scope()
        name = f"{scope}.{op}" if scope else op
        # x[idx] = y returns None: the written tensor is the op's output from now on.
        written = args[0] if raw == "__setitem__" else result
        self._record(op, op, name, inputs, bound, written, None)
        return result


def _aliases(inputs: list[torch.Tensor], outputs: list[torch.Tensor],
             module: nn.Module | None) -> bool:
    """Whether the op allocated nothing: it wrote into its input (``relu_``, ``x += y``,
    ``ReLU(inplace=True)``) or
    returned views of it (``view``, ``flatten``, slices, ``chunk``)."""
    if module is not None and getattr(module, "inplace", False) is True:
        return True
    first = inputs[0]
    return all(out is first or out._base is not None and
               out._base is (first._base if first._base is not None else first)
               for out in outputs)


def _holds_tensor(value: Any) -> bool:
    return bool(_tensors(value))


def _tensors(tree: Any) -> list[torch.Tensor]:
    """The tensors in a call's arguments or result, in pytree order (what
    ``tree_flatten`` gives for lists, tuples and dicts, which is also used for any other
    container, such as a registered dataclass)."""
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, ATOMS):
        return []
    if type(tree) in (list, tuple, dict):
        found = []
        for item in (tree.values() if type(tree) is dict else tree):
            found += _tensors(item)
        return found
    return [t for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]


def _bind(record: OpRecord | None, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Bind positional args to names the handlers read; derive kernel sizes from weights."""
    if record is None:
        return dict(kwargs)
    if record.name == "permute":
        dims = args[1] if len(args) == 2 and isinstance(args[1], (list, tuple)) else args[1:]
        return {"dims": tuple(kwargs.get("dims", dims))}
    bound = {**dict(zip(record.signature, args)), **kwargs}
    weight = bound.get("weight")
    if isinstance(weight, torch.Tensor) and record.name.startswith("conv"):
        bound["kernel_size"] = tuple(weight.shape[2:])
    return bound


def _dummy_input(shape: tuple[int, ...], mode: str) -> torch.Tensor:
    if mode == "meta":
        return torch.empty((1, *shape), device="meta")
    if mode == "fake":
        from torch._subclasses.fake_tensor import FakeTensorMode

        with FakeTensorMode(allow_non_fake_inputs=True):
            return torch.empty((1, *shape))
    return torch.randn((1, *shape), generator=torch.Generator().manual_seed(0))


@contextlib.contextmanager
def _quiet_fake_tensors():
    """Fake-tensor failures are handled by rfalint; torch would also log them at ERROR."""
    log = logging.getLogger("torch._subclasses.fake_tensor")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def _forward(model: nn.Module, x: torch.Tensor, mode: str, recorder: _Recorder,
             meta_state: dict[str, torch.Tensor]) -> Any:
    """One forward in ``mode``: "meta" (parameters swapped for ``meta_state``, no
    compute), "fake" (FakeTensorMode: also copes with tensors created on the CPU inside
    forward) or "real"."""
    if mode == "real":
        return model(x)
    with _shape_only_forwards(recorder):
        if mode == "meta":
            # tie_weights=False: with a submodule registered under two names (``self.head
            # = self.blocks[-1]``) torch's tying would restore the meta tensors, not the
            # model's own, and leave the user's model on the meta device
            return functional_call(model, meta_state, (x,), tie_weights=False)
        with x.fake_mode:
            return model(x)


def _run(index: _ModelIndex, input_shape: tuple[int, ...], mode: str, taped: bool = False,
         tapes: list[Tape] | None = None) -> tuple[_Recorder, Any, str]:
    """Returns the recorder, the forward's output and, when only the head failed, why.
    With ``taped``, the recorder keeps a tape (appended to ``tapes``), finished when the
    forward ran to its end."""
    model = index.model
    x = _dummy_input(input_shape, mode)
    # made before the recorder's mode is on, so these calls are not traced (and cost nothing)
    meta_state = {name: t.detach().to("meta") for name, t in
                  (*model.named_parameters(), *model.named_buffers())} if mode == "meta" else {}
    tape = Tape(x, _constants(model, meta_state)) if taped else None
    recorder = _Recorder(index, len(input_shape) - 1, shape_only=mode != "real", tape=tape)
    if mode == "fake":
        from torch._subclasses.fake_tensor import FakeTensor  # imported by that run anyway

        recorder.fake_tensor_type = FakeTensor
    if tape is not None and tapes is not None:
        tapes.append(tape)
    recorder.add_input(x)
    try:
        with torch.no_grad(), recorder:
            out = _forward(model, x, mode, recorder, meta_state)
    except SystemExit as exc:
        raise ModelError(f"the model's forward called sys.exit({exc.code}) at "
                         f"'{recorder.current_scope() or 'the top-level forward'}'") from None
    except Exception as exc:
        if tape is not None:
            tape.escaped = exc
        # where it was raised: the module calls are closed by now
        scope = getattr(exc, "rfalint_scope", recorder.current_scope())
        head_inputs = getattr(exc, "rfalint_head_inputs", None)
        if head_inputs is not None:
            return recorder, head_inputs, f"'{scope}': {_first_line(exc)}"
        exc.rfalint_scope = scope  # type: ignore[attr-defined]
        raise
    finally:
        recorder.remove_hooks()
    if recorder.tape is not None:
        recorder.tape.finish(out)
    return recorder, out, ""


def _constants(model: nn.Module, meta_state: dict[str, torch.Tensor]
               ) -> dict[int, torch.Tensor]:
    """The tensors that exist before the forward, by id: the parameters and buffers the
    forward sees, and tensors kept as plain module attributes (held, so that no tensor
    made during the forward can take a freed one's id)."""
    found = {id(t): t for t in meta_state.values()}
    for module in model.modules():
        found.update((id(v), v) for v in vars(module).values() if isinstance(v, torch.Tensor))
    return found


def _shape_only_result(func, record: OpRecord, raw: str, args: tuple, kwargs: dict) -> Any:
    """The op's output from its shape function (rfalint.capture.shapes), or None to run
    its kernel."""
    if record.geometry is geometry.merge:
        result = record.shape({"operands": args, "kwargs": kwargs})
        if result is not None and _aliases_input(func, record.name, raw, args, kwargs):
            # x += y returns x itself, which must keep its shape
            return args[0] if result.shape == args[0].shape else None
        return result
    if _aliases_input(func, record.name, raw, args, kwargs):
        return None
    return record.shape(_bind(record, args, kwargs))


def _aliases_input(func, op: str, raw: str, args: tuple, kwargs: dict) -> bool:
    """Whether the real op returns its input object (in-place ops, dropout when not
    training), which the tracer must see exactly as on real data."""
    if raw.endswith("_") or raw in ("__iadd__", "__isub__", "__imul__", "__itruediv__"):
        return True
    bound = _bound_args(func, args, kwargs)
    if bound.get("inplace"):
        return True
    return op.startswith(_DROPOUTS) and not bound.get("training", bound.get("train", True))


_DROPOUTS = ("dropout", "alpha_dropout", "feature_alpha_dropout")


def _bound_args(func, args: tuple, kwargs: dict) -> dict[str, Any]:
    names = _parameter_names(func)
    return {**dict(zip(names, args)), **kwargs}


@functools.lru_cache(maxsize=None)
def _parameter_names(func) -> tuple[str, ...]:
    try:
        return tuple(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return ()


def _returns_input(module: nn.Module) -> bool:
    """Leaf modules whose real forward returns the input object itself (eval mode)."""
    return isinstance(module, _ALIASING_MODULES) or getattr(module, "inplace", False) is True


_ALIASING_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                     nn.AlphaDropout, nn.FeatureAlphaDropout)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


# Leaves whose kernels keep only a channels-last layout; the others keep any dense one.
_NORM_LAYOUT = (nn.modules.batchnorm._BatchNorm, nn.ChannelShuffle)


@contextlib.contextmanager
def _shape_only_forwards(recorder: _Recorder):
    """Replace shape-preserving leaf forwards (exact activation, norm and dropout types and
    subclasses that override nothing) by an empty tensor of the input's shape, or the input
    itself where the real forward returns it, while running without data. Hooks still fire
    (the module is still called), so the graph is unchanged; the recorder's own shortcut
    covers the same ops called functionally."""
    patched = [module for module, (record, _) in recorder.leaves.items()
               if recorder.registry.op(record.op).shape_preserving
               and not _batch_statistics(module)]
    for module in patched:
        replacement = _identity if _returns_input(module) else \
            shapes.empty_like if isinstance(module, _NORM_LAYOUT) else shapes.elementwise_like
        module.forward = _replacement(recorder, module, replacement)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


def _batch_statistics(module: nn.Module) -> bool:
    """A batch norm without running statistics normalises with the batch's even in eval
    mode, which fails on one value per channel: its real forward runs, and the functional
    op's shape function checks that."""
    return isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is None


def _replacement(recorder: _Recorder, module: nn.Module, forward):
    """``forward`` as ``module``'s forward: what it does inside is rfalint's, not the
    model's, so it is not taped; its output is, as a "forward" event, before the hooks that
    may read it run. Called directly (``bn.forward(x)``, no hooks: no node), it runs the
    module's own forward instead, whose functional call the recorder sees. Arguments are
    bound as the real forward binds them (``bn(input=x)`` works, ``relu(x, 3)`` fails)."""
    signature = _forward_signature(type(module))

    def replaced(*args: Any, **kwargs: Any) -> Any:
        if not recorder.frames or recorder.frames[-1][0] is not module:
            return type(module).forward(module, *args, **kwargs)
        bound = signature.bind(module, *args, **kwargs)
        x = bound.args[1] if len(bound.args) > 1 else next(iter(bound.kwargs.values()))
        recorder.quiet += 1
        try:
            output = forward(x)
        finally:
            recorder.quiet -= 1
        if recorder.taping():
            recorder.tape.record("forward", forward, (x,), {}, output)
        return output
    return replaced


@functools.lru_cache(maxsize=None)
def _forward_signature(cls: type) -> inspect.Signature:
    return inspect.signature(cls.forward)


def _needs_real_data(exc: Exception) -> bool:
    """Fake tensors have shapes but no values: only failures about values warrant a real run.
    Shape errors would fail the same way on real data, so they are reported at once."""
    from torch._subclasses import fake_tensor

    fake_only = (fake_tensor.DataDependentOutputException, fake_tensor.DynamicOutputShapeException,
                 fake_tensor.UnsupportedOperatorException)
    if isinstance(exc, fake_only):
        return True
    text = str(exc).lower()
    return any(hint in text for hint in ("data-dependent", "data dependent", "fake", "meta tensor",
                                         "data pointer", "cannot access storage", "item()",
                                         "numpy()"))


def capture(model: nn.Module, input_shape: tuple[int, ...], name: str = "model",
            mode: str = "auto", registry: Registry | None = None) -> Graph:
    """Run ``model`` once on a dummy input of ``(C, *spatial)`` and return its graph.

    ``mode="auto"`` tries the cheapest forward that works: meta tensors (shapes only), then
    fake tensors (shapes only, but tolerant of CPU tensors made inside forward), then real
    data for forwards whose control flow reads tensor values. Shape errors end the search.
    ``mode="real"`` runs on real data at once. The test suite asserts that both give the
    same graph: the shape-only shortcuts must never change what is captured.
    ``registry`` says which ops and leaf modules rfalint knows (:mod:`rfalint.ops`).
    """
    if mode not in ("auto", "real"):
        raise ValueError(f"capture mode must be 'auto' or 'real', got {mode!r}")
    return _capture(model, input_shape, name, mode, registry, taped=False)[0]


@dataclass
class _Recording:
    """A meta-tensor capture's tape, with what a replay needs, and the failures (event
    index, exception type) seen to end the forward when a replay reaches them."""

    tape: Tape
    index: _ModelIndex
    spatial_dims: int
    uncaught: set[tuple[int, type]] = field(default_factory=set)


@dataclass
class _Failure:
    """A replay stopped by a call that fails at this shape (not by a mismatch)."""

    event: int
    error: Exception
    recorder: _Recorder


class Captures:
    """The graphs of one model at many input shapes (a resolution sweep), each distinct
    shape behaviour captured once: the other shapes replay a capture's recording of the
    model's calls on tensors of their size (:mod:`rfalint.capture.tape`). Any size or flag
    the model's Python read that comes out differently means another behaviour, which is
    captured and recorded in turn. A call that fails at a shape is captured once more, to
    see whether the Python catches the failure; later shapes that fail at the same call
    with the same exception type reuse what that capture showed.

    ``at`` gives what :func:`capture` gives (and raises what it raises); ``captures`` and
    ``replays`` count the forwards of the model and the replays. The model must not change
    between calls (new hooks, other weights or attributes): make a new ``Captures`` then.

    Example::

        >>> import torch.nn as nn
        >>> from rfalint.capture import Captures
        >>> graphs = Captures(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()))
        >>> [graphs.at((3, s, s))[1].out_shape for s in (32, 64)]
        [(1, 8, 30, 30), (1, 8, 62, 62)]
        >>> graphs.captures, graphs.replays
        (1, 1)
    """

    # A model that reads its sizes makes a new recording at every shape; trying only the
    # few most recently useful ones keeps failed replays from costing more than they save.
    TRIED = 3

    def __init__(self, model: nn.Module, name: str = "model", registry: Registry | None = None):
        self.model, self.name, self.registry = model, name, registry
        self.captures = self.replays = 0
        self._recordings: list[_Recording] = []  # most recently useful first

    def at(self, input_shape: tuple[int, ...]) -> Graph:
        for i, recording in enumerate(self._recordings[:self.TRIED]):
            outcome = _replay(recording, input_shape, self.name)
            if outcome is None:
                continue
            if isinstance(outcome, _Failure):
                key = (outcome.event, type(outcome.error))
                if key not in recording.uncaught:
                    return self._capture(input_shape, recording, key)
            self._recordings.insert(0, self._recordings.pop(i))
            self.replays += 1
            if isinstance(outcome, _Failure):
                return _failed_graph(outcome, input_shape, self.name)
            return outcome
        return self._capture(input_shape)

    def _capture(self, input_shape: tuple[int, ...], failed: _Recording | None = None,
                 key: tuple[int, type] | None = None) -> Graph:
        """Capture with a recording; where a replay of ``failed`` stopped at ``key``, also
        learn whether the model's Python lets that failure end the forward."""
        self.captures += 1
        meta_tapes: list[Tape] = []
        learn = failed is not None
        try:
            graph, recording = _capture(self.model, input_shape, self.name, "auto",
                                        self.registry, taped=True, meta_tapes=meta_tapes)
        except ModelError:
            if learn and _ends_at(meta_tapes, key, head=False):
                failed.uncaught.add(key)
            raise
        if learn and graph.head_error and _ends_at(meta_tapes, key, head=True):
            failed.uncaught.add(key)
        if recording is not None:
            self._recordings.insert(0, recording)
            del self._recordings[self.TRIED:]
        return graph


def _ends_at(meta_tapes: list[Tape], key: tuple[int, type], head: bool) -> bool:
    """Whether the capture's meta run stopped with the failure ``key`` and the capture's
    outcome is that failure's (a failing head when ``head``, else an error): the same calls
    up to it (a replay checked them), then that very exception object left the forward
    (a forward that caught it, or raised another, would not), closing the module calls it
    passed. Fake tensors or real data may not fail there; the caller checks the outcome."""
    if not meta_tapes:
        return False
    tape, (event, error) = meta_tapes[0], key
    events = tape.events
    return not tape.broken and len(events) > event and events[event].kind == "fail" \
        and events[event].result is error and tape.escaped is not None \
        and tape.escaped is tape.last_failure and str(tape.escaped) == tape.last_message \
        and hasattr(tape.escaped, "rfalint_head_inputs") == head \
        and all(e.kind == "abort" for e in events[event + 1:])


def _replay(recording: _Recording, input_shape: tuple[int, ...], name: str
            ) -> Graph | _Failure | None:
    """The graph a capture at ``input_shape`` gives, by replaying ``recording`` on meta
    tensors of that shape; a :class:`_Failure` where a call fails at this shape; None where
    the model's Python could see a difference (a size or flag it read differs)."""
    tape = recording.tape
    if len(input_shape) != recording.spatial_dims + 1:
        return None
    x = _dummy_input(input_shape, "meta")
    recorder = _Recorder(recording.index, recording.spatial_dims, shape_only=True, hooks=False)
    recorder.add_input(x)
    values: list[Any] = [None] * tape.size
    values[0] = x
    seen = {id(x)}
    with torch.no_grad():
        for position, event in enumerate(tape.events):
            args, kwargs = fill(event.args, values), fill(event.kwargs, values)
            try:
                if event.kind == "call":
                    try:
                        result = recorder.__torch_function__(event.target, (), args, kwargs)
                    except Exception as exc:
                        exc.rfalint_scope = recorder.current_scope()  # type: ignore[attr-defined]
                        return _Failure(position, exc, recorder)
                    bind(event.result, result, values, seen)
                elif event.kind == "fail":
                    _replay_failure(recorder, event.target, args, kwargs, event.result)
                elif event.kind == "pre":
                    recorder._pre(event.target, args, kwargs)
                elif event.kind == "abort":
                    recorder.abort(event.target)
                elif event.kind == "forward":
                    bind(event.result, event.target(*args, **kwargs), values, seen)
                else:
                    recorder._post(event.target, args, kwargs, fill(event.result, values))
            except Exception:  # a Mismatch, or rfalint's hooks failing on what differs
                return None
    return _graph(recorder, fill(tape.output, values), input_shape, name, "meta", "")


def _failed_graph(failure: _Failure, input_shape: tuple[int, ...], name: str) -> Graph:
    """What a capture gives when the forward fails at ``failure``: the graph up to a
    failing head, or the error."""
    error = failure.error
    head_inputs = getattr(error, "rfalint_head_inputs", None)
    if head_inputs is None:
        raise _failure(error, input_shape) from error
    head_error = f"'{error.rfalint_scope}': {_first_line(error)}"
    return _graph(failure.recorder, head_inputs, input_shape, name, "meta", head_error)


def _replay_failure(recorder: _Recorder, func, args: tuple, kwargs: dict,
                    expected: type) -> None:
    """A call whose failure the model's Python caught must fail the same way again."""
    try:
        recorder.__torch_function__(func, (), args, kwargs)
    except Exception as exc:
        if type(exc) is expected:
            return
        raise Mismatch(f"a call raised {type(exc).__name__}, the capture saw {expected.__name__}")
    raise Mismatch(f"a call that raised {expected.__name__} in the capture succeeded")


def _capture(model: nn.Module, input_shape: tuple[int, ...], name: str, mode: str,
             registry: Registry | None, taped: bool = False,
             meta_tapes: list[Tape] | None = None) -> tuple[Graph, _Recording | None]:
    """:func:`capture`; with ``taped``, also the recording of a meta run that ran to its
    end and fits a replay, and the meta run's tape (also when it failed) in ``meta_tapes``."""
    index = _ModelIndex.of(model, registry or ops.DEFAULT)
    model.eval()
    if mode == "auto" and _uninitialised_lazy(model):
        mode = "real"  # a shape-only run would make the parameters on meta, in the model
    with _quiet_fake_tensors():
        if mode == "auto":
            recorder, out, head_error, mode = _run_shape_only(index, input_shape, taped,
                                                              meta_tapes)
    if mode == "real":
        try:
            recorder, out, head_error = _run(index, input_shape, "real")
        except Exception as exc:
            raise _failure(exc, input_shape) from exc
    graph = _graph(recorder, out, input_shape, name, mode, head_error)
    tape = recorder.tape
    if tape is None or tape.broken or head_error or mode != "meta":
        return graph, None
    return graph, _Recording(tape, index, len(input_shape) - 1)


def _uninitialised_lazy(model: nn.Module) -> bool:
    return any(isinstance(m, LazyModuleMixin) and m.has_uninitialized_params()
               for m in model.modules())


def _graph(recorder: _Recorder, out: Any, input_shape: tuple[int, ...], name: str, mode: str,
           head_error: str) -> Graph:
    """The graph of a finished forward: the nodes its outputs depend on, outputs named."""
    named: dict[int, str] = {}
    for path, t in tree_flatten_with_path(out)[0]:
        if isinstance(t, torch.Tensor) and id(t) in recorder.producer:
            named.setdefault(recorder.producer[id(t)][0], _output_name(path))
    outputs = sorted(named)
    if not outputs:
        raise ModelError(_lost_output(recorder))
    nodes, live_outputs = _live(recorder.nodes, outputs)
    renumbered = dict(zip(outputs, live_outputs))
    graph = Graph(nodes, tuple(input_shape), live_outputs, model_name=name, capture_mode=mode,
                  head_error=head_error,
                  output_names={renumbered[old]: label for old, label in named.items()},
                  registry=recorder.registry)
    mark_gates(graph)
    return graph


def _output_name(path: tuple) -> str:
    """Where in the forward's return value an output sits: "0", "1", "p3", "maps.0"."""
    parts = [str(getattr(key, "key", getattr(key, "idx", getattr(key, "name", key))))
             for key in path]
    return ".".join(parts) or "0"


def _run_shape_only(index: _ModelIndex, input_shape: tuple[int, ...], taped: bool,
                    meta_tapes: list[Tape] | None):
    """Meta tensors, else fake tensors; mode "real" when the forward reads values."""
    try:
        recorder, out, head_error = _run(index, input_shape, "meta", taped, meta_tapes)
        if not head_error:
            return recorder, out, head_error, "meta"
    except Exception:
        pass  # may be meta's fault (a CPU tensor made inside forward): fake tensors decide
    try:
        recorder, out, head_error = _run(index, input_shape, "fake")
    except ModelError:
        raise
    except Exception as exc:
        if not _needs_real_data(exc):
            raise _failure(exc, input_shape) from exc
        return None, None, "", "real"
    return recorder, out, head_error, "fake"


def _lost_output(recorder: "_Recorder") -> str:
    """Say where tracing stopped: the last module with a traced output, and the first
    module that took a traced tensor and returned untraced ones."""
    message = "the model's forward returned no tensor computed from its input"
    last = next((n for n in reversed(recorder.nodes) if n.id), None)
    details = []
    if last is not None:
        details.append(f"the last traced tensor came from '{last.name}' ({last.op})")
    if recorder.lost_at:
        details.append(f"'{recorder.lost_at}' returned a tensor not computed from its inputs")
    return f"{message}: {'; '.join(details)}" if details else message


def _live(nodes: list[Node], outputs: list[int]) -> tuple[list[Node], list[int]]:
    """Drop nodes no output depends on (shape checks, control-flow tests, debug prints)
    and renumber the rest so ids stay equal to positions."""
    keep = {0, *outputs}
    for node in reversed(nodes):
        if node.id in keep:
            keep.update(node.inputs)
    new_id = {}
    live = []
    for node in nodes:
        if node.id in keep:
            new_id[node.id] = len(live)
            node.id = len(live)
            node.inputs = [new_id[i] for i in node.inputs]
            live.append(node)
    return live, [new_id[o] for o in outputs]


# torch's messages when a window no longer fits the feature map
_COLLAPSE_HINTS = ("kernel size can't be greater", "output size is too small",
                   "invalid computed output size", "input size is too small",
                   "padded input size per channel", "more than 1 spatial element",
                   "more than 1 value per channel")


def _failure(exc: Exception, input_shape: tuple[int, ...]) -> ModelError:
    """The one-line error for a failed forward; a collapsed feature map is its own type,
    so that a resolution sweep can record it as a row instead of stopping."""
    scope = getattr(exc, "rfalint_scope", "") or "the top-level forward"
    first_line = _first_line(exc)
    res = "x".join(str(s) for s in input_shape[1:])
    lowered = first_line.lower()
    if any(hint in lowered for hint in _COLLAPSE_HINTS):
        return CollapseError(f"resolution {res} is too small for this model: the feature map "
                             f"collapses at '{scope}' ({first_line})")
    return ModelError(f"the model's forward raised {type(exc).__name__} at '{scope}': "
                      f"{first_line}")


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
