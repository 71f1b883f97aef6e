"""anywidget panels: one class per panel, traits and serializers only."""
from .graph import GRAPH_STATS, GraphWidget
from .heatmap import DEFAULT_STATS, HeatmapWidget
from .perf import PerfWidget
from .suggestions import SuggestionsWidget

__all__ = ["HeatmapWidget", "DEFAULT_STATS", "GraphWidget", "GRAPH_STATS", "PerfWidget", "SuggestionsWidget"]
