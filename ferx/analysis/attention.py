"""Is attention an explanation? A model's own attention maps and Grad-CAM on the same faithfulness test.

For every model that declares native maps (its registry entry's ``native_maps``), over a fixed
sample of ``n`` faces of a split (evenly spaced in split order, the same faces for every model):
deletion and insertion AUC (:func:`ferx.explain.faithfulness.deletion_insertion`, blur baseline) of
each native map and of Grad-CAM, all for the class the model predicts, each beside the same test
on random maps drawn at that map's own resolution. A map that does not beat its random maps says
nothing about what the decision used, however plausible it looks.

:func:`attention_faithfulness` gives one row per face and map (cached by checkpoint, split, faces
and test settings); :func:`attention_table` the mean per model and map; :func:`attention_figure`
draws it.
"""

from __future__ import annotations

import functools
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, ContextManager

import pandas as pd

from ferx.cache import atomic_path, cache_key, cached
from ferx.data.packed import spread_indices
from ferx.explain.methods import map_title
from ferx.explain.native import has_native_attention
from ferx.paths import cache_dir as default_cache_dir

ATTENTION_VERSION = 1
N_STEPS, N_RANDOM = 16, 3  # deletion steps and random maps per face: fewer steps than one photo's test
# (ferx.explain.faithfulness.DELETION_STEPS), as the study tests many faces
GRADCAM = "gradcam"


def attention_faithfulness(loaded, packed, n: int = 50, *, hold: Callable[[], ContextManager] = nullcontext,
                           cache_dir: str | Path | None = None, progress: Callable[[float], None] | None = None
                           ) -> pd.DataFrame:
    """One row per face and map (each native map, then Grad-CAM): ``model, map, sample, target,
    deletion, insertion, random_deletion, random_insertion``."""
    from ferx.data.preprocess import to_model_input
    from ferx.explain.cam import cam_maps
    from ferx.explain.faithfulness import deletion_insertion
    from ferx.explain.native import native_attention

    name = loaded.path.name if loaded.path is not None else loaded.display
    if not has_native_attention(loaded.model):
        raise ValueError(f"{name} has no attention of its own to test")
    ids = spread_indices(len(packed), n)  # fixed: the same faces for every model
    key = cache_key(ATTENTION_VERSION, loaded.sha256, packed.fingerprint, loaded.input_spec.to_dict(), ids.tolist(),
                    N_STEPS, N_RANDOM)
    path = Path(cache_dir or default_cache_dir("attention")) / f"{key[:32]}.csv"
    device = loaded.device

    def build() -> pd.DataFrame:
        rows = []
        for j, sample in enumerate(ids):
            with hold():
                x = to_model_input(packed.images[sample:sample + 1], loaded.input_spec).to(device)
                native = native_attention(loaded.model, x)[0]
                target = int(native.logits.argmax())
                maps = [(m.method, m) for m in native.maps] + [(GRADCAM, cam_maps(loaded.model, x, GRADCAM,
                                                                                  targets=target)[0])]
                for method, m in maps:
                    f = deletion_insertion(loaded.model, x, m, target, n_steps=N_STEPS, n_random=N_RANDOM,
                                           seed=int(sample), spec=loaded.input_spec)
                    rows.append({"model": name, "map": method, "sample": int(sample), "target": target,
                                 "deletion": f.deletion_auc, "insertion": f.insertion_auc,
                                 "random_deletion": f.random_deletion_auc, "random_insertion": f.random_insertion_auc})
            if progress is not None:
                progress((j + 1) / len(ids))
        return pd.DataFrame(rows)

    def load(p: Path) -> pd.DataFrame:
        frame = pd.read_csv(p)
        if set(frame["sample"]) != set(ids.tolist()) or (frame["model"] != name).any():
            raise ValueError("stale entry")
        return frame

    def save(frame: pd.DataFrame, p: Path) -> None:
        with atomic_path(p) as tmp:
            frame.to_csv(tmp, index=False)

    return cached(path, load, build, save, what="attention faithfulness")


def attention_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean AUCs per model and map (with their standard errors over the faces), the random maps' beside
    them, and the share of faces on which the map beats its random maps on deletion (falls faster) and
    on insertion (rises faster)."""
    rows = rows.assign(beats_random_deletion=rows["deletion"] < rows["random_deletion"],
                       beats_random_insertion=rows["insertion"] > rows["random_insertion"])
    table = rows.groupby(["model", "map"], sort=False).agg(
        faces=("sample", "nunique"), deletion=("deletion", "mean"), deletion_se=("deletion", "sem"),
        random_deletion=("random_deletion", "mean"), insertion=("insertion", "mean"),
        insertion_se=("insertion", "sem"), random_insertion=("random_insertion", "mean"),
        beats_random_deletion=("beats_random_deletion", "mean"),
        beats_random_insertion=("beats_random_insertion", "mean"))
    return table


def attention_figure(table: pd.DataFrame, left_out: list[str] = ()):
    """Deletion (lower is better) and insertion (higher is better) AUC per model and map, as horizontal
    bars (one row per model and map, so any number of them stays legible), each map's random baseline
    as a hollow marker on its row; ``left_out``: analysed models without native maps, named under the title."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    labels = [f"{m} · {map_title(k)}" for m, k in table.index]
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=["Deletion AUC (lower: better)", "Insertion AUC (higher: better)"])
    for col, test in enumerate(("deletion", "insertion"), start=1):
        colours = ["#d62728" if k == GRADCAM else "#1f77b4" for _, k in table.index]
        se = table.get(f"{test}_se")
        fig.add_trace(go.Bar(y=labels, x=table[test], orientation="h", marker_color=colours, name=test,
                             error_x=None if se is None else dict(type="data", array=se.fillna(0), thickness=1.2,
                                                                   color="#444"),
                             showlegend=False, hovertemplate="%{y}<br>" + test + " AUC %{x:.3f}<extra></extra>"),
                      row=1, col=col)
        fig.add_trace(go.Scatter(y=labels, x=table[f"random_{test}"], mode="markers", name="random maps",
                                 marker=dict(symbol="diamond-open", size=12, color="black", line=dict(width=2)),
                                 showlegend=col == 1,
                                 hovertemplate="%{y}<br>random maps %{x:.3f}<extra></extra>"), row=1, col=col)
    title = (f"Is attention an explanation? Mean over {int(table['faces'].max())} faces (bars ± standard error)"
             "<br><sub>native maps (blue), Grad-CAM (red), random maps (◇)"
             + (f"; left out, no attention of their own: {', '.join(left_out)}" if left_out else "") + "</sub>")
    plot_px = 40 + 34 * len(labels)  # the axes' height: the figure's less its margins
    fig.update_layout(title=title, height=plot_px + 170, margin=dict(l=20, r=20, t=120, b=50),
                      legend=dict(orientation="h", y=-35 / plot_px, yanchor="top", x=0))
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(autorange="reversed", automargin=True)
    return fig


def attention_study(models, packed, n: int = 50, *, hold: Callable | None = None, cache_dir=None,
                    progress: Callable[[float, str], None] | None = None) -> pd.DataFrame:
    """:func:`attention_faithfulness` for every model of ``models`` that has native maps (``hold(model)``
    around each face's work); rows of all of them. ValueError when none has."""
    chosen = [m for m in models if has_native_attention(m.model)]
    if not chosen:
        from ferx.models import get_model_info, list_models

        with_maps = [get_model_info(a).description.split(" (")[0] for a in list_models() if get_model_info(a).native_maps]
        raise ValueError(f"None of the analysed models ({', '.join(m.path.name for m in models)}) has attention of "
                         f"its own (native maps) to test: analyse a {' or '.join(with_maps)} checkpoint")
    frames = []
    for i, loaded in enumerate(chosen):
        report = (lambda f, i=i, m=loaded: progress((i + f) / len(chosen), m.path.name)) if progress else None
        frames.append(attention_faithfulness(loaded, packed, n, hold=functools.partial(hold, loaded) if hold
                                             else nullcontext, cache_dir=cache_dir, progress=report))
    return pd.concat(frames, ignore_index=True)
