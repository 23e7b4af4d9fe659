"""The HTML report of a training run: matplotlib figures embedded in one self-contained page."""

from pairsim.report.html import Figure, metrics_table, write_report
from pairsim.report.plots import (
    RetrievalExample,
    decision_scatter_plot,
    loss_and_precision_plot,
    retrieval_grid_plot,
    similarity_plot,
)

__all__ = [
    "Figure",
    "RetrievalExample",
    "decision_scatter_plot",
    "loss_and_precision_plot",
    "metrics_table",
    "retrieval_grid_plot",
    "similarity_plot",
    "write_report",
]
