"""The research views on the real FERPlus test split: selections (sorted, summarised, exported), where a
photo lands among a model's faces, label noise against the annotators' votes, model disagreement with map
agreement, and native attention against Grad-CAM on the same faithfulness test. Small slices keep it fast."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import CHECKPOINTS
from ferx.analysis import analyze_packed
from ferx.analysis.embeddings import project
from ferx.checkpoint import load_checkpoint
from ferx.data import load_split, pack_split

MINI = CHECKPOINTS / "mini_xception_fer2013"
N = 300  # faces of the FERPlus test split (the first, in split order)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("research-cache")


@pytest.fixture(scope="module")
def packed(data_root):
    return pack_split(load_split("ferplus", "test", data_root), progress=False).head(N)


@pytest.fixture(scope="module")
def mini():
    return load_checkpoint(MINI, "cpu")


@pytest.fixture(scope="module")
def run(mini, packed, cache):
    return analyze_packed([mini], packed, progress=False, cache_dir=cache / "analysis")[0]


def test_a_selection_is_sorted_summarised_and_exported(run, packed, tmp_path):
    from ferx.analysis.selection import caption, selection_frame, selection_summary, summary_text, write_csv

    ids = [5, 3, 250, 3, 17]
    frame = selection_frame(run, ids, "confidence, highest first")
    assert sorted(frame.index) == [3, 5, 17, 250]  # duplicates dropped
    assert list(frame["confidence"]) == sorted(frame["confidence"], reverse=True)
    assert list(selection_frame(run, ids, "sample id").index) == [3, 5, 17, 250]
    assert list(selection_frame(run, ids).index) == [5, 3, 250, 17]  # as given: a ranking keeps its order
    summary = selection_summary(frame)
    truth = run.frame().loc[[3, 5, 17, 250]]
    assert summary["n"] == 4 and summary["accuracy"] == pytest.approx(truth["correct"][truth["scored"]].mean())
    assert summary["true_classes"] == truth["true"].value_counts().to_dict()
    assert summary_text(frame, run.name).startswith("**4 faces**")
    row = frame.loc[17]
    text = caption(17, row)
    assert text.startswith(f"#17 {row['true']} ") and text.endswith(f"{row['confidence']:.2f}") and len(text) < 32
    csv = pd.read_csv(write_csv(frame, tmp_path / "sel.csv"), index_col="sample")
    assert list(csv.index) == list(frame.index) and {"path", "true", "pred", "confidence", "loss"} <= set(csv.columns)
    with pytest.raises(ValueError, match="sample ids must lie in 0..299"):
        selection_frame(run, [300])
    voted = selection_frame(run, ids, votes=packed.soft_targets)  # FERPlus: the votes beside the probabilities
    assert np.allclose(voted[[f"votes_{c}" for c in run.dataset_classes]].to_numpy(), packed.soft_targets[[5, 3, 250, 17]])
    assert (voted["vote_top"] == voted["true"]).all() or not run.scored[ids].all()
    assert "against the votes" in summary_text(voted, run.name)
    # a face of a class the 7-class model lacks (contempt) is neither right nor wrong: accuracy counts the others
    left_out = np.flatnonzero(~run.scored)
    assert len(left_out) and run.dataset_classes[run.targets[left_out[0]]] == "contempt"
    mixed = selection_frame(run, [*left_out[:2], 3, 5], votes=packed.soft_targets)
    s = selection_summary(mixed)
    assert s["n"] == 4 and s["scored"] == 2 and s["accuracy"] == pytest.approx(run.correct[[3, 5]].mean())
    assert s["vote_weighted_accuracy"] == pytest.approx(mixed.loc[[3, 5], "vote_pred"].mean())
    assert f"accuracy **{s['accuracy']:.1%}** (of the 2 faces of its classes)" in summary_text(mixed, run.name)
    assert "no accuracy" in summary_text(selection_frame(run, left_out[:2]), run.name)
    unjudged = selection_frame(run, left_out[:1]).iloc[0]
    assert caption(int(left_out[0]), unjudged) == f"#{left_out[0]} contempt · {unjudged['pred']} {unjudged['confidence']:.2f}"
    from ferx.analysis.figures import point_colours

    colours = point_colours(run, "correct")
    assert set(colours[left_out]) == {"not a class of the model"}
    assert (colours[run.scored] == np.where(run.correct[run.scored], "correct", "wrong")).all()


def test_a_test_face_lands_on_itself_among_its_own_dataset(mini, run, packed, cache):
    from ferx.analysis.placement import own_distances, place

    emb = cache / "embeddings"
    pca, tsne = project(run, "pca", cache_dir=emb), project(run, "tsne", cache_dir=emb)
    for sample in (17, 123):
        where = place(mini, run, packed.images[sample], k=8, methods=("pca", "tsne"), cache_dir=emb)
        assert where.neighbours.index[0] == sample and where.neighbours["distance"].iloc[0] < 1e-3
        assert where.neighbours["distance"].is_monotonic_increasing and len(where.neighbours) == 9  # itself + 8
        assert where.in_data == sample and where.k == 8 and f"face #{sample} of the data" in where.verdict()
        assert where.neighbours.loc[sample, "true"] == run.frame().loc[sample, "true"]
        assert np.allclose(where.coords["pca"], pca[sample], atol=1e-3)  # the same PCA axes
        assert np.allclose(where.coords["tsne"], tsne[sample], atol=1e-2)  # its neighbours' place: its own
        assert where.predicted == run.frame().loc[sample, "pred"] and not where.unlike_the_data
        # typicality without the face itself, as every dataset face's own is measured: the same percentile
        others = where.neighbours.iloc[1:]
        assert where.agreement == pytest.approx((others["true"] == where.predicted).mean())
        assert where.distance == pytest.approx(others["distance"].mean())
        own = own_distances(run, 8)  # (within one face: its own distance may sit a rounding error above its copy's)
        assert where.percentile == pytest.approx(100 * (own < own[sample]).mean(), abs=100 / len(own) + 1e-9)
    gray = place(mini, run, np.full((48, 48), 128, np.uint8), methods=("pca",), cache_dir=emb)
    assert gray.unlike_the_data and "unlike anything in the data" in gray.verdict()
    assert gray.in_data is None and len(gray.neighbours) == gray.k == 8
    hot = run.with_temperature(2.0)  # a calibrated analysis: the photo's confidence is scaled as its faces' are
    assert place(mini, hot, packed.images[17], methods=("pca",)).confidence == pytest.approx(hot.confidence[17], abs=1e-5)
    assert "tsne" not in place(mini, run, packed.images[0], methods=("tsne",), cache_dir=cache / "empty").coords


def test_a_dimension_constant_over_the_faces_does_not_throw_a_new_face_far_away(mini, run, packed, cache):
    """Conv-cut's FERPlus checkpoint on CK+ has 11 of its 32 embedding dimensions constant over the faces; the
    standardiser divided them by 1e-8, so a photo one bf16 step (0.004) off there landed ~4e5 away, "unlike
    anything in the data". Scikit-learn's StandardScaler keeps scale 1 for such a dimension."""
    import dataclasses

    from ferx.analysis.embeddings import standardiser
    from ferx.analysis.placement import embed, place

    sample = 17
    own = embed(mini, packed.images[sample], run.compute_dtype)[1]
    embeddings = run.embeddings.copy()
    embeddings[:, 0] = own[0] + 0.004  # every face of the run one bf16 step from the photo in dimension 0
    dead = dataclasses.replace(run, embeddings=embeddings, key="")
    where = place(mini, dead, packed.images[sample], k=4, methods=("pca",), cache_dir=cache / "embeddings-dead")
    assert where.neighbours.index[0] == sample and where.neighbours["distance"].iloc[0] < 0.01
    assert not where.unlike_the_data
    z = standardiser(embeddings)(np.stack([embeddings[0], own]))
    assert np.allclose(z[:, 0], [0, -0.004], atol=1e-6)  # the constant dimension: centred, not scaled


def test_a_face_lands_on_itself_in_a_bf16_analysis(mini, packed, cache):
    """A run computed in bf16 (what --precision auto gives a checkpoint whose card shows bf16 agrees)
    embeds the uploaded face in bf16 too: in fp32 it would land far from its own copy."""
    from ferx.analysis.placement import place
    from ferx.device import cpu_has_bf16

    if not cpu_has_bf16():
        pytest.skip("this CPU has no native bf16")
    bf16 = analyze_packed([mini], packed, progress=False, cache_dir=cache / "analysis", precision="bf16")[0]
    assert bf16.compute_dtype == "bf16"
    where = place(mini, bf16, packed.images[42], k=4, methods=("pca",), cache_dir=cache / "embeddings-bf16")
    assert where.neighbours.index[0] == 42 and where.neighbours["distance"].iloc[0] < 1e-3


@pytest.fixture(scope="module")
def bank():
    from webapp.model_bank import ModelBank

    return ModelBank.load(CHECKPOINTS, "cpu")


@pytest.fixture(scope="module")
def analysis(bank, packed, cache):
    """Every small trained checkpoint (under 2 M parameters: fast on CPU) on the slice, as the app holds it."""
    from webapp.dataset_tab import Analysis

    small = [m for m in bank.models.values() if sum(p.numel() for p in m.model.parameters()) < 2_000_000]
    assert len(small) >= 2
    return Analysis(analyze_packed(small, packed, progress=False, cache_dir=cache / "analysis"), packed)


def test_the_app_places_a_photo_among_every_models_faces(bank, analysis, tmp_path):
    from webapp.dataset_tab import place_photo

    sample = 42
    photo = tmp_path / "face.png"
    Image.fromarray(analysis.packed.images[sample]).resize((144, 144), Image.Resampling.NEAREST).save(photo)
    model = analysis.runs[1].name
    table, items, title, placed = place_photo(bank, analysis, str(photo), True, 0, 5, model)
    assert list(table["model"]) == [r.name for r in analysis.runs] and model in title
    assert set(placed) == set(table["model"]) and all("pca" in where for where in placed.values())
    assert len(items) == 6 and items[0][1].startswith(f"#{sample} ")  # enlarged 3x, it still finds itself first
    assert f"first, the photo itself: face #{sample} of the data" in title
    assert table["verdict"].str.contains(f"labelled .* \\(it is face #{sample} of the data").all()


def test_label_noise_scores_models_against_the_votes_and_ranks_doubtful_faces(analysis):
    from ferx.analysis.labelnoise import ranking, vote_frame, vote_metrics, votes_in_model_space

    soft = analysis.packed.soft_targets
    metrics = vote_metrics(analysis.runs, soft)
    for run in analysis.runs:
        votes = votes_in_model_space(run, soft)
        reach = votes.sum(1)
        assert np.allclose(reach, 1) if "contempt" in run.model_classes else (reach <= 1 + 1e-6).all()
        frame = vote_frame(run, soft)
        # FERPlus labels are the votes' majority: also a contempt face's, for a model without contempt
        assert (frame["vote_top"] == frame["true"]).all() and (~run.scored).any() != ("contempt" in run.model_classes)
        assert np.allclose(frame["ambiguity"], vote_frame(analysis.runs[0], soft)["ambiguity"])  # the votes', not the model's
        row = metrics.loc[run.name]
        assert row["majority accuracy"] == pytest.approx(run.correct[run.scored].mean())
        assert 0 < row["vote-weighted accuracy"] <= row["plausible accuracy"] <= 1
        assert row["vote-weighted accuracy"] <= row["annotator agreement"] + 0.1
        errors = ranking(run, soft, "likely label errors", 20)
        assert (errors["pred"] != errors["vote_top"]).all() and errors["label_error"].is_monotonic_decreasing
        assert run.scored[errors.index].all() and frame["label_error"][~run.scored].isna().all()
        top = errors.iloc[0]
        assert top["label_error"] == pytest.approx(top["confidence"] * top["vote_pred"] / top["vote_top_share"])
        ambiguous = ranking(run, soft, "ambiguous faces", 20)
        assert ambiguous["ambiguity"].iloc[0] == frame["ambiguity"].max()
        if "contempt" in run.model_classes:  # FERPlus leaves out ties (a 7-class model can see one: no contempt)
            assert frame["ambiguity"].max() < 1
        assert (ambiguous["vote_second_share"] <= ambiguous["vote_top_share"]).all()
    with pytest.raises(ValueError, match="needs FERPlus"):
        votes_in_model_space(analysis.runs[0], None)


def test_the_label_noise_view_fills_the_gallery_in_ranking_order_and_shows_a_faces_votes(analysis, tmp_path):
    from types import SimpleNamespace

    from webapp.dataset_tab import gallery_page, noise_row_click, show_label_noise

    model = analysis.runs[-1].name
    swept = set()
    metrics, table, csv, chosen = show_label_noise(analysis, "likely label errors", model, swept)
    assert list(metrics["model"]) == [r.name for r in analysis.runs] and swept == {csv}
    assert chosen["ids"] == list(table["sample"]) and chosen["model"] == model
    assert all(len(str(v).split(".")[-1]) <= 3 for v in table["confidence"])  # shown to 3 decimals, not float32's 16
    items, shown, title, summary, page = gallery_page(analysis, chosen, "as given", 1)
    assert shown == list(table["sample"]) and items[0][1].startswith(f"#{table['sample'][0]} ")
    assert pd.read_csv(csv)["sample"].tolist() == list(table["sample"])
    fig = noise_row_click(analysis, table, SimpleNamespace(index=[0, 2]))
    sample = table["sample"][0]
    votes = dict(zip(analysis.packed.classes, analysis.packed.soft_targets[sample]))
    assert fig.data[0].name.startswith("annotators") and list(fig.data[0].x)[:2] == ["angry", "disgust"]  # canonical
    assert np.allclose(fig.data[0].y, [votes[c] for c in fig.data[0].x])  # each class's own votes
    assert [t.name for t in fig.data[1:]] == [r.name for r in analysis.runs]


def test_disagreement_explorer_compares_both_models_maps_where_they_disagree(bank, analysis, cache):
    from ferx.analysis.disagreement import class_agreement, disagreement_frame, gradcam_maps
    from ferx.analysis.tables import predicted_names

    a, b = analysis.runs[0], analysis.runs[-1]
    la, lb = bank.models[a.name], bank.models[b.name]
    maps = cache / "maps"
    frame, maps_a, maps_b = disagreement_frame(la, lb, a, b, analysis.packed, limit=40, sort="maps least alike",
                                               cache_dir=maps)
    differ = np.flatnonzero(predicted_names(a) != predicted_names(b))
    assert len(frame) == min(40, len(differ)) and set(frame.index) <= set(differ)
    assert (frame[f"pred_{a.name}"] != frame[f"pred_{b.name}"]).all() and frame["spearman"].is_monotonic_increasing
    assert maps_a.shape == (len(frame), 48, 48) and (maps_a >= 0).all()
    same = gradcam_maps(la, analysis.packed, frame.index[:3], a.preds[frame.index[:3]],  # recomputed for another
                        cache_dir=maps)                                                 # id set
    assert np.allclose(same, maps_a[:3], atol=2e-3 * maps_a.max())  # the rows follow the frame's order
    from ferx.explain.faithfulness import map_agreement

    assert frame["spearman"].iloc[0] == pytest.approx(map_agreement(maps_a[0], maps_b[0])["spearman"], abs=1e-6)
    table = class_agreement(la, lb, a, b, analysis.packed, per_class=5, cache_dir=maps)
    counts = np.bincount(analysis.packed.targets, minlength=len(analysis.packed.classes))
    assert table.loc["(all)", "faces"] == np.minimum(counts, 5).sum()  # the slice has fewer of a rare class
    present = {c for c, n in zip(analysis.packed.classes, counts) if n}
    assert set(table.index) == present | {"(all)"}
    assert ((table["labels agree"] >= 0) & (table["labels agree"] <= 1)).all()
    with pytest.raises(ValueError, match="two different models"):
        disagreement_frame(la, la, a, a, analysis.packed)


def test_the_maps_beside_a_runs_prediction_explain_that_prediction(bank, analysis, tmp_path):
    """A bf16 run's prediction is not always the fp32 one (convcut_ferplus on CK+ test, face 42: the run says one
    class, fp32 another); the disagreement explorer's and the region breakdown's Grad-CAM explained the fp32
    argmax beside the run's label. Here a run whose top two classes are swapped on every face stands for it."""
    import dataclasses

    from ferx.analysis.disagreement import class_agreement, disagreement_frame
    from ferx.analysis.regions import region_shares
    from ferx.data.preprocess import to_model_input
    from ferx.explain.cam import cam_maps
    from ferx.explain.maps import resize_map
    from webapp.dataset_tab import Analysis, show_regions

    a, b = analysis.runs[0], analysis.runs[-1]
    la, packed = bank.models[a.name], analysis.packed
    logits = a.logits.copy()
    top2 = np.argsort(-logits, 1)[:, :2]
    rows = np.arange(len(logits))
    logits[rows, top2[:, 0]], logits[rows, top2[:, 1]] = a.logits[rows, top2[:, 1]], a.logits[rows, top2[:, 0]]
    second = dataclasses.replace(a, logits=logits)
    assert (second.preds != a.preds).all()

    def map_of(face, target):
        x = to_model_input(packed.images[face:face + 1], la.input_spec)
        return resize_map(cam_maps(la.model, x, "gradcam", targets=target)[0].values, packed.images.shape[1:3])

    frame, maps_a, _ = disagreement_frame(la, bank.models[b.name], second, b, packed, limit=3, cache_dir=tmp_path)
    face = int(frame.index[0])
    assert frame.loc[face, f"pred_{a.name}"] == a.model_classes[second.preds[face]]  # the label shown beside the map
    assert np.allclose(maps_a[0], map_of(face, int(second.preds[face])), atol=1e-3 * maps_a[0].max())
    assert not np.allclose(maps_a[0], map_of(face, int(a.preds[face])), atol=1e-3 * maps_a[0].max())
    assert len(class_agreement(la, bank.models[b.name], second, b, packed, per_class=1, cache_dir=tmp_path))
    shares = region_shares(la, packed, preds=second.preds, per_class=1, cache_dir=tmp_path)
    gradcam = shares[shares["map"] == "gradcam"]
    assert (gradcam["predicted"].to_numpy() == np.asarray(a.model_classes)[second.preds[gradcam["sample"]]]).all()
    shown = show_regions(bank, Analysis([second], packed), 1, set(), progress=lambda *args, **kwargs: None)[0]
    own = show_regions(bank, Analysis([a], packed), 1, set(), progress=lambda *args, **kwargs: None)[0]
    assert not np.allclose(shown.select_dtypes("number"), own.select_dtypes("number"))  # the run's classes explained


def test_the_disagreement_view_shows_face_and_both_maps_with_scores(bank, analysis):
    from webapp.dataset_tab import show_disagreement

    a, b = analysis.runs[0].name, analysis.runs[-1].name
    swept = set()
    items, table, classes, csv, chosen, tiles = show_disagreement(bank, analysis, a, b, "both most confident", 30, 5,
                                                                  swept)
    tile = items[0][0]
    assert len(items) == min(24, len(table)) and 0.7 < tile.shape[1] / tile.shape[0] < 1.3  # 2 x 2: fits a gallery cell
    assert tiles == list(table["sample"])[:len(items)]  # a click on tile j opens this face in Explain
    first = table.iloc[0]
    assert items[0][1].startswith(f"#{first['sample']} {first['true']} · A {first[f'pred_{a}']}")
    assert f"ρ {first['spearman']:.2f}" in items[0][1] and chosen["ids"] == list(table["sample"])
    assert table["min_confidence"].is_monotonic_decreasing and list(classes["true"])[-1] == "(all)"
    # the selection's CSV (the gallery's download) holds both models' predictions, face by face
    from webapp.dataset_tab import selection_csv

    sel = pd.read_csv(selection_csv(analysis, chosen, "as given", swept), index_col="sample")
    assert list(sel.index) == list(table["sample"])
    for name in (a, b):
        assert (sel[f"pred_{name}"] == table.set_index("sample")[f"pred_{name}"]).all()
        assert {f"confidence_{name}", f"loss_{name}"} <= set(sel.columns)
    assert "pred" not in sel.columns and sel.columns.tolist()[:2] == ["path", "true"]
    assert sel.columns.str.startswith("votes_").sum() == len(analysis.runs[0].dataset_classes)
    from ferx.analysis.selection import pair_frame

    plus, fer = (next(r for r in analysis.runs if r.name == n) for n in ("lanmsff_ferplus", "mini_xception_fer2013"))
    both = pair_frame(plus, fer, [0, 1])  # FERPlus's own order starts neutral, happy; FER-2013's angry, disgust
    p_a, p_b = ([c.removeprefix("p_").removesuffix(f"_{r.name}") for c in both.columns
                 if c.startswith("p_") and c.endswith(r.name)] for r in (plus, fer))
    assert p_a[:7] == p_b == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]  # one class order


def test_a_flat_map_has_no_top_10_percent_to_overlap_and_the_view_says_so(bank, analysis, tmp_path, monkeypatch):
    """Model B's Grad-CAM flat (all zero, as a map whose every gradient weight is negative is): its top-10 % IoU
    with A's map read 0.0-ish numbers made of tie order; now it is blank in the table and CSV, "IoU —" on a tile."""
    from ferx.analysis import disagreement
    from webapp import dataset_tab

    a, b = analysis.runs[0].name, analysis.runs[-1].name
    real = disagreement.gradcam_maps

    def b_flat(loaded, packed, ids, targets, **kwargs):
        maps = real(loaded, packed, ids, targets, **kwargs)
        return np.zeros_like(maps) if loaded is bank.models[b] else maps

    monkeypatch.setattr(disagreement, "gradcam_maps", b_flat)
    monkeypatch.setattr(dataset_tab, "study_cache", lambda analysis: __import__("contextlib").nullcontext(tmp_path))
    items, table, classes, csv, _, _ = dataset_tab.show_disagreement(bank, analysis, a, b, "least top-10 % overlap",
                                                                     4, 2, set())
    assert table["top_k_iou"].isna().all() and items[0][1].endswith("· IoU —")
    assert pd.read_csv(csv)["top_k_iou"].isna().all() and classes["top-10 % IoU"].isna().all()


def test_native_attention_and_gradcam_face_the_same_faithfulness_test(bank, analysis, tmp_path, monkeypatch):
    """Two faces (the test costs ~8 s per face and model on 2 cores): the table has every native map the
    registry declares and Grad-CAM, AUCs in [0, 1]; the app's view reads the cache the core wrote."""
    from ferx.analysis.attention import attention_study, attention_table
    from ferx.data.packed import spread_indices
    from ferx.models import get_model_info
    from webapp.dataset_tab import show_attention

    monkeypatch.setenv("FERX_CACHE_DIR", str(tmp_path))
    assert spread_indices(300, 4).tolist() == [0, 100, 199, 299] and spread_indices(3, 10).tolist() == [0, 1, 2]
    with_maps = [bank.models[r.name] for r in analysis.runs if get_model_info(bank.models[r.name].name).native_maps]
    loaded = with_maps[0]
    rows = attention_study([bank.models["mini_xception_fer2013"], loaded], analysis.packed, 2)
    assert set(rows["model"]) == {loaded.path.name}  # mini-Xception has no attention of its own
    table = attention_table(rows)
    declared = [m.name for m in get_model_info(loaded.name).native_maps]
    assert list(table.loc[loaded.path.name].index) == declared + ["gradcam"] and (table["faces"] == 2).all()
    aucs = table[["deletion", "insertion", "random_deletion", "random_insertion"]].to_numpy()
    assert ((aucs >= 0) & (aucs <= 1)).all()
    per_map = rows.groupby(["model", "map"], sort=False)["deletion"]
    assert np.allclose(table["deletion_se"], per_map.std() / np.sqrt(per_map.count()))  # the bars' error bars
    import time

    start = time.perf_counter()
    again = attention_study([loaded], analysis.packed, 2)
    assert time.perf_counter() - start < 2 and np.allclose(again["deletion"], rows["deletion"])  # cached
    with pytest.raises(ValueError, match=r"None of the analysed models \(mini_xception_fer2013\) has attention of its "
                       r"own \(native maps\) to test: analyse a Conv-cut or LANMSFF checkpoint"):
        attention_study([bank.models["mini_xception_fer2013"]], analysis.packed, 2)
    one = type(analysis)([r for r in analysis.runs if r.name == loaded.path.name], analysis.packed)
    shown, fig, (csv, html) = show_attention(bank, one, 2, set())
    assert shown.round(3).equals(table.round(3).reset_index()) and len(fig.data) == 4
    assert len(pd.read_csv(csv)) == len(rows) and "plotly" in Path(html).read_text()[:300_000]


def test_the_gallery_pages_through_a_large_selection_and_rings_it_in_the_embedding(analysis):
    import json

    from webapp.dataset_tab import embedding_view, gallery_page, selection

    model = analysis.runs[0].name
    chosen = selection(model, range(150), "**150 faces**", "confusion")
    _, shown, title, summary, page = gallery_page(analysis, chosen, "sample id", 2)
    assert shown == list(range(60, 120)) and page == 2 and title.endswith("page 2 of 3")
    assert summary.startswith("**150 faces**")
    _, shown, _, _, page = gallery_page(analysis, chosen, "sample id", 9)
    assert shown == list(range(120, 150)) and page == 3  # past the end: the last page
    _, shown, _, _, _ = gallery_page(analysis, chosen, "confidence, lowest first", 1)
    conf = analysis.runs[0].confidence
    assert conf[shown[0]] == conf[:150].min()
    fig = json.loads(embedding_view(analysis, model, "pca", "correct", chosen).to_json())
    ringed = [t for t in fig["data"] if t["name"].startswith("highlighted")]
    assert len(ringed) == 1 and ringed[0]["name"] == "highlighted (150)"
    own = selection(model, [1, 2], "lasso", "embedding")  # its own lasso is not ringed again
    assert not [t for t in embedding_view(analysis, model, "pca", "true", own).data if t.name.startswith("highlighted")]
