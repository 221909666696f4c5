"""Build the companion book: figure registry -> papermill -> Jupyter Book.

Every figure and table of the book is made by a parameterized notebook in ``notebooks/``, named in
the registry ``notebooks/figures.yml`` (:mod:`~lrpkit.book.registry`). ``python -m lrpkit.book
build`` (:mod:`~lrpkit.book.command`, :func:`~lrpkit.book.pipeline.build`) executes the registry with
papermill (:mod:`~lrpkit.book.execution`: one progress bar over the figures, one log per notebook
under ``_build/logs/``), skipping a notebook whose inputs -- the notebook file, its parameters,
lrpkit's version and source, the pinned packages, the data and weights checksums -- are those of a
run already in the cache (:mod:`~lrpkit.book.cache`, ``_build/cache/``). Figures that read an
experiment's results get them from the build's experiment step (:mod:`~lrpkit.book.experiments`),
which runs first and reuses results whose inputs are unchanged, or takes results made elsewhere
(a cluster run, :mod:`~lrpkit.book.imports`). The executed notebooks are
written to ``book/_generated/<chapter>/<figure id>.ipynb`` and never edited by hand. Then
``jupyter-book build . -W -n --keep-going`` renders the site with ``execute_notebooks: "off"``; the
prose pages paste figures and numbers from the executed notebooks with myst-nb ``glue``, every key
checked first (:mod:`~lrpkit.book.pages`).

Each figure notebook ends by gluing :func:`lrpkit.provenance.provenance` (``provenance`` and
``banner`` keys) and shows its tables with :func:`lrpkit.tables.html_table`: those are what the
notebook kernels import; this package is the build around them. For the notebooks, it re-exports
them (``book.provenance``, ``book.html_table``, ``book.composite_table``, ``book.present``), so
that ``from lrpkit import book`` is the one import a notebook needs.

References
----------
R. Bermúdez Schettino, *In-Depth Hyperparameter Selection for Layer-Wise Relevance Propagation*,
Master's thesis, TU Berlin, 2022.
"""
from ..provenance import (Banner, Provenance, computation, git_commit, lrpkit_version, provenance, provenance_record,
                          public_value, source_hash, state_sha256)
from ..tables import composite_table, html_table
from .pipeline import build, check_weights, resolve_device, resolve_profile
from .cache import Cache, Entry, code_inputs, data_checksums, fingerprint, weights_inputs
from .command import main, parser
from .errors import BuildError
from .execution import FigureResult, figure_inputs, kernel_environment, present, run_figures
from .pages import check_glue, glue_keys, glue_references, jupyter_book, toc_pages, weights_by_figure, weights_note
from . import wording
from .registry import (EXPERIMENTS, GENERATED, PROFILES, REGISTRY, Experiment, Figure, load_experiments, load_registry,
                       notebook_parameters, results_dir, select)

__all__ = [
    "provenance", "computation", "Provenance", "Banner", "provenance_record", "source_hash", "lrpkit_version", "git_commit",
    "public_value", "state_sha256", "composite_table", "html_table",
    "build", "check_weights", "resolve_device", "resolve_profile",
    "Cache", "Entry", "code_inputs", "data_checksums", "fingerprint", "weights_inputs",
    "main", "parser", "BuildError",
    "FigureResult", "figure_inputs", "kernel_environment", "present", "run_figures",
    "check_glue", "glue_keys", "glue_references", "jupyter_book", "toc_pages", "weights_by_figure", "weights_note",
    "GENERATED", "PROFILES", "REGISTRY", "Figure", "load_registry", "notebook_parameters", "select",
    "EXPERIMENTS", "Experiment", "load_experiments", "results_dir",
]
