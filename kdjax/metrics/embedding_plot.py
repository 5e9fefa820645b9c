"""Scatter plot of teacher vs student word embeddings in a shared 2-D PCA (DSG-KD Fig. 2.3)."""

from __future__ import annotations

from typing import Mapping

import numpy as np


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, components (2, d)) of the first two principal components."""
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean, vt[:2]


def plot_embeddings(groups: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str,
                    title: str = "Word embeddings (PCA)") -> dict[str, float]:
    """groups: name -> (embeddings (n, d) in one shared width, is_domain_word (n,) bool).

    All groups are projected with one PCA fitted on their union, so distances between the clouds
    are meaningful. Domain words are drawn dark, other words light. Writes a PNG and returns the mean
    distance between each group's domain-word centroid and the first group's (the teacher).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(groups)
    allx = np.concatenate([groups[n][0] for n in names])
    mean, comps = pca_2d(allx)
    colours = ["#c0392b", "#27ae60", "#7f8c8d", "#2980b9", "#8e44ad"]
    fig, ax = plt.subplots(figsize=(6, 5), dpi=120)
    centroids = {}
    for i, n in enumerate(names):
        x, dom = groups[n]
        xy = (x - mean) @ comps.T
        c = colours[i % len(colours)]
        ax.scatter(*xy[~dom].T, s=8, c=c, alpha=0.25, label=f"{n}: other words")
        ax.scatter(*xy[dom].T, s=10, c=c, alpha=0.9, label=f"{n}: domain words")
        centroids[n] = x[dom].mean(0) if dom.any() else x.mean(0)
    ax.set_title(title)
    ax.legend(fontsize=7, markerscale=1.5)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    ref = centroids[names[0]]
    return {f"centroid_distance/{n}": float(np.linalg.norm(centroids[n] - ref)) for n in names[1:]}
