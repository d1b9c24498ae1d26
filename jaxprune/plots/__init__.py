"""Plots of results, as the papers draw them (PNG files): accuracy against sparsity,
instability and paths between networks, dead units, permutation alignment, AP and COLT,
sparse double descent, data pruning, prunability against the data's intrinsic dimension,
structured pruning against scratch training.

An optional module: it needs matplotlib (the ``engine`` extra), imported only when a
plot is drawn, and ``import jaxprune`` does not import it.
"""

from jaxprune.plots._alignment import plot_rebasin, plot_ticket_alignment
from jaxprune.plots._ap import plot_ap_colt
from jaxprune.plots._connectivity import plot_instability, plot_paths
from jaxprune.plots._data import plot_data_pruning
from jaxprune.plots._descent import plot_double_descent
from jaxprune.plots._manifold import plot_prunability
from jaxprune.plots._pruning import plot_accuracy_vs_remaining, plot_dead_units, plot_imp
from jaxprune.plots._structured import plot_scratch_vs_finetuned

__all__ = [
    "plot_accuracy_vs_remaining",
    "plot_ap_colt",
    "plot_data_pruning",
    "plot_dead_units",
    "plot_double_descent",
    "plot_imp",
    "plot_instability",
    "plot_paths",
    "plot_prunability",
    "plot_rebasin",
    "plot_scratch_vs_finetuned",
    "plot_ticket_alignment",
]
