"""Strategies that change the stage layout (docs/method.md §6): ``rebalance`` moves whole
units between stages (the Information Field organizer); ``reposition`` lives in
:mod:`rfalint.fix.reposition`.

A unit moves with every node it owns (side paths, shortcuts, gates) and keeps its layer
names; it takes the target stage's width, so the widths a stage hands on never change.
Its convs, norms and shortcut projections are rebuilt at that width (fresh weights);
every other layer survives unchanged and keeps its weights.
"""

from __future__ import annotations

from fractions import Fraction

from rfalint.analysis import Analysis
from rfalint.analysis.plan import NotApplicable
from rfalint.analysis.stages import (NoStages, Plan, Stage, Unit, find_stages, plan_stages,
                                     unit_label)
from rfalint.fix.rewrite import Rewriter
from rfalint.fix.strategies import Rewrite, _Widen
from rfalint.graph import Graph, Node
from rfalint.spec import Document, Layer


def stages_or_refuse(analysis: Analysis, strategy: str) -> list[Stage]:
    try:
        return find_stages(analysis)
    except NoStages as exc:
        raise NotApplicable(f"{strategy} does not apply: {exc}") from None


class _Resize(_Widen):
    """Channels of a moved unit scaled exactly to the target stage's width."""

    def __init__(self, graph: Graph, layers: Rewriter, factor: Fraction):
        super().__init__(graph, layers, float(factor))
        self.exact = factor
        self.final = set()

    def scaled(self, old: int, node: Node, groups: int = 1) -> int:
        return max(groups, round(old * self.exact / groups) * groups)


def rebalance(analysis: Analysis, doc: Document, theta: float = 0.0
              ) -> tuple[Rewrite | None, Plan, list[Stage]]:
    """Apply the organizer's plan to the parsed spec; ``None`` when it makes no move."""
    stages = stages_or_refuse(analysis, "rebalance")
    plan = plan_stages(stages, theta)
    if not plan.moves:
        return None, plan, stages
    graph = analysis.graph
    units = [u for s in stages for u in s.units]
    name = lambda node_id: graph[node_id].name  # noqa: E731
    layers = Rewriter(doc)
    moved = {m.unit for m in plan.moves if m.target is not None}
    final_stage = {u: s for s, ids in enumerate(plan.after) for u in ids}
    moved = {u for u in moved if u in final_stage}
    removed = {u for s in plan.before for u in s if u not in final_stage}
    _refuse_outside_readers(graph, units, plan, moved | removed)
    fresh: set[str] = set()
    for u in sorted(moved):
        unit = units[u]
        target = stages[final_stage[u]].width
        resize = _Resize(graph, layers, Fraction(target, unit.width_in))
        resize.channels[unit.entry] = target
        for node_id in unit.nodes:
            resize.node(graph[node_id])
        fresh.update(name(n) for n in unit.nodes)
    owner = {name(n): u for u, unit in enumerate(units) for n in unit.nodes}
    origin = {u: s for s, ids in enumerate(plan.before) for u in ids}
    remap = {name(stages[s].units[-1].exit): name(units[ids[-1]].exit)
             for s, ids in enumerate(plan.after)}
    new_entry: dict[int, str] = {}
    for ids in plan.after:
        for k, u in enumerate(ids):
            entry = name(units[u].entry)
            new_entry[u] = remap.get(entry, entry) if k == 0 else name(units[ids[k - 1]].exit)
    items: list[Layer] = []
    emitted: set[int] = set()
    for layer in layers.layers:
        u = owner.get(layer.name)
        if u is None:
            layer.inputs = [remap.get(s, s) for s in layer.inputs]
            items.append(layer)
            continue
        stage = origin[u]
        if stage in emitted:
            continue
        emitted.add(stage)
        for v in plan.after[stage]:
            mine = {name(n) for n in units[v].nodes}
            entry = name(units[v].entry)
            for other in layers.layers:
                if other.name in mine:
                    other.inputs = [new_entry[v] if s == entry else s for s in other.inputs]
                    items.append(other)
    layers.layers = items
    layers.outputs = [remap.get(s, s) for s in layers.outputs]
    return Rewrite("rebalance", layers.document(), _describe(graph, stages, units, plan),
                   fresh), plan, stages


def _refuse_outside_readers(graph: Graph, units: list[Unit], plan: Plan, changed: set[int]
                            ) -> None:
    """A unit that moves or goes may be read only by the next unit (or, as the last unit
    of its stage, by what follows the stage): those readers are rewired."""
    users = graph.consumers()
    inside = {n: u for u, unit in enumerate(units) for n in unit.nodes}
    last = {stage[-1] for stage in plan.before}
    for u in changed:
        unit = units[u]
        for node_id in unit.nodes:
            for reader in users[node_id]:
                where = inside.get(reader)
                if where == u or node_id == unit.exit and (
                        where == u + 1 or where is None and u in last):
                    continue
                raise NotApplicable(f"rebalance cannot move '{graph[node_id].name}': "
                                    f"'{graph[reader].name}' outside its unit reads it")


def _describe(graph: Graph, stages: list[Stage], units: list[Unit], plan: Plan) -> list[str]:
    lines = []
    for move in plan.moves:
        unit = units[move.unit]
        what = unit_label(graph, unit)
        if move.target is None:
            lines.append(f"removed {what} from stage {move.source} (dIF {move.dif_source:.3f} "
                         "as its last unit; no stage would gain from it)")
        else:
            lines.append(f"moved {what} from stage {move.source} to stage {move.target}: dIF "
                         f"{move.dif_source:.3f} as the last unit of stage {move.source} -> "
                         f"{move.dif_target:.3f} appended to stage {move.target} (width "
                         f"{unit.width_in} -> {stages[move.target - 1].width})")
    lines.append(f"units per stage {plan.counts_before} -> {plan.counts_after}")
    return lines
