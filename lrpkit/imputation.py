"""Linear imputation of removed pixels: ROAD's fill (Rong et al. 2022), one sparse solve per mask.

ROAD (*RemOve And Debias*) replaces each removed pixel by the weighted mean of its eight
neighbours — weight 1/6 for the four sharing an edge, 1/12 for the four sharing a corner — where
the neighbours may themselves be removed. Writing that down for every removed pixel ``i``,

    (Σ_j w_ij) x_i − Σ_{j removed} w_ij x_j = Σ_{j kept} w_ij x_j,

(sums over the neighbours inside the image) gives one sparse linear system whose unknowns are the
removed pixels; its right-hand side has one column per colour channel, so one factorization serves
all channels. The matrix is symmetric and, since every connected region of removed pixels touches
a kept pixel unless the whole image is removed, positive definite: a symmetric fill-reducing
ordering (minimum degree on ``A + Aᵀ``) keeps its LU factors small. Removing every pixel leaves
nothing to impute from and is refused.

The values are a weighted mean of the image's own values, so imputing in normalized units and
normalizing afterwards agree; ROAD then adds Gaussian noise to the imputed pixels, which
:mod:`lrpkit.pf` does per image (``mode="road"``), so that the solve stays deterministic.

This module is NumPy and SciPy only (no torch): :func:`impute` does one image and one pixel mask,
:func:`impute_patch_masks` one image under several masks on the patch grid, as a worker job.

References
----------
Y. Rong, T. Leemann, V. Borisov, G. Kasneci, E. Kasneci, *A Consistent and Efficient Evaluation
Strategy for Attribution Methods*, ICML 2022 (ROAD).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from .inpainting import patch_mask_to_pixels

__all__ = ["NEIGHBOURS", "impute", "impute_patch_masks"]

#: ``(row offset, column offset, weight)`` of the eight neighbours (Rong et al. 2022).
NEIGHBOURS = ((-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
              (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12))


def impute(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with its masked pixels replaced by ROAD's linear imputation (no noise).

    Parameters
    ----------
    image : numpy.ndarray
        ``[C, H, W]`` float (float64 recommended: the solve runs in the image's precision, float32
        images in float64).
    mask : numpy.ndarray
        ``[H, W]`` bool: the pixels to remove and impute.

    Returns
    -------
    numpy.ndarray
        A new ``[C, H, W]`` array; the pixels outside the mask are those of ``image``.

    Raises
    ------
    ValueError
        Shapes that do not match, or a mask that removes every pixel.
    """
    image = np.asarray(image)
    mask = np.asarray(mask, dtype=bool)
    if image.ndim != 3 or mask.shape != image.shape[1:]:
        raise ValueError(f"impute needs a [C, H, W] image and an [H, W] mask, got {image.shape} and {mask.shape}")
    if mask.all():
        raise ValueError("the mask removes every pixel: nothing is left to impute from")
    out = image.astype(np.result_type(image.dtype, np.float64), copy=True)
    if mask.any():
        out[:, mask] = _solve(out, mask)
    return out


def _solve(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``[C, n]``: the imputed values of the ``n`` masked pixels (row-major order)."""
    channels, height, width = image.shape
    rows, cols = np.nonzero(mask)
    n = rows.size
    unknown = np.full((height, width), -1, dtype=np.int64)
    unknown[rows, cols] = np.arange(n)
    diagonal = np.zeros(n)
    rhs = np.zeros((n, channels))
    a_rows, a_cols, a_values = [], [], []
    for dr, dc, weight in NEIGHBOURS:
        r, c = rows + dr, cols + dc
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        diagonal[inside] += weight
        i, r, c = np.nonzero(inside)[0], r[inside], c[inside]
        j = unknown[r, c]
        removed = j >= 0
        a_rows.append(i[removed])
        a_cols.append(j[removed])
        a_values.append(np.full(int(removed.sum()), -weight))
        kept = ~removed
        np.add.at(rhs, i[kept], weight * image[:, r[kept], c[kept]].T)
    a_rows.append(np.arange(n))
    a_cols.append(np.arange(n))
    a_values.append(diagonal)
    matrix = scipy.sparse.csc_matrix((np.concatenate(a_values), (np.concatenate(a_rows), np.concatenate(a_cols))),
                                     shape=(n, n))
    # symmetric positive definite: a symmetric ordering and no pivoting off the diagonal
    factors = scipy.sparse.linalg.splu(matrix, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                                       options={"SymmetricMode": True})
    return factors.solve(rhs).T


def impute_patch_masks(image: np.ndarray, patch_masks: np.ndarray, patch_size: int) -> np.ndarray:
    """One image imputed under several masks on the patch grid, each from the original image.

    Parameters
    ----------
    image : numpy.ndarray
        ``[C, H, W]`` float.
    patch_masks : numpy.ndarray
        ``[K, mh, mw]`` bool: K masks of ``patch_size`` × ``patch_size`` patches (edge patches
        cropped to the image).
    patch_size : int

    Returns
    -------
    numpy.ndarray
        ``[K, C, H, W]`` float64.
    """
    height, width = image.shape[1:]
    return np.stack([impute(image, patch_mask_to_pixels(m, patch_size, height, width)) for m in patch_masks])
