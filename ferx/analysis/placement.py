"""Where does a photo land? One face placed among a model's dataset faces: an example-based explanation.

The face goes through the model exactly as the dataset's faces did (same preprocessing, same
embedding: ``forward_head(..., pre_logits=True)``) and is compared with them in the space the
projections start from (embeddings standardised by the dataset's mean and spread):

* its ``k`` nearest dataset faces, with their true labels and distances;
* **typicality**: the share of those neighbours whose true label is the class the model predicts for
  the face (k-NN label agreement), and the percentile of its mean neighbour distance among the
  dataset faces' own (each measured without itself). Above :data:`UNLIKE_PERCENTILE` the face is
  *unlike anything in the data*: the model's answer there is an extrapolation;
* its place in each 2-D projection: PCA is refitted (deterministic, the same axes as the cached
  coordinates) and applied; UMAP's own ``transform`` when the fitted reducer was cached with the
  coordinates; t-SNE has no transform, so the face goes to the distance-weighted mean position of its
  ``k`` nearest faces (said in :attr:`Placement.how`).

A face that is in the data (an upload of one of its faces: at distance ~0 from it) is named
(:attr:`Placement.in_data`) and shown first, and its typicality is measured without it, as the dataset
faces' own are: counted as its own nearest neighbour it looked typical (LANMSFF on 200 FERPlus test
faces: mean distance percentile 22.8 instead of 48.5, 4 "unusual" faces instead of 45).

Nothing about the face is stored or cached.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ferx.analysis.embeddings import METHODS, fit_pca, project, projection_reducer, standardiser
from ferx.analysis.runs import ModelRun
from ferx.checkpoint import LoadedModel
from ferx.inference import predict_logits_and_embeddings

UNUSUAL_PERCENTILE = 75.0  # distance percentile from which a placed face is "unusual" ...
UNLIKE_PERCENTILE = 99.0  # ... and "unlike anything in the data"
# a neighbour this close (x the dataset's median nearest-faces distance) is the face itself: on 300 FERPlus test
# faces a copy enlarged 3x lands 0.3-0.5 from its original, the nearest other face 6.8-12.5 (medians 9.0-11.9)
SAME_FACE = 0.1
HOW = {"pca": "PCA transform", "umap": "UMAP transform",
       "neighbours": "distance-weighted mean position of the nearest dataset faces (no transform)"}


@dataclass
class Placement:
    model: str
    predicted: str
    confidence: float
    neighbours: pd.DataFrame  # sample (index), path, true, pred, distance: the face itself first if in the data
    agreement: float  # share of the k nearest other faces whose true label is the predicted class
    distance: float  # mean distance to the k nearest dataset faces (standardised embedding space)
    percentile: float  # of ``distance`` among the dataset faces' own
    coords: dict[str, tuple[float, float]] = field(default_factory=dict)  # method -> x, y
    how: dict[str, str] = field(default_factory=dict)  # method -> how it was placed
    in_data: int | None = None  # the sample id of the same face in the data, if the photo is one of its faces

    @property
    def k(self) -> int:
        """How many other faces its typicality is measured on."""
        return len(self.neighbours) - (self.in_data is not None)

    @property
    def unlike_the_data(self) -> bool:
        return self.percentile >= UNLIKE_PERCENTILE

    def verdict(self) -> str:
        if self.unlike_the_data:
            return (f"unlike anything in the data: farther from its nearest faces than {self.percentile:.1f} % of the "
                    "dataset's faces are from theirs")
        typical = "typical" if self.percentile < UNUSUAL_PERCENTILE else "unusual"
        itself = f" (it is face #{self.in_data} of the data, left out of both)" if self.in_data is not None else ""
        return (f"{typical}: {self.agreement:.0%} of its {self.k} nearest faces are labelled "
                f"{self.predicted}; distance percentile {self.percentile:.0f}{itself}")


def embed(loaded: LoadedModel, image: np.ndarray, compute_dtype: str = "fp32",
          temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and embedding of one uint8 face (S x S or S x S x 3), as the analysis computes them
    (``compute_dtype`` and ``temperature``: the run's; a bf16 embedding compared with fp32 ones lands far from
    its own copy)."""
    logits, embedding = predict_logits_and_embeddings(loaded.model, loaded.input_spec, np.asarray(image)[None],
                                                      precision=compute_dtype)
    return torch.softmax(logits.float() / temperature, 1)[0].numpy(), embedding[0].numpy()


_OWN: dict[tuple, np.ndarray] = {}  # (run key, faces, k) -> distances: a few KiB each, reused by every photo
_OWN_MAX = 32
_OWN_LOCK = threading.Lock()  # requests place photos at once: one evicts while another reads


def own_distances(run: ModelRun, k: int) -> np.ndarray:
    """Every dataset face's mean distance to its ``k`` nearest other faces (standardised embeddings);
    kept in memory per run and ``k``."""
    from sklearn.neighbors import NearestNeighbors

    key = (run.key, len(run), k)
    with _OWN_LOCK:
        kept = _OWN.get(key) if run.key else None
    if kept is not None:
        return kept
    z = standardiser(run.embeddings)(run.embeddings)
    dist, _ = NearestNeighbors(n_neighbors=min(k + 1, len(z))).fit(z).kneighbors(z)
    own = dist[:, 1:].mean(1)
    if run.key:
        with _OWN_LOCK:
            if key not in _OWN and len(_OWN) >= _OWN_MAX:
                _OWN.pop(next(iter(_OWN)))
            _OWN[key] = own
    return own


def place(loaded: LoadedModel, run: ModelRun, image: np.ndarray, *, k: int = 8, methods=METHODS,
          cache_dir=None) -> Placement:
    """Place one face among ``run``'s faces (``run`` must come from ``loaded``): neighbours, typicality,
    and coordinates in each of ``methods`` whose projection is cached (PCA is always computed)."""
    from sklearn.neighbors import NearestNeighbors

    if loaded.sha256 != run.checkpoint_sha256:
        raise ValueError(f"the analysis of {run.name} was made with another checkpoint than {loaded.path.name}")
    k = max(1, min(int(k), len(run) - 1))
    probs, embedding = embed(loaded, image, run.compute_dtype, run.temperature)
    standardise = standardiser(run.embeddings)
    z, q = standardise(run.embeddings), standardise(embedding[None])
    own = own_distances(run, k)
    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(q)
    dist, idx = dist[0], idx[0]
    in_data = int(idx[0]) if dist[0] <= SAME_FACE * np.median(own) else None
    if in_data is None:
        dist, idx = dist[:k], idx[:k]
    others = slice(1 if in_data is not None else 0, None)  # typicality without the face itself, as ``own``
    neighbours = run.frame().loc[idx, ["path", "true", "pred"]].assign(distance=dist)
    predicted = run.model_classes[int(probs.argmax())]
    distance = float(dist[others].mean())
    percentile = float((own < distance).mean() * 100)
    placement = Placement(run.name, predicted, float(probs.max()), neighbours,
                          float((neighbours["true"].iloc[others] == predicted).mean()), distance, percentile,
                          in_data=in_data)
    weights = 1 / (dist + 1e-6)  # t-SNE: a face in the data lands on its own point
    for method in methods:
        if method == "pca":
            xy = fit_pca(z).transform(q)[0]  # the cached projection's axes
            placement.how[method] = HOW["pca"]
        elif method == "umap" and (reducer := projection_reducer(run, "umap", cache_dir=cache_dir)) is not None:
            xy = reducer.transform(q)[0]
            placement.how[method] = HOW["umap"]
        else:
            try:
                coords = project(run, method, cache_dir=cache_dir, compute=False)
            except FileNotFoundError:
                continue  # not projected yet: nothing to place the face in
            xy = (coords[idx] * weights[:, None]).sum(0) / weights.sum()
            placement.how[method] = HOW["neighbours"]
        placement.coords[method] = (float(xy[0]), float(xy[1]))
    return placement
