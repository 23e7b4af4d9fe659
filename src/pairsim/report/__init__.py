"""Reports: matplotlib figures (training curves, the paper's figures) embedded in self-contained pages."""

from pairsim.report.gradient_field import GradientPanel, gradient_field_plot
from pairsim.report.html import Figure, metrics_table, write_report
from pairsim.report.plots import (
    RetrievalExample,
    decision_scatter_plot,
    figure_png,
    loss_and_precision_plot,
    pyplot,
    retrieval_grid_plot,
    similarity_plot,
)

__all__ = [
    "Figure",
    "GradientPanel",
    "RetrievalExample",
    "decision_scatter_plot",
    "figure_png",
    "gradient_field_plot",
    "loss_and_precision_plot",
    "metrics_table",
    "pyplot",
    "retrieval_grid_plot",
    "similarity_plot",
    "write_report",
]
