"""Pictures of an analysis: the layer graph as DOT/Mermaid text and the per-layer RF plot."""

from rfalint.visual.diagram import FORMATS, to_dot, to_mermaid
from rfalint.visual.plot import check_plot_path, draw_rf, draw_sweep, save_rf_plot, save_sweep_plot

__all__ = ["FORMATS", "check_plot_path", "draw_rf", "draw_sweep", "save_rf_plot",
           "save_sweep_plot", "to_dot", "to_mermaid"]
