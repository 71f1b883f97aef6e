"""anywidget panels: one class per panel, traits and serializers only."""
from .heatmap import DEFAULT_STATS, HeatmapWidget

__all__ = ["HeatmapWidget", "DEFAULT_STATS"]
