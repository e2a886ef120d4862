"""The figures a user reads, recomputed here by hand (numpy, scikit-learn) on real FERPlus test faces: the
reliability curve and its ECE, the NLL, the rankings and selections, the label-noise scores, the tables.

Each test pins a number a view shows to an independent computation of it, so a mistake that leaves the shape
of a table intact (bins shifted by one, a sort reversed, a column from the wrong model) fails here. The faces:
600 of the FERPlus test split spread over it (every class, 5 contempt faces a 7-class model cannot score);
the models: the FER-2013 mini-Xception (angry first) and an 8-class one with random weights (FERPlus's order,
neutral first), cheap enough to run on every face."""

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import CHECKPOINTS
from ferx.analysis import analyze_packed
from ferx.checkpoint import load_checkpoint, save_checkpoint
from ferx.data import FERPLUS_8, load_split, pack_split
from ferx.models import create_model

N = 600


@pytest.fixture(scope="module")
def packed(data_root):
    return pack_split(load_split("ferplus", "test", data_root), progress=False).spread(N)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("figures")
    untrained = save_checkpoint(create_model("mini_xception", num_classes=8), folder / "untrained8", labels=FERPLUS_8)
    return [load_checkpoint(CHECKPOINTS / "mini_xception_fer2013", "cpu"), load_checkpoint(untrained, "cpu")]


@pytest.fixture(scope="module")
def runs(models, packed, tmp_path_factory):
    return analyze_packed(models, packed, progress=False, cache_dir=tmp_path_factory.mktemp("analysis"))


@pytest.fixture(scope="module")
def mini(runs):
    return runs[0]


def softmax(z):
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def test_the_reliability_curve_and_its_ece_are_15_equal_width_bins_recomputed_by_hand(mini):
    from ferx.analysis import summary_table
    from ferx.analysis.figures import reliability_figure
    from ferx.analysis.metrics import classification_metrics

    y, probs = mini.model_targets[mini.scored], mini.probs[mini.scored]
    conf, right = probs.max(1), probs.argmax(1) == y
    b = np.clip(np.ceil(conf * 15).astype(int) - 1, 0, 14)  # bin k holds the confidences in (k/15, (k+1)/15]
    x, acc, count = (np.array(v) for v in zip(*[(conf[b == k].mean(), right[b == k].mean(), (b == k).sum())
                                                 for k in range(15) if (b == k).any()]))
    ece = float((count * np.abs(acc - x)).sum() / count.sum())
    curve = reliability_figure([mini]).data[1]
    assert np.allclose(curve.x, x, atol=1e-6) and np.allclose(curve.y, acc)  # x confidence, y accuracy
    assert list(curve.customdata) == list(count) and curve.name.endswith(f"ECE {ece:.3f}")
    assert summary_table([mini]).loc[mini.name, "ece"] == pytest.approx(ece, abs=1e-6)
    metrics = classification_metrics(y, probs, mini.model_classes)
    assert metrics["ece_bins"] == 15 and metrics["ece"] == pytest.approx(ece, abs=1e-6)


def test_the_summary_tables_nll_is_the_mean_cross_entropy_at_the_runs_temperature(mini):
    from sklearn.metrics import log_loss

    from ferx.analysis import summary_table

    y, logits = mini.model_targets[mini.scored], mini.logits[mini.scored].astype(np.float64)
    for t in (1.0, 1.7):
        row = summary_table([mini.with_temperature(t)]).loc[mini.name]
        assert (row["n"], row["n_excluded"]) == (N - 5, 5)  # the contempt faces left out, and counted
        assert row["nll"] == pytest.approx(log_loss(y, softmax(logits / t), labels=range(7)), rel=1e-5)
        assert row["accuracy"] == pytest.approx((logits.argmax(1) == y).mean())


@pytest.fixture(scope="module")
def chosen(mini):
    """40 faces in split order and every contempt face (a class mini-Xception lacks: not scored)."""
    contempt = np.flatnonzero(~mini.scored)
    assert len(contempt) == 5 and contempt[0] == 0
    return np.concatenate([np.arange(40), contempt[1:]])


def test_each_sort_of_a_selection_is_the_order_its_name_says(mini, chosen):
    from ferx.analysis.selection import SORTS, selection_frame

    probs = mini.probs.astype(np.float64)
    top2 = np.sort(probs, 1)[:, -2:]
    truth = np.clip(mini.model_targets, 0, None)
    loss = np.where(mini.scored, -np.log(probs[np.arange(len(probs)), truth]), np.nan)
    by = {"confidence, highest first": -probs.max(1), "confidence, lowest first": probs.max(1),
          "loss, highest first": -loss, "margin, smallest first": top2[:, 1] - top2[:, 0]}
    assert set(by) | {"as given", "sample id"} == set(SORTS)
    for sort, key in by.items():
        shown = list(selection_frame(mini, chosen, sort).index)
        keys = key[shown]
        assert np.all(np.diff(keys[~np.isnan(keys)]) >= -1e-6), sort  # in order; a face without a loss last
        assert np.isnan(keys[len(keys[~np.isnan(keys)]):]).all() and sorted(shown) == sorted(chosen)
    assert list(selection_frame(mini, chosen[::-1], "sample id").index) == sorted(chosen)


def test_a_selections_summary_and_captions_leave_a_face_of_a_class_the_model_lacks_unjudged(mini, chosen):
    from ferx.analysis.selection import caption, selection_frame, summary_text

    frame = selection_frame(mini, chosen)
    scored = mini.scored[chosen]
    right = mini.preds[chosen] == mini.model_targets[chosen]
    names = np.asarray(mini.model_classes)[mini.preds]
    text = summary_text(frame, mini.name)
    assert f"accuracy **{right[scored].mean():.1%}** (of the {scored.sum()} faces of its classes)" in text
    assert f"mean confidence **{mini.probs[chosen].max(1).mean():.2f}**" in text
    assert "(of the" not in summary_text(selection_frame(mini, chosen[1:40]), mini.name)  # faces 1-39: all of its classes
    for i in chosen:
        said = (f"· {names[i]}" if not mini.scored[i] else "✓" if names[i] == mini.model_classes[mini.model_targets[i]]
                else f"→ {names[i]}")
        assert caption(int(i), frame.loc[i]) == f"#{i} {mini.dataset_classes[mini.targets[i]]} {said} " \
                                                f"{mini.probs[i].max():.2f}"


def test_a_selection_shows_and_exports_each_faces_own_votes_and_probabilities(mini, chosen, packed, tmp_path):
    from ferx.analysis.selection import selection_frame, selection_summary, write_csv

    frame = selection_frame(mini, chosen[::-1], "confidence, lowest first", votes=packed.soft_targets)
    ids = frame.index.to_numpy()
    for k, c in enumerate(packed.classes):
        assert np.allclose(frame[f"votes_{c}"], packed.soft_targets[ids, k])
    for k, c in enumerate(mini.model_classes):
        assert np.allclose(frame[f"p_{c}"], mini.probs[ids, k])
    # the share of the 10 annotators who chose the model's class, over the faces it scores
    names = np.asarray(mini.model_classes)[mini.preds[ids]]
    chose = np.array([packed.soft_targets[i, packed.classes.index(n)] for i, n in zip(ids, names)])
    summary = selection_summary(frame)
    assert summary["vote_weighted_accuracy"] == pytest.approx(chose[mini.scored[ids]].mean())
    csv = pd.read_csv(write_csv(frame, tmp_path / "sel.csv"), index_col="sample")
    assert list(csv.index) == list(ids)
    assert np.allclose(csv["confidence"], mini.probs[ids].max(1), atol=5e-5)  # to 4 decimals


def test_both_disagreement_lists_rank_the_faces_both_models_are_surest_of(runs, packed):
    from ferx.analysis.disagreement import disagreeing
    from ferx.analysis.tables import disagreements

    a, b = runs
    names = [np.asarray(r.model_classes)[r.logits.argmax(1)] for r in runs]
    differ = np.flatnonzero(names[0] != names[1])
    both = np.minimum(a.probs.max(1), b.probs.max(1))
    expected = differ[np.argsort(-both[differ], kind="stable")]
    assert len(expected) > 20 and list(disagreeing(a, b, 20)) == list(expected[:20])
    table = disagreements(a, b, k=20)
    assert list(table.index) == list(expected[:20])
    every = disagreements(a, b, k=None)  # a contempt face among them: its true label, not one of A's
    assert list(every.index) == list(expected) and "contempt" in set(every["true"])
    assert list(every["true"]) == [packed.classes[t] for t in packed.targets[expected]]
    for run, name in zip(runs, names):
        assert list(table[f"pred_{run.name}"]) == list(name[expected[:20]])
        assert np.allclose(table[f"confidence_{run.name}"], run.probs[expected[:20]].max(1))
    assert np.allclose(table["min_confidence"], both[expected[:20]])


def votes_of(run, packed):
    """The annotators' vote shares in the run's label space, by class name (0 for a class the data lacks)."""
    return np.stack([packed.soft_targets[:, packed.classes.index(c)] for c in run.model_classes], 1).astype(np.float64)


def test_scores_against_the_annotators_votes_recomputed_by_hand(runs, packed):
    from ferx.analysis.labelnoise import vote_metrics

    table = vote_metrics(runs, packed.soft_targets)
    for run in runs:
        keep = run.scored
        v, p = votes_of(run, packed)[keep], run.probs[keep].astype(np.float64)
        pred = run.logits[keep].argmax(1)
        chose = v[np.arange(len(v)), pred]  # share of the annotators who chose the model's class
        row = table.loc[run.name]
        assert row["faces"] == keep.sum()
        assert row["majority accuracy"] == pytest.approx((pred == run.model_targets[keep]).mean())
        assert row["vote-weighted accuracy"] == pytest.approx(chose.mean())
        assert row["plausible accuracy"] == pytest.approx((chose > 0).mean())
        assert row["annotator agreement"] == pytest.approx(v.max(1).mean())
        assert row["soft cross-entropy"] == pytest.approx(-(v * np.log(np.maximum(p, 1e-12))).sum(1).mean(), rel=1e-5)
        assert row["votes out of reach"] == pytest.approx(max(0.0, 1 - v.sum(1).mean()), abs=1e-9)
    assert table.loc[runs[0].name, "votes out of reach"] > 0  # mini-Xception has no contempt to vote for


def test_the_likely_label_errors_and_ambiguous_faces_recomputed_by_hand(mini, packed):
    from ferx.analysis.labelnoise import ranking, vote_frame

    soft = packed.soft_targets.astype(np.float64)
    frame = vote_frame(mini, packed.soft_targets)
    order = np.argsort(-soft, 1, kind="stable")
    top, second = soft[np.arange(len(soft)), order[:, 0]], soft[np.arange(len(soft)), order[:, 1]]
    names = np.asarray(packed.classes)
    pred = np.asarray(mini.model_classes)[mini.preds]
    chose = votes_of(mini, packed)[np.arange(len(soft)), mini.preds]
    conf = mini.probs.max(1)
    assert list(frame["vote_top"]) == list(names[order[:, 0]]) and list(frame["vote_second"]) == list(names[order[:, 1]])
    assert np.allclose(frame["vote_pred"], chose) and np.allclose(frame["ambiguity"], second / top)
    error = np.where(pred != names[order[:, 0]], conf * chose / top, 0.0)
    judged = mini.scored & np.isin(names[order[:, 0]], mini.model_classes)
    assert np.allclose(frame["label_error"][judged], error[judged]) and frame["label_error"][~judged].isna().all()
    for kind, score in (("likely label errors", np.where(judged, error, 0.0)), ("ambiguous faces", second / top)):
        ranked = ranking(mini, packed.soft_targets, kind, 25)
        expected = np.lexsort((-conf, -score))  # highest score first, ties: the more confident
        assert list(ranked.index) == list(expected[:25]), kind


def test_a_faces_vote_figure_puts_each_classs_votes_and_probabilities_on_its_own_bar(runs, packed):
    from ferx.analysis.labelnoise import votes_figure
    from ferx.data.labels import CANONICAL

    sample = int(np.flatnonzero(packed.soft_targets.max(1) < 0.6)[0])  # a face the annotators split on
    fig = votes_figure(sample, runs, packed.soft_targets)
    classes = [c for c in CANONICAL if c in packed.classes]
    assert [list(t.x) for t in fig.data] == [classes] * 3
    assert np.allclose(fig.data[0].y, [packed.soft_targets[sample, packed.classes.index(c)] for c in classes])
    for trace, run in zip(fig.data[1:], runs):
        assert trace.name == run.name
        assert np.allclose(trace.y, [run.probs[sample, run.model_classes.index(c)] if c in run.model_classes else 0
                                     for c in classes])


def test_the_pca_and_tsne_maps_of_the_embeddings_recomputed_by_hand(mini):
    """The embedding maps: PCA's 2 axes of the standardised embeddings (each dimension over its spread), t-SNE from
    their first 50 principal components, both recomputed with scikit-learn on 200 real faces."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler

    from ferx.analysis.embeddings import compute_projection

    z = mini.embeddings[:200]
    x = StandardScaler().fit_transform(z.astype(np.float64))
    assert z.shape[1] > 50 and np.ptp(z.std(0)) > 0.1  # dimensions of different spreads: scaling them matters
    pca = PCA(2, random_state=0).fit_transform(x)
    got = compute_projection(z, "pca")
    assert got * np.sign((got * pca).sum(0)) == pytest.approx(pca, abs=1e-6)  # each axis up to its sign
    tsne = TSNE(2, perplexity=30, init="pca", random_state=0).fit_transform(PCA(50, random_state=0).fit_transform(x))
    assert compute_projection(z, "tsne") == pytest.approx(tsne, abs=1e-4)


def test_a_new_face_is_placed_among_the_data_by_its_nearest_faces_measured_by_hand(models, mini, packed, data_root):
    """Faces of the FERPlus test split outside the 600: their neighbours, typicality and verdict by numpy."""
    from ferx.analysis.placement import place
    from ferx.inference import predict_logits_and_embeddings

    loaded = models[0]
    full = pack_split(load_split("ferplus", "test", data_root), progress=False)
    inside = set(packed.paths)
    outside = [i for i in range(len(full)) if full.paths[i] not in inside][:30]
    e = mini.embeddings.astype(np.float64)
    mean, spread = e.mean(0), e.std(0)
    spread[spread == 0] = 1
    z = (e - mean) / spread
    apart = np.sqrt(((z[:, None] - z[None]) ** 2).sum(-1))
    np.fill_diagonal(apart, np.inf)
    own = np.sort(apart, 1)[:, :8].mean(1)  # each dataset face's mean distance to its 8 nearest others
    hot = mini.with_temperature(1.5)
    logits, embeddings = predict_logits_and_embeddings(loaded.model, loaded.input_spec, full.images[outside])
    kinds = set()
    for i, logit, emb in zip(outside, logits.double().numpy(), embeddings.double().numpy()):
        d = np.sqrt((((emb - mean) / spread - z) ** 2).sum(1))
        near = np.argsort(d, kind="stable")[:8]
        where = place(loaded, hot, full.images[i], k=8, methods=("pca",))
        predicted = mini.model_classes[int(logit.argmax())]
        assert where.in_data is None and list(where.neighbours.index) == list(near)
        assert np.allclose(where.neighbours["distance"], d[near], rtol=1e-4)
        assert where.predicted == predicted and where.confidence == pytest.approx(softmax(logit[None] / 1.5).max(),
                                                                                  abs=1e-5)
        assert where.agreement == pytest.approx((np.asarray(mini.dataset_classes)[mini.targets[near]] == predicted).mean())
        percentile = 100 * (own < d[near].mean()).mean()
        assert where.percentile == pytest.approx(percentile, abs=100 / len(own))
        kind = "unlike anything" if percentile >= 99 else "typical" if percentile < 75 else "unusual"
        assert where.verdict().startswith(kind) and where.unlike_the_data == (kind == "unlike anything")
        kinds.add(kind)
    assert {"typical", "unusual"} <= kinds


def test_a_deletion_and_insertion_curve_and_their_auc_recomputed_by_hand(models, packed):
    """Deletion: the target's probability after the map's top pixels (highest first) are replaced by the blurred
    face; insertion: the blurred face with those pixels put back; each AUC the trapezoid area over 0..1."""
    from ferx.data.preprocess import to_model_input
    from ferx.explain.attributions import pixel_baseline
    from ferx.explain.faithfulness import deletion_insertion

    model, spec = models[0].model.eval(), models[0].input_spec
    x = to_model_input(packed.images[1:2], spec)
    # uniform noise (no two pixels tie): what the test's own first random map is, drawn with its seed (0) at the
    # map's resolution, so here the map and its random reference score alike
    values = np.random.default_rng(0).random((spec.size, spec.size)).astype(np.float32)
    target = 3
    f = deletion_insertion(model, x, values, target=target, n_steps=8, n_random=1)
    ref = pixel_baseline(x, spec, "blur")
    order = np.argsort(-values.ravel())
    with torch.no_grad():
        for step in (0, 3, 6, 8):
            mask = torch.zeros(values.size)
            mask[order[:round(step * values.size / 8)]] = 1
            mask = mask.view(1, 1, *values.shape)
            deleted, inserted = x * (1 - mask) + ref * mask, ref * (1 - mask) + x * mask
            p = torch.softmax(model(torch.cat([deleted, inserted])), 1)[:, target].numpy()
            assert f.deletion_curve[step] == pytest.approx(p[0], abs=1e-5)
            assert f.insertion_curve[step] == pytest.approx(p[1], abs=1e-5)
    grid = np.linspace(0, 1, 9)
    assert f.deletion_auc == pytest.approx(np.trapezoid(f.deletion_curve, grid), abs=1e-6)
    assert f.insertion_auc == pytest.approx(np.trapezoid(f.insertion_curve, grid), abs=1e-6)
    assert (f.random_deletion_auc, f.random_insertion_auc) == pytest.approx((f.deletion_auc, f.insertion_auc))
    # the random maps the map is compared with are drawn whatever the map: the same reference for any map
    other = deletion_insertion(model, x, -values, target=target, n_steps=8, n_random=1)
    assert (other.random_deletion_auc, other.random_insertion_auc) == (f.random_deletion_auc, f.random_insertion_auc)
    assert other.deletion_auc != f.deletion_auc


def test_a_coarse_maps_random_references_are_drawn_at_its_own_resolution(models, packed):
    """A 6 x 6 map (a Grad-CAM's cells) is compared with random 6 x 6 maps upsampled as it is, not with pixel noise:
    a map that is the test's own first random draw (seed 0) scores as its reference does. (Drawing the references at
    the input's 64 x 64 passed the suite; it moves the deletion AUC here from 0.56 to 0.67.)"""
    from ferx.data.preprocess import to_model_input
    from ferx.explain.faithfulness import deletion_insertion

    model, spec = models[0].model.eval(), models[0].input_spec
    x = to_model_input(packed.images[1:2], spec)
    coarse = np.random.default_rng(0).random((6, 6)).astype(np.float32)
    f = deletion_insertion(model, x, coarse, target=3, n_steps=8, n_random=1)
    assert (f.random_deletion_auc, f.random_insertion_auc) == pytest.approx((f.deletion_auc, f.insertion_auc), abs=1e-3)


def gradcam(loaded, packed, faces, targets):
    """Grad-CAM of class ``targets[i]`` on face ``faces[i]``, at the packed faces' size."""
    from ferx.data.preprocess import to_model_input
    from ferx.explain.cam import cam_maps
    from ferx.explain.maps import resize_map

    x = to_model_input(packed.images[faces], loaded.input_spec)
    maps = cam_maps(loaded.model, x, "gradcam", targets=[int(t) for t in targets])
    return np.stack([resize_map(m.values, packed.images.shape[1:3]) for m in maps])


def spearman(m, n):
    """Spearman's rho of two maps' pixels; 0 where one is flat (the untrained model's Grad-CAM often is: it ranks
    nothing)."""
    from scipy.stats import spearmanr

    return spearmanr(m.ravel(), n.ravel()).statistic if np.ptp(m) and np.ptp(n) else 0.0


def top_iou(m, n):
    """IoU of two maps' top 10 % pixels (ties included, a map's lowest value never on top); NaN where a map is
    flat."""
    tops = []
    for v in (m.ravel(), n.ravel()):
        k = round(0.1 * v.size)
        tops.append((v >= np.sort(v)[-k]) & (v > v.min()))
    return (tops[0] & tops[1]).sum() / (tops[0] | tops[1]).sum() if tops[0].any() and tops[1].any() else np.nan


def test_two_maps_agreement_is_their_rank_correlation_and_top_10_percent_iou_by_hand(models, packed):
    """The agreement of two maps (Compare's, the disagreement view's): Spearman's rho of their pixels and the IoU of
    their top 10 % pixels, recomputed with scipy and numpy on Grad-CAM maps of real faces."""
    from ferx.explain.faithfulness import map_agreement

    # neutral and sad on one face (top-10 % IoU 0.21), happy on it and neutral on another (0.14)
    maps = gradcam(models[0], packed, [1, 1, 1, 3], [6, 4, 3, 6])
    for a, b in ((maps[0], maps[1]), (maps[2], maps[3])):
        got = map_agreement(a, b)
        assert got["top_k"] == 0.1 and 0 < top_iou(a, b) < 1
        assert got["top_k_iou"] == pytest.approx(top_iou(a, b)) and got["spearman"] == pytest.approx(spearman(a, b), abs=1e-6)


def test_each_models_map_where_two_models_disagree_explains_its_own_label(models, runs, packed, tmp_path):
    from ferx.analysis.disagreement import class_agreement, disagreement_frame

    a, b = runs
    frame, maps_a, maps_b = disagreement_frame(*models, a, b, packed, limit=6, cache_dir=tmp_path)
    ids = frame.index.to_numpy()
    for maps, loaded, run in ((maps_a, models[0], a), (maps_b, models[1], b)):
        assert np.allclose(maps, gradcam(loaded, packed, ids, run.preds[ids]), atol=2e-3 * maps.max())
    rho = [spearman(m, n) for m, n in zip(maps_a, maps_b)]
    assert np.allclose(frame["spearman"], rho, atol=1e-6)
    assert np.allclose(frame["top_k_iou"], [top_iou(m, n) for m, n in zip(maps_a, maps_b)], equal_nan=True)
    for run in runs:
        assert list(frame[f"pred_{run.name}"]) == list(np.asarray(run.model_classes)[run.preds[ids]])
        assert np.allclose(frame[f"confidence_{run.name}"], run.probs[ids].max(1))
    for sort, key in (("both most confident", -frame["min_confidence"]), ("maps least alike", frame["spearman"]),
                      ("least top-10 % overlap", frame["top_k_iou"]), ("maps most alike", -frame["spearman"])):
        shown = disagreement_frame(*models, a, b, packed, limit=6, sort=sort, cache_dir=tmp_path)[0]
        assert list(shown.index) == list(key.sort_index().sort_values(kind="stable").index), sort  # ties: by id
    # per true class, over its first 3 faces: how often the labels agree, and the maps' agreement on each side
    table = class_agreement(*models, a, b, packed, per_class=3, cache_dir=tmp_path)
    ids = np.sort(np.concatenate([np.flatnonzero(packed.targets == c)[:3] for c in range(len(packed.classes))]))
    pairs = list(zip(gradcam(models[0], packed, ids, a.preds[ids]), gradcam(models[1], packed, ids, b.preds[ids])))
    rho = np.array([spearman(m, n) for m, n in pairs])
    iou = np.array([top_iou(m, n) for m, n in pairs])
    agree = np.asarray(a.model_classes)[a.preds[ids]] == np.asarray(b.model_classes)[b.preds[ids]]
    true = np.asarray(packed.classes)[packed.targets[ids]]
    assert agree.any() and not agree.all()
    for c in [*packed.classes, "(all)"]:
        of = (true == c) if c != "(all)" else np.ones(len(ids), bool)
        row = table.loc[c]
        assert row["faces"] == of.sum() and row["labels agree"] == pytest.approx(agree[of].mean())
        assert row["spearman"] == pytest.approx(rho[of].mean(), abs=2e-3)
        assert np.isclose(row["top-10 % IoU"], np.nanmean(iou[of]) if np.isfinite(iou[of]).any() else np.nan,
                          atol=0.02, equal_nan=True)
        for side, mask in (("agree", agree), ("differ", ~agree)):
            expected = rho[of & mask].mean() if (of & mask).any() else np.nan
            assert np.isclose(row[f"spearman (labels {side})"], expected, atol=2e-3, equal_nan=True), (c, side)


def test_the_pair_tile_draws_both_maps_on_one_scale_of_each_maps_share_of_its_mass():
    """Two maps of one face: A spreads its mass (a patch of 1 on a floor of 0.2), B holds it all in the patch. As
    shares of their own mass B's patch is 9x as dense as A's: B's patch at the top of the shared colour bar (bright),
    A's near its bottom (dark); drawn each on its own scale both would look alike."""
    from ferx.analysis.disagreement import pair_tile

    spread, held = np.full((48, 48), 0.2), np.zeros((48, 48))
    spread[10:20, 10:20] = held[10:20, 10:20] = 1.0
    size, text_h, gap = 160, 30, 4  # the tile's layout: face | A over colour bar | B
    tile = pair_tile(np.full((48, 48), 128, np.uint8), spread, held, size=size).astype(int)
    at = int(15 / 48 * size)  # the patch's centre in a panel
    a = tile[at, size + gap + at]
    b = tile[size + text_h + gap + at, size + gap + at]
    assert b.mean() - a.mean() > 60, (a, b)  # the default colormap (inferno) rises from dark to bright


def test_the_region_template_puts_each_region_where_its_geometry_says_on_a_tilted_face():
    """A face 40 px between the eyes, tilted by 20°: each region's centre (in eye distances, origin between the
    eyes, y down) lands in that region, and each region's area is its ellipse's, less what a region before it
    in :data:`REGIONS` takes."""
    from ferx.explain.regions import CANONICAL, REGIONS, region_labels

    iod, angle, centre = 40.0, np.radians(20), np.array([100.0, 80.0])
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])

    def pixel(point):  # canonical frame -> image pixel (column, row)
        return centre + iod * turn @ np.asarray(point, float)

    labels = region_labels(np.array([pixel(p) for p in CANONICAL]), (240, 200))
    for region, points in {"eyes": [(-0.5, 0), (0.5, 0)], "brows": [(-0.52, -0.33), (0.52, -0.33)],
                           "nose": [(0, 0.4), (0, 0.1)], "mouth": [(0, 1.16), (0.5, 1.16)], "forehead": [(0, -0.8)],
                           "cheeks/jaw": [(-0.8, 0.8), (0.8, 0.8), (0, 1.7), (0, 0.82)],  # between nose and mouth
                           "off-face": [(-1.2, 0.35), (0, -1.4), (0, 2.1)]}.items():
        for point in points:
            column, row = np.floor(pixel(point)).astype(int)
            assert REGIONS[labels[row, column]] == region, (region, point)
    area = dict(zip(REGIONS, np.bincount(labels.ravel(), minlength=len(REGIONS)) / iod ** 2))
    for region, ellipses in {"eyes": 2 * 0.30 * 0.17, "brows": 2 * 0.36 * 0.13, "nose": 0.24 * 0.36,
                             "mouth": 0.70 * 0.30}.items():
        assert area[region] == pytest.approx(np.pi * ellipses, rel=0.05), region
    # the face oval (1.05 x 1.60 around (0, 0.35)) above y = -0.45 is the forehead: a cap of the oval
    cap = 1.05 * 1.60 * (np.arccos(0.5) - 0.5 * np.sqrt(0.75))
    assert area["forehead"] == pytest.approx(cap, rel=0.05)
    assert sum(area[r] for r in REGIONS[:-1]) == pytest.approx(np.pi * 1.05 * 1.60, rel=0.02)


def test_a_maps_region_breakdown_and_its_line_recomputed_by_hand():
    from ferx.explain.regions import REGIONS, breakdown_line, region_breakdown, region_labels
    from ferx.faces import MEAN_FACE

    labels = region_labels(MEAN_FACE * 64, 64)
    values = np.random.default_rng(0).normal(size=(64, 64))
    values[labels == REGIONS.index("mouth")] += 3
    area = np.bincount(labels.ravel(), minlength=len(REGIONS)) / labels.size
    for signed, mass in ((False, values - values.min()), (True, np.clip(values, 0, None))):
        share = np.bincount(labels.ravel(), weights=mass.ravel(), minlength=len(REGIONS)) / mass.sum()
        out = region_breakdown(values, labels, signed=signed)
        assert [out["regions"][r]["mass"] for r in REGIONS] == pytest.approx(share, abs=6e-5)
        assert [out["regions"][r]["area"] for r in REGIONS] == pytest.approx(area, abs=6e-5)
        top = np.argsort(-share)[:3]
        share, area4 = share.round(4), area.round(4)  # as the breakdown keeps them (its JSON's 4 decimals)
        assert breakdown_line(out) == ", ".join(f"{REGIONS[i]} {share[i]:.0%} ({'area ' if j == 0 else ''}{area4[i]:.0%})"
                                                for j, i in enumerate(top))
    # off the face: flagged only where the map holds more than half its mass there and is denser there than on
    # the face (the warning gives both shares); a map spread evenly over a crop that is mostly background (a small
    # face in it) is not
    small = region_labels(MEAN_FACE * 32 + 16, 64)
    off = small == REGIONS.index("off-face")
    assert off.mean() > 0.5
    for inside, outside, flagged in ((1.0, 1.0, False), (1.0, 1.1, False), (1.0, 3.0, True), (3.0, 1.0, False)):
        m = np.where(off, outside, inside)
        share_off = m[off].sum() / m.sum()
        dense = (share_off / off.mean()) >= 1.2 * (1 - share_off) / (1 - off.mean())
        warning = region_breakdown(m, small, signed=True)["warning"]
        assert (warning is not None) == flagged == (share_off > 0.5 and dense)
        assert not flagged or warning == (f"off-face shortcut? {share_off:.0%} of this map's positive mass lies "
                                          f"outside the face (the off-face area is {off.mean():.0%} of the crop)")
    # more than half, not half: the same mass on the face (as many pixels of it at 1) as off it, denser off it
    off = labels == REGIONS.index("off-face")
    for on_face, flagged in ((off.sum(), False), (off.sum() - 1, True)):
        m = off.astype(float)
        m.ravel()[np.flatnonzero(~off)[:on_face]] = 1.0
        assert off.mean() < 0.45 and (region_breakdown(m, labels, signed=True)["warning"] is not None) == flagged


def test_the_dataset_region_table_and_its_heat_map_recomputed_by_hand(models, packed, tmp_path):
    """mini-Xception (FER-2013's class order) on FERPlus faces (their own order): each face's Grad-CAM of its
    predicted class on the mean-face template at the model's input, each region's share of the map's mass above
    its minimum, averaged per true class; the heat map's colour is log2 of that share over the region's area."""
    from ferx.analysis.regions import AREA_ROW, region_figure, region_shares, region_table
    from ferx.data.labels import CANONICAL
    from ferx.data.preprocess import to_model_input
    from ferx.explain.cam import cam_maps
    from ferx.explain.regions import REGIONS, region_labels
    from ferx.faces import MEAN_FACE

    loaded = models[0]
    size = loaded.input_spec.size
    shares = region_shares(loaded, packed, per_class=3, cache_dir=tmp_path)
    ids = np.sort(np.concatenate([np.flatnonzero(packed.targets == c)[:3] for c in range(len(packed.classes))]))
    labels = region_labels(MEAN_FACE * size, size).ravel()
    maps = cam_maps(loaded.model, to_model_input(packed.images[ids], loaded.input_spec), "gradcam")
    mass = np.stack([m.values.ravel() - m.values.min() for m in maps]).astype(np.float64)
    expected = np.stack([np.bincount(labels, weights=w, minlength=len(REGIONS)) / w.sum() for w in mass])
    own = shares[shares["map"] == "gradcam"]
    true = np.asarray(packed.classes)[packed.targets[ids]]
    assert list(own["sample"]) == list(ids) and list(own["true"]) == list(true)
    assert list(own["predicted"]) == [loaded.labels.classes[m.target] for m in maps]
    assert np.allclose(own[list(REGIONS)], expected, atol=1e-5)
    table = region_table(shares).loc[(loaded.path.name, "gradcam")]
    area = np.bincount(labels, minlength=len(REGIONS)) / labels.size
    assert list(table.index) == [AREA_ROW] + [c for c in CANONICAL if c in true]
    assert np.allclose(table.loc[AREA_ROW, list(REGIONS)], area)
    for c in set(true):
        assert table.loc[c, "faces"] == (true == c).sum()
        assert np.allclose(table.loc[c, list(REGIONS)], expected[true == c].mean(0), atol=1e-5)
    heat = region_figure(region_table(shares)).data[0]
    assert list(heat.y) == list(table.index) and list(heat.x) == list(REGIONS)
    share = table[list(REGIONS)].to_numpy(float)
    assert np.allclose(np.asarray(heat.z, float), np.clip(np.log2(share / area), -2, 2))
    assert list(heat.text[1]) == [f"{v:.0%}" for v in share[1]]


def test_the_pixels_a_model_scores_are_the_faces_own_at_its_size_and_pils_grey_of_a_colour_photo(packed):
    from PIL import Image

    from ferx.data.preprocess import model_pixels, to_model_input
    from ferx.models import InputSpec

    faces = packed.images[:100]
    gray = InputSpec(48, 1, (0.5,), (0.5,))
    assert np.array_equal(model_pixels(faces, gray), faces)  # nothing to resize: the same pixels, not one less
    assert np.array_equal(model_pixels(np.repeat(faces[..., None], 3, 3), gray), faces)  # a grey pixel's luma: itself
    assert torch.allclose(to_model_input(faces, gray), (torch.from_numpy(faces).float()[:, None] / 255 - 0.5) / 0.5)
    colour = np.random.default_rng(0).integers(0, 256, (4, 48, 48, 3), dtype=np.uint8)
    pil = np.stack([np.asarray(Image.fromarray(c).convert("L")) for c in colour])  # ITU-R 601, as PIL
    assert np.abs(model_pixels(colour, gray).astype(int) - pil).max() <= 1


def test_the_sanity_checks_table_and_verdict_recomputed_by_hand(models, packed):
    """Each step randomises the next group of layers from the head down; each map's Spearman rho and SSIM (of the
    maps scaled to 0..1) with the trained map; the verdict from the mean rho over the steps that changed it. The
    figure gives each map's own rho and SSIM under it, each row's mean rho and flag beside it, and draws a signed map
    on a colour range symmetric about 0."""
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    from ferx.data.preprocess import to_model_input
    from ferx.explain.maps import ExplanationMap
    from ferx.explain.sanity import INDEPENDENT_SPEARMAN, SanityCheck, SanityStep, cascading_randomization

    model = models[0].model
    x = to_model_input(packed.images[1:2], models[0].input_spec)
    check = cascading_randomization(model, x, ["gradcam", "saliency"], n_steps=3, classes=models[0].classes)
    layers = [n for n, m in model.named_modules() if list(m.parameters(recurse=False))][::-1]  # the head first
    assert [s.layers for s in check.steps[1:]] == [list(g) for g in np.array_split(layers, 3)]
    assert [s.label for s in check.steps] == ["trained"] + [".".join(g[-1].split(".")[:4])
                                                            for g in np.array_split(layers, 3)]

    def unit(v):
        return (v - v.min()) / (v.max() - v.min()) if v.max() > v.min() else np.zeros_like(v, dtype=np.float64)

    frame = check.frame().set_index(["map", "step"])
    fig = check.figure()
    axes = np.array(fig.axes).reshape(2, len(check.steps))  # a row per map, a column per step (trained first)
    for r, name in enumerate(("gradcam", "saliency")):
        trained = check.steps[0].maps[name].values
        rhos, changes = [], []
        assert axes[r, 0].get_xlabel() == "ρ 1.00 · SSIM 1.00"
        for step in check.steps[1:]:
            values = step.maps[name].values
            rho = spearmanr(trained.ravel(), values.ravel()).statistic if np.ptp(values) else 0.0
            row = frame.loc[(name, step.index)]
            assert row["spearman"] == pytest.approx(rho, abs=1e-6)
            assert row["ssim"] == pytest.approx(structural_similarity(unit(trained.astype(np.float64)),
                                                                      unit(values.astype(np.float64)), data_range=1.0),
                                                abs=1e-4)
            assert check.spearman_table().loc[name, step.index] == round(rho, 2)
            ssim = structural_similarity(unit(trained.astype(np.float64)), unit(values.astype(np.float64)),
                                         data_range=1.0)
            assert axes[r, step.index].get_xlabel() == f"ρ {rho:.2f} · SSIM {ssim:.2f}"
            changes.append(not np.allclose(values, trained, rtol=1e-5, atol=1e-6 * np.abs(trained).max()))
            rhos.append(rho)
            assert row["changed"] == changes[-1]
        first = changes.index(True) if any(changes) else 0  # from the first step that changed the map
        mean = np.mean(rhos[first:])
        assert check.mean_similarity()[name] == pytest.approx(mean, abs=1e-6)
        assert check.independent()[name] == (mean >= INDEPENDENT_SPEARMAN)
        label = axes[r, 0].get_ylabel()
        assert f"mean ρ {mean:.2f}" in label and ("independent of" in label) == (mean >= INDEPENDENT_SPEARMAN)
    # the same maps less their mean, as a signed map: each drawn from -max|v| to +max|v|, 0 the diverging map's middle
    signed = SanityCheck(check.model, check.target, [
        SanityStep(s.index, s.layers, {"centred": ExplanationMap(raw=v, values=v, method="centred", kind="attribution",
                                                                 model="m", target=check.target, signed=True)})
        for s in check.steps for v in [s.maps["gradcam"].values - s.maps["gradcam"].values.mean()]])
    centred = signed.steps[0].maps["centred"].values.astype(np.float64)
    for ax, step, ssim in zip(signed.figure().axes, signed.steps, signed.frame()["ssim"]):
        top = np.abs(step.maps["centred"].values).max()
        assert ax.images[0].get_clim() == pytest.approx((-top, top))
        # its SSIM: both maps scaled from their own minimum (below 0 here) to their maximum
        assert ssim == pytest.approx(structural_similarity(unit(centred), unit(step.maps["centred"].values.astype(
            np.float64)), data_range=1.0), abs=1e-4)


def test_each_sanity_step_is_the_trained_model_with_every_group_so_far_reinitialised(models, packed):
    """Cascading randomisation, rebuilt by hand: at step k the layers of groups 1..k (from the head down) hold the
    weights drawn for them, once, at their own step, every layer below them the trained ones, and the class
    explained stays the trained model's prediction. Each layer is re-initialised as torch builds it (a BatchNorm:
    weight 1, bias 0, running mean 0, running variance 1). The check randomises a copy it is given
    (``copy_model=False``); step k's model is the trained one with groups 1..k's parameters and buffers taken from
    that copy, and its maps are the check's maps of step k."""
    import copy

    from ferx.data.preprocess import to_model_input
    from ferx.explain.methods import get_method
    from ferx.explain.sanity import cascading_randomization

    model = models[0].model.eval()
    x = to_model_input(packed.images[1:2], models[0].input_spec)
    with torch.no_grad():
        target = int(model(x).argmax())
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    work = copy.deepcopy(model)
    check = cascading_randomization(work, x, ["gradcam", "saliency"], n_steps=3, copy_model=False)
    drawn = work.state_dict()
    layers = [n for n, m in model.named_modules() if list(m.parameters(recurse=False))][::-1]  # the head first
    groups = [set(g) for g in np.array_split(layers, 3)]

    def owner(key):  # the layer a parameter or buffer belongs to
        return key.rsplit(".", 1)[0]

    assert {owner(k) for k in trained if not torch.equal(trained[k], drawn[k])} == set(layers)  # every layer, once
    norms = [m for m in work.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(torch.equal(m.weight, torch.ones_like(m.weight)) and not m.bias.any()
                         and not m.running_mean.any() and torch.equal(m.running_var, torch.ones_like(m.running_var))
                         for m in norms)
    assert check.target == target
    for k in range(1, 4):
        reached = set().union(*groups[:k])
        step = copy.deepcopy(model)
        step.load_state_dict({key: drawn[key] if owner(key) in reached else value for key, value in trained.items()})
        for name in ("gradcam", "saliency"):
            (expected,) = get_method(name)(step, x, targets=[target])
            got = check.steps[k].maps[name]
            assert got.target == target
            atol = 1e-6 * np.abs(expected.values).max()
            assert np.allclose(got.values, expected.values, rtol=1e-4, atol=atol), (k, name)


def test_the_stability_table_of_a_doubtful_face_recomputed_by_hand(models, mini, packed):
    """The face of the first 60 mini-Xception is least sure of: some camera changes flip its label. Each row: the
    changed crop's top class and probability, the original label's probability, and the rho of its map of the
    original label, the geometric change undone, with the original's."""
    import cv2
    from scipy.stats import spearmanr

    from ferx.data.preprocess import to_model_input
    from ferx.explain.cam import cam_maps
    from ferx.explain.stability import VARIANTS, stability_probe

    loaded = models[0]
    face = int(np.argmin(mini.margin[:60]))
    crop = cv2.resize(np.repeat(packed.images[face][..., None], 3, 2), (96, 96), interpolation=cv2.INTER_CUBIC)
    probe = stability_probe(loaded.model, loaded.input_spec, loaded.classes, crop)
    frame = probe.frame.set_index("variant")
    assert np.array_equal(probe.thumbnails["mirror"], crop[:, ::-1])
    assert np.array_equal(probe.thumbnails["brighter"], np.clip(crop.astype(int) + 40, 0, 255))
    assert np.array_equal(probe.thumbnails["darker"], np.clip(crop.astype(int) - 40, 0, 255))
    images = np.stack([crop] + [probe.thumbnails[v.name] for v in VARIANTS])
    x = to_model_input(images, loaded.input_spec)
    with torch.no_grad():
        p = torch.softmax(loaded.model.eval()(x), 1).numpy()
    label = int(p[0].argmax())
    assert probe.label == label and frame.attrs["original_prob"] == pytest.approx(p[0, label], abs=1e-5)
    maps = [m.values for m in cam_maps(loaded.model, x, "gradcam", targets=[label] * len(images))]
    h, w = maps[0].shape

    def turned(m, angle, shift=0.0):
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        matrix[:, 2] += shift * w
        return cv2.warpAffine(m, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    undo = {"mirror": lambda m: m[:, ::-1], "tilt +10°": lambda m: turned(m, -10), "tilt -10°": lambda m: turned(m, 10),
            "crop shifted 6 %": lambda m: turned(m, 0, -0.06)}
    for k, variant in enumerate(VARIANTS, start=1):
        row = frame.loc[variant.name]
        assert row["top1"] == loaded.classes[int(p[k].argmax())] and row["top1_prob"] == pytest.approx(p[k].max(), abs=1e-5)
        assert row["keeps_label"] == (p[k].argmax() == label) and row["prob_of_label"] == pytest.approx(p[k, label], abs=1e-5)
        back = undo.get(variant.name, lambda m: m)(maps[k])
        assert row["map_spearman"] == pytest.approx(spearmanr(maps[0].ravel(), back.ravel()).statistic, abs=1e-4)
    assert 0 < probe.kept_share < 1 and probe.kept_share == pytest.approx(frame["keeps_label"].mean())


def test_ferx_evaluates_summary_gives_each_classs_recall_from_its_confusion_matrix(data_root):
    from ferx.evaluate import evaluate_checkpoint, summary_line

    result = evaluate_checkpoint(CHECKPOINTS / "mini_xception_fer2013", "ckplus", "test", data_root, progress=False)
    cm = np.asarray(result["confusion_matrix"])
    recall = {c: cm[i, i] / cm[i].sum() for i, c in enumerate(result["classes"]) if cm[i].sum()}
    line = summary_line(result).splitlines()[2]
    assert line == "  recall: " + ", ".join(f"{c} {recall[c]:.3f}" if c in recall else f"{c} — (no faces)"
                                            for c in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"))
    assert f"accuracy {100 * np.trace(cm) / cm.sum():.2f} %" in summary_line(result)
