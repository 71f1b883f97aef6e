"""anywidget panels: one class per panel, traits and serializers only."""
from dsnotebook.widgets.graph import GRAPH_STATS, GraphWidget
from dsnotebook.widgets.heatmap import DEFAULT_STATS, HeatmapWidget
from dsnotebook.widgets.perf import PerfWidget
from dsnotebook.widgets.suggestions import SuggestionsWidget

__all__ = ["HeatmapWidget", "DEFAULT_STATS", "GraphWidget", "GRAPH_STATS", "PerfWidget", "SuggestionsWidget"]
