"""Replaying settings of a finished experiment: their heatmaps and perturbed images, for figures.

A results table keeps the curves and AUCs but not the heatmaps (16 × 16 settings × 50 images of
224² floats would be 30 GB). Figures that show heatmaps or perturbed images -- the thesis's optimal
heatmaps (Figure 4.3) and the perturbed steps of one setting (Figures 4.4, 4.5) -- recompute them
for a few settings of one image, with the results directory's own config: the same model (its
weights' checksum is checked against the directory's), image, composite, target and
Pixel-Flipping settings. The recomputed curves can then be compared with the stored ones.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .. import lrp, pf
from . import plan as planning
from . import store
from .config import Config, load_config
from .grid import build_composite, grid_tensors

__all__ = ["Replay", "replay", "explain_grid"]


@dataclasses.dataclass
class Replay:
    """Heatmaps and Pixel-Flipping of some settings of one image of an experiment.

    Attributes
    ----------
    config : Config
        The results directory's config.
    unit : Unit
        The image.
    rgb : numpy.ndarray
        The image as the network sees it (uint8 ``[H, W, 3]``).
    settings : list of int
        The settings replayed, in the order of ``relevance``.
    relevance : torch.Tensor
        ``[S, C, H, W]``, one heatmap per setting.
    target : int
        The class explained and scored.
    orders : list of str
    pixel_flipping : lrpkit.pf.PixelFlippingResult
        One row per setting and order, in :meth:`row` order (the random order once per setting:
        it does not depend on the heatmap, but its row is kept for each setting for simplicity).
    """

    config: Config
    unit: planning.Unit
    rgb: np.ndarray
    settings: List[int]
    relevance: torch.Tensor
    target: int
    orders: List[str]
    pixel_flipping: Optional[pf.PixelFlippingResult]

    def row(self, setting: int, order: str) -> int:
        """Row of ``pixel_flipping`` for ``setting`` (a setting number) and ``order``."""
        return self.settings.index(setting) * len(self.orders) + self.orders.index(order)


def replay(results, settings: Sequence[int], *, image: int = 0, orders: Optional[Sequence[str]] = None,
           keep_steps: Sequence[int] = (), model: Optional[torch.nn.Module] = None) -> Replay:
    """Recompute the heatmaps (and Pixel-Flipping) of ``settings`` for one image of an experiment.

    Parameters
    ----------
    results : path
        A results directory (:mod:`lrpkit.experiment.store`).
    settings : sequence of int
        Setting numbers (column ``setting`` of the results: ``n2 * i + j``).
    image : int
        Position of the image in the experiment's list (column ``image``).
    orders : sequence of str, optional
        Pixel-Flipping orders to run (default: the experiment's); an empty list runs none.
    keep_steps : sequence of int
        Steps whose perturbed images are kept (``pixel_flipping.images``); e.g. ``[-2]`` is the
        last step before the gray one.
    model : torch.nn.Module, optional
        The experiment's model, if already built (else it is built from the config); its weights
        must have the checksum recorded in the directory.

    Raises
    ------
    ValueError
        A setting or image the experiment does not have, an order it did not run, or a model whose
        weights differ from the experiment's.
    """
    from .runner import _load, _model_dtype, build_model  # the very functions the run used
    from ..provenance import state_sha256

    folder = store.ResultsDir(results)
    config = load_config(Path(folder.path) / store.CONFIG_FILE)
    plan_record = folder.read_plan()
    if plan_record is None:
        raise ValueError(f"{folder.path} has no {store.PLAN_FILE}: no run planned this experiment yet")
    first, second = config.grid
    n = len(first) * len(second)
    settings = [int(s) for s in settings]
    bad = [s for s in settings if not 0 <= s < n]
    if bad or not settings:
        raise ValueError(f"settings {bad or settings!r} are not settings of this {len(first)} x {len(second)} grid "
                         f"(0..{n - 1})")
    units = planning.units(config)
    if not 0 <= image < len(units):
        raise ValueError(f"image {image!r} is not an image of this experiment (0..{len(units) - 1})")
    orders = list(config.orders if orders is None else orders)
    missing = [o for o in orders if o not in config.orders]
    if missing:
        raise ValueError(f"order(s) {missing} were not run by this experiment (it ran {config.orders})")

    if model is None:
        model, _, config = build_model(config, echo=lambda line: None)
    expected = plan_record["weights"]["state_sha256"]
    if state_sha256(model) != expected:
        raise ValueError(f"the model's weights differ from the experiment's (state sha256 {expected[:12]}...); "
                         f"replay with the model the experiment ran")
    device = torch.device(config.data["device"])
    dtype = _model_dtype(model)
    unit = units[image]
    x, rgb, _ = _load(config, unit, device, dtype)
    comp = config.data["composite"]
    a, b = grid_tensors(first, second, dtype=dtype, device=device)
    unique = list(dict.fromkeys(settings))       # a setting asked for twice is explained once
    index = torch.tensor(unique, device=device)
    composite = build_composite(comp["family"], comp["variant"], a[index], b[index], heuristic=comp["heuristic"],
                                maxpool=comp["maxpool"])
    target = torch.tensor([unit.label], device=device) if config.data["target"] == "label" else None
    explanation = lrp.explain(model, x, target, composite, chunk_size=config.data["lrp"]["chunk_size"])
    relevance = explanation.relevance
    if relevance.shape[0] != len(unique):         # one setting: its values are scalars, one heatmap
        relevance = relevance.expand(len(unique), -1, -1, -1)
    relevance = relevance[torch.tensor([unique.index(s) for s in settings], device=relevance.device)]
    explained = int(explanation.target[0])
    result = None
    if orders:
        rows = [o for _ in settings for o in orders]
        heatmaps = relevance.repeat_interleave(len(orders), dim=0)
        options = config.pf_options()
        n_scores = None
        if keep_steps:
            size = options.patch_size
            counts = pf.flip_schedule(int(np.ceil(x.shape[-2] / size) * np.ceil(x.shape[-1] / size)),
                                      options.schedule, n_steps=options.n_steps)
            n_scores = len(counts) + 2
        keep = [s % n_scores for s in keep_steps] if keep_steps else []
        options = dataclasses.replace(options, order=rows, keep_steps=keep, workers=0)  # a few images: inpaint here
        result = pf.pixel_flipping(model, x.expand(len(rows), -1, -1, -1), heatmaps, explained,
                                   **dataclasses.asdict(options))
    return Replay(config=config, unit=unit, rgb=rgb, settings=settings, relevance=relevance.detach(),
                  target=explained, orders=orders, pixel_flipping=result)


def stored_curves(results_table, replayed: Replay) -> Dict[tuple, np.ndarray]:
    """The stored score curves of the replayed image, settings and orders: ``{(setting, order): scores}``."""
    part = results_table[(results_table["image"] == replayed.unit.index)
                         & results_table["setting"].isin(replayed.settings)
                         & results_table["order"].isin(replayed.orders)]
    return {(int(r.setting), r.order): np.asarray(r.scores, dtype=np.float64) for r in part.itertuples()}


def explain_grid(config: Config, model: torch.nn.Module, x: torch.Tensor, target=None) -> lrp.Explanation:
    """The heatmaps of every setting of an experiment's grid for any image ``x`` ``[1, C, H, W]``: the
    experiment's composite, heuristic and max-pooling, in setting order (``n2 * i + j``), as one
    :func:`lrpkit.lrp.explain` call. ``target``: a class index, or None for each setting's argmax."""
    comp = config.data["composite"]
    a, b = grid_tensors(*config.grid, dtype=x.dtype, device=x.device)
    composite = build_composite(comp["family"], comp["variant"], a, b, heuristic=comp["heuristic"],
                                maxpool=comp["maxpool"])
    if target is not None and not torch.is_tensor(target):
        target = torch.tensor([int(target)], device=x.device)
    return lrp.explain(model, x, target, composite, chunk_size=config.data["lrp"]["chunk_size"])
