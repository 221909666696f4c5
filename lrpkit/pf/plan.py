"""The plan of a Pixel-Flipping run: which distinct images it builds, and which rows share them.

Step ``k`` of a row is a function of the row's original image and its mask after step ``k``
alone, so which images a run needs, and which rows share them, follows from the image ids, the
ranks of the patches and the schedule (:mod:`lrpkit.pf.rows`): no model, no image, no fill.

Every score of row ``b`` and step ``s`` refers to a *key* (``row_keys[b][s]``); equal keys are
equal images, built and scored once. A key is a typed tuple whose first field is its ``kind``, and
its other fields are what rows must have in common to share the image:

- :class:`_OriginalKey` — the unperturbed ``image``;
- :class:`_GrayKey` — the gray image, shared by every row;
- :class:`_MaskKey` — ``image`` with the patches of ``mask`` filled (``inpainting``,
  ``imputation``, ``noise``, ``constant``): rows share it whatever their order;
- :class:`_ChainKey` — ``step`` of the thesis code's chained inpainting (``chain``) of ``image``
  in the order whose ``ranks`` it is: shared only by rows with the same image and order;
- :class:`_RowStepKey` — ``step`` of ``row`` alone (``scalar``: the thesis code's random values
  are drawn per row and step).

A key's :class:`_Recipe` says how to build its image from the rows: its kind, the row whose image
(and mask) it starts from, and the step. Inpainting and ROAD's imputation go to worker jobs: ``jobs`` lists the keys
each job produces, and ``job_of_key[key]`` is a :class:`_JobSlot`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np


class _OriginalKey(NamedTuple):
    """The unperturbed image ``image`` (its index among the distinct images), shared by its rows."""

    kind: str           # "original"
    image: int


class _GrayKey(NamedTuple):
    """The gray image: the last step of every row, and the full steps that are gray."""

    kind: str = "gray"


class _MaskKey(NamedTuple):
    """Image ``image`` with the patches of ``mask`` filled: equal for rows that show one image and
    flip the same patches, whatever their order."""

    kind: str           # the fill: "inpainting", "imputation", "noise" or "constant"
    image: int
    mask: bytes         # the flipped patches, bit-packed (numpy.packbits)


class _ChainKey(NamedTuple):
    """Step ``step`` of the thesis code's chained inpainting of image ``image`` in one order: equal
    for rows that show one image in one order."""

    kind: str           # "chain"
    image: int
    ranks: bytes        # the order, as the bytes of the row's rank grid
    step: int

    @property
    def chain(self) -> Tuple[int, bytes]:
        """The chain the step belongs to: the image and the order."""
        return self.image, self.ranks


class _RowStepKey(NamedTuple):
    """Step ``step`` of row ``row``, shared with no other row."""

    kind: str           # "scalar"
    row: int
    step: int


_Key = Union[_OriginalKey, _GrayKey, _MaskKey, _ChainKey, _RowStepKey]


class _Recipe(NamedTuple):
    """How a key's image is built: ``kind`` (``"original"``, ``"gray"`` or the plan's fill kind)
    applied to the image of row ``row`` and the mask of its step ``step``."""

    kind: str
    row: Optional[int] = None       # the row whose image (and mask) it starts from; None for gray
    step: Optional[int] = None      # the step whose mask is filled; None for the original and gray


class _JobSlot(NamedTuple):
    """Where an inpainted key's image comes from: output ``index`` of inpainting job ``job``."""

    job: int
    index: int


@dataclass
class _Plan:
    """The distinct images of a run and how each is built: a function of the rows alone.

    ``kind`` is the recipe of the perturbed steps, one of the six fill kinds of
    :mod:`lrpkit.pf.fills`: ``inpainting`` and ``imputation`` (mask of row b, step k, filled by a
    worker: Telea, or ROAD's linear imputation), ``chain``
    (the thesis code's sequential inpainting), ``noise``, ``constant`` or ``scalar`` (thesis
    random mode).
    """

    kind: str                                   # the recipe of the perturbed steps
    image_ids: List[int]                        # each row's index among the distinct images
    counts: np.ndarray                          # cumulative patches flipped after each step
    keys: List[_Key]
    recipe: Dict[_Key, _Recipe]
    row_keys: List[List[_Key]]
    first_row: Dict[int, int]                   # distinct image -> first row showing it
    patch_masks: np.ndarray                     # [B, steps, mh, mw] bool: patches flipped after each step
    jobs: List[List[_Key]] = field(default_factory=list)
    job_of_key: Dict[_Key, _JobSlot] = field(default_factory=dict)

    @property
    def n_inpainted(self) -> int:
        """Images inpainted (Telea calls; in the thesis code's chains, every step of every chain) or
        imputed (ROAD's linear imputation: one sparse solve each)."""
        return sum(1 for key in self.keys if key.kind in ("inpainting", "chain", "imputation"))

    def add(self, key: _Key, recipe: _Recipe) -> _Key:
        """``key``, with its recipe recorded the first time it is added."""
        if key not in self.recipe:
            self.recipe[key] = recipe
            self.keys.append(key)
        return key

    def image_of(self, key: _Key) -> int:
        """The distinct image that ``key``'s image is built from."""
        return self.image_ids[self.recipe[key].row]

    def add_job(self, produced: List[_Key], indices: Sequence[int]) -> None:
        """An inpainting job that produces ``produced``, each key as the job's output ``indices[i]``."""
        for key, index in zip(produced, indices):
            self.job_of_key[key] = _JobSlot(len(self.jobs), index)
        self.jobs.append(produced)


def _plan(image_ids: Sequence[int], rank_grid: np.ndarray, counts: Sequence[int], mode: str, features: frozenset,
          job_size: int = 4) -> _Plan:
    """Plan the distinct images of a run: keys, recipes, and which rows share them.

    Rows of one image share its original and, with the gray image, every step whose mask they
    share (the random order, which ignores the heatmap, shares all). A step whose mask covers
    every patch is the gray image (the thesis code's ``noop_step``: the step before it again). The
    inpainting masks of one image go to the workers in jobs of ``job_size``; the thesis code's
    chains (``truncation``) in one job per image and order.

    Parameters
    ----------
    image_ids : sequence of int
        Each row's index among the distinct images.
    rank_grid : numpy.ndarray
        ``[B, mh, mw]``: each patch's place in the row's flipping order.
    counts : sequence of int
        Cumulative patches flipped after each step (:func:`~lrpkit.pf.flip_schedule`).
    mode : str
        One of :data:`~lrpkit.pf.MODES`.
    features : frozenset
        The :data:`~lrpkit.pf.THESIS_COMPAT` features on.
    """
    counts = np.asarray(counts)
    patch_masks = rank_grid[:, None] < counts.reshape(1, -1, 1, 1)   # [B, steps, mh, mw]
    full = counts == rank_grid[0].size
    full_step = _full_step(mode, features)
    plan = _Plan(kind=_fill_kind(mode, features), image_ids=list(image_ids), counts=counts, keys=[], recipe={},
                 row_keys=[], first_row={}, patch_masks=patch_masks)
    for b, image in enumerate(image_ids):
        plan.first_row.setdefault(image, b)
        plan.row_keys.append([plan.add(_OriginalKey("original", image), _Recipe("original", plan.first_row[image]))])
    gray_key = plan.add(_GrayKey(), _Recipe("gray"))
    for b, row in enumerate(plan.row_keys):
        for k in range(len(counts)):
            if full[k] and full_step == "gray":
                row.append(gray_key)          # nothing left to inpaint from: the image is gone
            elif full[k] and full_step == "previous":
                row.append(row[-1])           # the thesis code's no-op: the previous step again
            else:
                row.append(plan.add(_step_key(plan, rank_grid, b, k), _Recipe(plan.kind, b, k)))
        row.append(gray_key)
    if plan.kind in ("inpainting", "imputation"):
        _group_masks(plan, job_size if plan.kind == "inpainting" else 1)   # a solve is a job's worth
    elif plan.kind == "chain":
        _group_chains(plan)
    return plan


def _fill_kind(mode: str, features: frozenset) -> str:
    """The fill kind of the perturbed steps, for a mode and the thesis code's features."""
    return {"inpainting": "chain" if "truncation" in features else "inpainting",
            "random": "scalar" if "random_scalar" in features else "noise",
            "gray": "constant", "road": "imputation"}[mode]


def _full_step(mode: str, features: frozenset) -> str:
    """What a step whose mask covers every patch is: ``"gray"``, ``"previous"`` (the thesis code's
    no-op inpainting) or ``"filled"`` as any other step (random noise; the thesis code's chains)."""
    if mode in ("gray", "road") or (mode == "inpainting" and "noop_step" not in features):
        return "gray"
    if mode == "inpainting" and "truncation" not in features:
        return "previous"
    return "filled"


def _step_key(plan: _Plan, rank_grid: np.ndarray, b: int, k: int) -> _Key:
    """The key of row ``b``'s step ``k``, filled as the plan's kind says."""
    image = plan.image_ids[b]
    if plan.kind == "chain":
        return _ChainKey(plan.kind, image, rank_grid[b].tobytes(), k)
    if plan.kind == "scalar":
        return _RowStepKey(plan.kind, b, k)
    return _MaskKey(plan.kind, image, np.packbits(plan.patch_masks[b, k]).tobytes())


def _group_masks(plan: _Plan, job_size: int) -> None:
    """Jobs of up to ``job_size`` masks of one image, each filled from the original image."""
    group: List[_Key] = []
    for key in plan.keys:
        if key.kind != plan.kind:
            continue
        if group and (len(group) == job_size or plan.image_of(group[0]) != plan.image_of(key)):
            plan.add_job(group, range(len(group)))
            group = []
        group.append(key)
    if group:
        plan.add_job(group, range(len(group)))


def _group_chains(plan: _Plan) -> None:
    """One job per distinct (image, order): the thesis code's steps, one after the other."""
    chains: Dict[Tuple[int, bytes], List[_ChainKey]] = {}
    for key in plan.keys:
        if key.kind == "chain":
            chains.setdefault(key.chain, []).append(key)
    for produced in chains.values():
        plan.add_job(produced, [plan.recipe[key].step for key in produced])
