"""``update_rank`` on a torch device (CUDA): ΔW formed and decomposed there.

Imported only when a check asks for CUDA (``device: cuda``, or ``auto`` with torch seeing a
GPU), so the CPU path never imports torch.  Both sides travel in their stored dtype (bf16 is
half the bytes of float32) and are widened on the device.
"""

from __future__ import annotations

import numpy as np
import torch

from sparsecheck.metrics._svd import Matrix

PRECISIONS = {"float32": torch.float32, "float64": torch.float64}


def update_matrix(
    base: torch.Tensor, tuned: torch.Tensor, device: torch.device, precision: str
) -> torch.Tensor:
    """ΔW = tuned - base as a fresh tensor of ``precision`` on ``device`` (see
    :func:`sparsecheck.metrics._svd.update_matrix`); the stored tensors are never written."""
    wide = torch.float64 if torch.float64 in (base.dtype, tuned.dtype) else PRECISIONS[precision]
    delta = tuned.to(device).to(wide, copy=True)
    delta.sub_(base.to(device))
    return delta.to(PRECISIONS[precision])


def torch_svdvals(matrices: list[Matrix]) -> np.ndarray:
    """Singular values with ``torch.linalg.svdvals`` on the matrices' device, as float64 numpy."""
    stacked = matrices[0].unsqueeze(0) if len(matrices) == 1 else torch.stack(matrices)
    matrices.clear()
    sigma = torch.linalg.svdvals(stacked)
    del stacked
    values: np.ndarray = sigma.to(torch.float64).cpu().numpy()
    return values
