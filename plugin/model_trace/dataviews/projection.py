"""Vectors projected to 2-D: PCA by default, t-SNE (scikit-learn) or UMAP (umap-learn) when
installed. Each is seeded and single-threaded, and the result is rounded and its signs fixed,
so the same vectors give the same plot byte for byte on every build."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model_trace.errors import SpecError

SEED = 0


@dataclass(frozen=True)
class Projection:
    """2-D coordinates per vector, and what the axes are."""

    points: list[tuple[float, float]]
    axes: tuple[str, str]
    method: str


def project(vectors: torch.Tensor, method: str) -> Projection:
    """``vectors`` [count, dim] (float64) in 2-D by ``method``: pca, tsne or umap."""
    if len(vectors) < 3:
        raise SpecError(f"an embeddings view needs at least 3 texts, got {len(vectors)}",
                        field="texts")
    if method == "pca":
        return _pca(vectors)
    if method == "tsne":
        return _tsne(vectors)
    return _umap(vectors)


def _fixed_signs(points: torch.Tensor) -> torch.Tensor:
    """Flip each axis so its largest coordinate is positive (an SVD's signs are arbitrary)."""
    index = points.abs().argmax(0)
    signs = torch.sign(points[index, torch.arange(points.shape[1])])
    return points * torch.where(signs == 0, 1.0, signs)


def _rounded(points: torch.Tensor) -> list[tuple[float, float]]:
    return [(round(float(x), 6), round(float(y), 6)) for x, y in points.tolist()]


def _pca(vectors: torch.Tensor) -> Projection:
    centred = vectors - vectors.mean(0)
    _, singular, v = torch.linalg.svd(centred, full_matrices=False)
    points = _fixed_signs(centred @ v[:2].T)
    variance = singular**2 / (singular**2).sum()
    return Projection(_rounded(points), (f"PC 1 ({variance[0]:.0%} of the variance)",
                                         f"PC 2 ({variance[1]:.0%})"), "PCA")


def _tsne(vectors: torch.Tensor) -> Projection:
    try:
        from sklearn.manifold import TSNE
    except ImportError as error:
        raise SpecError("`projection: tsne` needs scikit-learn; install it (`pip install "
                        "scikit-learn`) or use `projection: pca`", field="projection") from error
    perplexity = min(30.0, (len(vectors) - 1) / 3)
    points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=SEED,
                  n_jobs=1).fit_transform(vectors.numpy())
    return Projection(_rounded(_fixed_signs(torch.from_numpy(points).double())),
                      ("t-SNE 1", "t-SNE 2"), "t-SNE")


def _umap(vectors: torch.Tensor) -> Projection:
    try:
        import umap
    except ImportError as error:
        raise SpecError("`projection: umap` needs umap-learn; install it (`pip install "
                        "umap-learn`) or use `projection: pca`", field="projection") from error
    points = umap.UMAP(n_components=2, random_state=SEED, n_jobs=1).fit_transform(
        vectors.numpy())
    return Projection(_rounded(_fixed_signs(torch.from_numpy(points).double())),
                      ("UMAP 1", "UMAP 2"), "UMAP")
