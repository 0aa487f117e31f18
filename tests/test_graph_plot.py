"""``rfalint graph`` (DOT / Mermaid text) and ``check --plot`` (matplotlib)."""

from __future__ import annotations

import re
import sys

import pytest
from clihelp import project, run
from PIL import Image

from rfalint.config import check_models, load_settings
from rfalint.graph import Kind
from rfalint.visual import draw_rf, to_dot, to_mermaid
from rfalint.visual.diagram import STATUS_COLORS


@pytest.fixture
def proj(tmp_path, monkeypatch):
    project(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def analysis_of(target: str, res: str):
    result, = check_models(load_settings().override(model=target, res=res), cost=False)
    return result.analysis


def dot_nodes(text: str) -> dict[str, str]:
    """DOT node id -> its attribute list."""
    return dict(re.findall(r"^  (n\d+) \[(.*)\];$", text, flags=re.M))


def dot_edges(text: str, analysis) -> set[tuple[str, str]]:
    names = {f"n{node.id}": node.name for node in analysis.graph}
    return {(names[a], names[b]) for a, b in re.findall(r"^  (n\d+) -> (n\d+)", text, re.M)}


# ---------------------------------------------------------------------- graph


def test_dot_colours_by_status_and_marks_b_min(proj):
    analysis = analysis_of("models.py:Deep", "8")
    text = to_dot(analysis)
    assert text.startswith('digraph "models.py:Deep" {') and text.endswith("}\n")
    nodes = dot_nodes(text)
    by_name = {node.name: f"n{node.id}" for node in analysis.graph}
    red, grey, white = (STATUS_COLORS[s][0] for s in ("unproductive", "head", "productive"))
    assert f'fillcolor="{red}"' in nodes[by_name["body.4"]]
    assert "penwidth=3" in nodes[by_name["body.4"]] and "border layer b_min" in \
        nodes[by_name["body.4"]]
    assert f'fillcolor="{red}"' in nodes[by_name["body.5"]]
    assert f'fillcolor="{white}"' in nodes[by_name["body.3"]]
    assert f'fillcolor="{grey}"' in nodes[by_name["fc"]]
    assert "r 13" in nodes[by_name["body.5"]]


def test_critical_layers_are_orange(proj):
    analysis = analysis_of("models.py:Residual", "6")
    orange = STATUS_COLORS["critical"][0]
    critical = [node.name for node in analysis.graph
                if analysis.border.status[node.id] == "critical"]
    assert "blocks.2.conv" in critical
    text = to_mermaid(analysis)
    ids = [f"n{node.id}" for node in analysis.graph
           if node.name in critical and node.kind is not Kind.POINTWISE]  # ReLUs are folded
    line = next(line for line in text.splitlines() if line.endswith(" critical")
                and line.lstrip().startswith("class "))
    assert set(line.split()[1].split(",")) == set(ids)
    assert f"classDef critical fill:{orange}" in text


def test_edges_fold_pointwise_nodes(proj):
    analysis = analysis_of("models.py:Residual", "6")
    edges = dot_edges(to_dot(analysis), analysis)
    # x + conv(x) then ReLU: with the ReLU folded, the next block reads the add directly.
    assert ("blocks.0.add", "blocks.1.conv") in edges
    assert ("blocks.0.add", "blocks.1.add") in edges
    assert ("blocks.0.conv", "blocks.0.add") in edges and ("stem", "blocks.0.add") in edges
    assert all("act" not in a and "act" not in b for a, b in edges)
    every = dot_edges(to_dot(analysis, all_nodes=True), analysis)
    assert ("blocks.0.add", "blocks.0.act") in every and ("blocks.0.act", "blocks.1.conv") in every


def test_graph_command_dot_and_mermaid(proj):
    dot = run("graph", "models.py:Deep", "--res", "8")
    assert dot.code == 0, dot.err
    assert dot.out.startswith("digraph")
    mermaid = run("graph", "models.py:Deep", "--res", "8", "--format", "mermaid")
    assert mermaid.code == 0
    lines = mermaid.out.splitlines()
    assert "flowchart TD" in lines
    assert any(re.fullmatch(r'  n\d+\["body\.4<br/>Conv2d 3/1<br/>out 8, r 11, S 1, P 5<br/>'
                            r'border layer '
                            r'b_min"\]', line) for line in lines)
    assert any(re.fullmatch(r"  class (n\d+,)*n\d+ unproductive", line) for line in lines)
    assert any(re.fullmatch(r"  style n\d+ stroke-width:4px", line) for line in lines)


def test_graph_output_file(proj):
    stdout = run("graph", "models.py:Deep", "--res", "8").out
    result = run("graph", "models.py:Deep", "--res", "8", "-o", "g.dot")
    assert result.code == 0 and result.out == ""
    assert (proj / "g.dot").read_text() == stdout
    before = (proj / "models.py").read_text()
    refused = run("graph", "models.py:Deep", "--res", "8", "-o", "models.py")
    assert refused.code == 2 and "refusing to overwrite an input file" in refused.err
    assert (proj / "models.py").read_text() == before


def test_graph_uses_config_res_and_rejects_bad_format(proj):
    (proj / "rfalint.toml").write_text("res = 8\n")
    assert run("graph", "models.py:Deep").code == 0
    bad = run("graph", "models.py:Deep", "--format", "png")
    assert bad.code == 2 and "--format must be one of dot, mermaid" in bad.err


# ---------------------------------------------------------------------- plot


def test_plot_writes_a_png(proj):
    result = run("check", "models.py:Deep", "--res", "8", "--plot", "rf.png")
    assert result.code == 1, result.err  # the plot does not change the exit code
    image = Image.open(proj / "rf.png")
    assert image.format == "PNG" and image.width >= 600 and image.height >= 400


def test_plot_content(proj):
    analysis = analysis_of("models.py:Residual", "6")
    fig = draw_rf(analysis, "models.py:Residual")
    ax, = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["r_max (output RF)"].get_ydata()) == [3, 5, 7, 9]
    assert list(lines["r_min (output RF)"].get_ydata()) == [3, 5, 5, 5]
    assert list(lines["input 6 px"].get_ydata()) == [6, 6]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["1 stem", "2 blocks.0.conv", "3 blocks.1.conv", "4 blocks.2.conv"]
    deep = draw_rf(analysis_of("models.py:Deep", "8"), "models.py:Deep")
    border = [line for line in deep.axes[0].get_lines()
              if line.get_label().startswith("border layer b_min")]
    assert border and list(border[0].get_xdata()) == [5, 5]
    assert border[0].get_label() == "border layer b_min: #5 body.4"


def test_plot_non_square_has_a_panel_per_axis(proj):
    fig = draw_rf(analysis_of("models.py:Deep", "16x8"), "models.py:Deep")
    assert len(fig.axes) == 2
    assert [ax.get_title(loc="left") for ax in fig.axes] == [
        "spatial axis 0 (input 16 px)", "spatial axis 1 (input 8 px)"]


def test_plot_without_matplotlib_is_a_one_line_error(proj, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    result = run("check", "models.py:Deep", "--res", "8", "--plot", "rf.png")
    assert result.code == 2
    assert result.err == "rfalint: error: --plot needs matplotlib: pip install rfalint[plot]\n"
    assert not (proj / "rf.png").exists()


def test_plot_usage_errors(proj):
    bad = run("check", "models.py:Deep", "--res", "8", "--plot", "rf.xyz")
    assert bad.code == 2 and "unsupported image type '.xyz'" in bad.err
    (proj / "rfalint.toml").write_text(
        'res = 8\n[[models]]\ntarget = "models.py:Deep"\n'
        '[[models]]\ntarget = "models.py:shallow"\n')
    two = run("check", "--plot", "rf.png")
    assert two.code == 2 and "--plot draws one model" in two.err
    before = (proj / "models.py").read_text()
    refused = run("check", "models.py:Deep", "--res", "8", "--plot", "models.py")
    assert refused.code == 2 and "unsupported image type '.py'" in refused.err
    assert (proj / "models.py").read_text() == before
