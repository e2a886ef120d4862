"""2-D projections of model embeddings: PCA (instant), t-SNE and UMAP (computed once, cached).

UMAP compiles its numba kernels on first use (~25 s); ``NUMBA_CACHE_DIR`` is pointed at the ferx
cache so the compiled code is reused by later processes, and :func:`warm_up_umap` lets a server
pay that cost at start-up instead of inside a request.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ferx.analysis.runs import ModelRun
from ferx.cache import atomic_path, cache_key, cached
from ferx.data.datasets import from_user_zip
from ferx.paths import cache_dir as default_cache_dir

log = logging.getLogger(__name__)
METHODS = ("pca", "tsne", "umap")
# seconds per 1,000 faces on 2 CPU cores before this machine has timed one (t-SNE of FERPlus test, 3,371 faces,
# took 110-240 s; UMAP about half that); each projection then records its own rate (RATES_FILE) for the next estimate
DEFAULT_S_PER_1000 = {"pca": 0.1, "tsne": 40.0, "umap": 20.0}
RATES_FILE = "projection_rates.json"


def _numba_cache() -> None:
    os.environ.setdefault("NUMBA_CACHE_DIR", str(default_cache_dir("numba")))


def standardiser(embeddings: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The map into the space the projections start from: each dimension less the dataset's mean, over
    its spread (scikit-learn's StandardScaler: a dimension constant over the dataset keeps scale 1, so a new
    face placed among the dataset's, through the same map, differs there by what it differs)."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(np.asarray(embeddings, dtype=np.float64))
    return lambda e: scaler.transform(np.asarray(e, dtype=np.float64))


def fit_pca(x: np.ndarray, seed: int = 0):
    """The 2-D PCA of standardised embeddings (deterministic: refitting gives the cached axes)."""
    from sklearn.decomposition import PCA

    return PCA(2, random_state=seed).fit(x)


# the fewest faces each projection is computed for: PCA's 2 axes need 2; t-SNE's perplexity must stay below the
# number of faces; UMAP needs 2 neighbours per face and its spectral layout more faces than its 2 axes plus one
MIN_FACES = {"pca": 2, "tsne": 3, "umap": 4}
PRE_PCA = 50  # t-SNE starts from at most this many principal components (never more than the faces or dimensions)


def _known(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown projection {method!r}; expected one of {METHODS}")


def check_projectable(n: int, method: str) -> None:
    """Refuse, before any work, a projection of ``n`` faces that is too few for ``method`` (:data:`MIN_FACES`)."""
    _known(method)
    if n < MIN_FACES[method]:
        raise ValueError(f"{method} needs at least {MIN_FACES[method]} faces, not {n}")


def compute_projection(embeddings: np.ndarray, method: str, seed: int = 0, fitted: dict | None = None) -> np.ndarray:
    """N x 2 coordinates of standardised embeddings; a UMAP reducer is left in ``fitted["reducer"]``
    (it can place new faces: ``reducer.transform``). Fewer faces than :data:`MIN_FACES` are refused."""
    check_projectable(len(embeddings), method)
    x = standardiser(embeddings)(embeddings)
    if method == "pca":
        return fit_pca(x, seed).transform(x)
    if method == "tsne":
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE

        components = min(PRE_PCA, *x.shape)  # PCA finds at most as many axes as faces (9 faces: 9, not 50)
        if x.shape[1] > components:  # the usual PCA pre-reduction: same neighbourhoods, much faster
            x = PCA(components, random_state=seed).fit_transform(x)
        perplexity = min(30, max(5, (len(x) - 1) // 3), len(x) - 1)  # below the number of faces
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    _numba_cache()  # umap, the last of METHODS (checked above)
    import umap

    # no PCA first: the cached reducer places new faces from their embeddings (reducer.transform)
    reducer = umap.UMAP(n_neighbors=min(15, len(x) - 1), min_dist=0.1, random_state=seed)
    coords = reducer.fit_transform(x)
    if fitted is not None:
        fitted["reducer"] = reducer
    return coords


def _projection_path(run: ModelRun, method: str, seed: int, cache_dir) -> Path:
    _known(method)
    return Path(cache_dir or default_cache_dir("embeddings")) / f"{cache_key(run.key, method, seed)[:32]}.npy"


def project(run: ModelRun, method: str = "pca", seed: int = 0, cache_dir: str | Path | None = None, *,
            compute: bool = True) -> np.ndarray:
    """The cached 2-D projection of a run's embeddings (keyed by the run's own cache key); a UMAP's
    fitted reducer is cached beside it (``.umap.joblib``), except for a user's zip: the reducer holds
    the faces' embeddings, and of a user's faces only 2-D coordinates are kept. ``compute=False``:
    FileNotFoundError when it is not cached yet."""
    path = _projection_path(run, method, seed, cache_dir)
    if not compute and not path.is_file():
        raise FileNotFoundError(f"no cached {method} projection of {run.name}")

    def load(p: Path) -> np.ndarray:
        coords = np.load(p, allow_pickle=False)
        if coords.shape != (len(run), 2):
            raise ValueError(f"{coords.shape[0]} points cached for a run of {len(run)}")
        return coords

    def build() -> np.ndarray:
        start = time.perf_counter()
        fitted = {}
        coords = compute_projection(run.embeddings, method, seed, fitted).astype(np.float32)
        seconds = time.perf_counter() - start
        if "reducer" in fitted and not from_user_zip(run.dataset):
            _save_reducer(fitted["reducer"], path.with_suffix(".umap.joblib"))
        log.info("%s of %s (%d points) took %.1f s", method, run.name, len(run), seconds)
        _record_rate(path.parent, method, len(run), seconds)
        return coords

    return cached(path, load, build, _save, what="embedding")


def projection_reducer(run: ModelRun, method: str = "umap", seed: int = 0, cache_dir: str | Path | None = None):
    """The fitted UMAP reducer cached with a run's projection, or None (not computed, or computed by a
    version of ferx that did not keep it)."""
    path = _projection_path(run, method, seed, cache_dir).with_suffix(".umap.joblib")
    if not path.is_file():
        return None
    import joblib

    _numba_cache()
    try:
        return joblib.load(path)  # our own cache folder: written by _save_reducer
    except Exception as err:  # noqa: BLE001 - an unreadable reducer only costs the exact placement
        log.warning("UMAP reducer %s unusable (%s)", path, err)
        return None


def _save_reducer(reducer, path: Path) -> None:
    import joblib

    try:
        with atomic_path(path) as tmp:
            joblib.dump(reducer, tmp)
    except Exception as err:  # noqa: BLE001 - the coordinates matter, the reducer is a bonus
        log.warning("could not cache the UMAP reducer: %s", err)


def expected_seconds(method: str, n: int, cache_dir: str | Path | None = None) -> float:
    """About how long projecting ``n`` faces takes here: the rate this machine measured last time
    (:func:`project` records it), else :data:`DEFAULT_S_PER_1000`. For a progress estimate only."""
    try:
        rates = json.loads((Path(cache_dir or default_cache_dir("embeddings")) / RATES_FILE).read_text())
        rate = float(rates[method])
    except (OSError, ValueError, KeyError, TypeError):
        rate = DEFAULT_S_PER_1000[method]
    return rate * n / 1000


def _record_rate(folder: Path, method: str, n: int, seconds: float) -> None:
    path = folder / RATES_FILE
    try:
        rates = json.loads(path.read_text())
    except (OSError, ValueError):
        rates = {}
    if not isinstance(rates, dict):
        rates = {}
    rates[method] = seconds * 1000 / max(n, 1)
    try:
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(rates))
    except OSError as err:  # an estimate is not worth failing a projection for
        log.warning("could not record the %s rate: %s", method, err)


def _save(coords: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:
        np.save(tmp, coords)


def warm_up_umap() -> float:
    """Compile (or load from the numba cache) UMAP's kernels on a tiny problem; returns seconds."""
    start = time.perf_counter()
    compute_projection(np.random.default_rng(0).normal(size=(64, 8)), "umap")
    return time.perf_counter() - start
