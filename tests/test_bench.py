"""The benchmark harness: metrics on hand-made scores, and `progenitor bench` on the smoke zoo."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from progenitor.bench import Query, edge_accuracy, roc_auc, threshold_at_fpr, top1_outcomes, tpr_at_fpr
from progenitor.bench.metrics import roc_curve
from progenitor.bench.tasks import BenchPair, make_queries

# ---------------------------------------------------------------- metrics on hand-made scores


def test_roc_auc_perfect_inverse_ties_and_missing() -> None:
    labels = np.array([1, 1, 0, 0], dtype=bool)
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), labels) == 1.0
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), labels) == 0.0
    assert roc_auc(np.array([0.5, 0.5, 0.5, 0.5]), labels) == 0.5
    # one positive above both negatives, one tied with a negative: (2 + 1.5) / 4
    assert roc_auc(np.array([0.9, 0.3, 0.3, 0.1]), labels) == pytest.approx(0.875)
    # a missing score ranks below every real one: a missed positive, an unflagged negative
    assert roc_auc(np.array([0.9, np.nan, 0.2, 0.1]), labels) == pytest.approx(0.5)
    assert roc_auc(np.array([0.9, 0.8, np.nan, 0.1]), labels) == 1.0
    assert math.isnan(roc_auc(np.array([0.1, 0.2]), np.array([1, 1], dtype=bool)))


def test_roc_auc_matches_the_trapezoid_of_the_curve() -> None:
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=200), 1)  # many ties
    labels = rng.random(200) < 0.3
    scores[labels] += 0.7
    fpr, tpr = roc_curve(scores, labels)
    assert fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert roc_auc(scores, labels) == pytest.approx(np.trapezoid(tpr, fpr))


def test_tpr_at_fpr_and_threshold() -> None:
    # 100 negatives 0..99, positives at 99.5 (above all) and 50.5 (above half)
    negatives = np.arange(100, dtype=float)
    scores = np.r_[99.5, 50.5, negatives]
    labels = np.r_[True, True, np.zeros(100, dtype=bool)]
    assert tpr_at_fpr(scores, labels, 0.01) == 0.5  # only 99.5 clears 99 while passing <= 1 negative
    assert tpr_at_fpr(scores, labels, 0.5) == 1.0
    t = threshold_at_fpr(negatives, 0.01)
    assert (negatives > t).mean() <= 0.01 and t == 98.0  # one negative (99) may pass
    assert threshold_at_fpr(negatives, 0.0) == 99.0
    assert threshold_at_fpr(np.array([np.nan, np.nan]), 0.01) == math.inf
    assert (np.array([1.0, 2.0]) > threshold_at_fpr(np.array([1.0, 2.0]), 1.0)).all()


def test_top1_with_abstention() -> None:
    queries = [
        Query("c1", ("p", "q"), frozenset({"p"}), "parent-present"),
        Query("c2", ("p", "q"), frozenset({"p"}), "parent-present"),
        Query("c3", ("p", "q"), frozenset({"q"}), "parent-present"),
        Query("r", ("p", "q"), frozenset(), "root"),
        Query("c1", ("q",), frozenset(), "hidden-ancestors"),
    ]
    picks = {("c1", "parent-present"): "p", ("c2", "parent-present"): "q", ("c3", "parent-present"): None,
             ("r", "root"): None, ("c1", "hidden-ancestors"): "q"}
    out = top1_outcomes(queries, picks)
    assert out["parent_accuracy"] == pytest.approx(1 / 3)
    assert out["wrong_parent"] == pytest.approx(1 / 3) and out["missed_parent"] == pytest.approx(1 / 3)
    assert out["orphan_abstention"] == 0.5
    assert out["accuracy"] == pytest.approx(2 / 5)
    assert out["n_parent_queries"] == 3 and out["n_orphan_queries"] == 2


def test_edge_accuracy_counts_direction_and_merges() -> None:
    parents = {"a": {"r"}, "b": {"r"}, "c": {"a"}, "m": {"a", "b"}, "outside": {"r"}}
    members = ["r", "a", "b", "c", "m"]
    recovered = [("r", "a"), ("b", "r"), ("a", "c"), ("b", "m"), ("c", "b")]
    out = edge_accuracy(parents, recovered, members)
    # children with a true parent: a, b, c, m; right: a (r), c (a), m (b is one of its parents)
    assert out["accuracy"] == pytest.approx(3 / 4)
    assert out["precision"] == pytest.approx(3 / 5)
    assert out["reversed"] == pytest.approx(1 / 5)  # b -> r is r -> b reversed
    assert out["n_children"] == 4


def test_queries_from_a_lineage() -> None:
    # r -> a -> c, second root s; sources r, a, s
    parents = {"a": {"r"}, "c": {"a"}}
    pairs = [BenchPair("r", t, t in ("a", "c"), "x") for t in ("a", "c", "s")]
    pairs += [BenchPair("a", t, t == "c", "x") for t in ("r", "c", "s")]
    pairs += [BenchPair("s", t, False, "x") for t in ("r", "a", "c")]
    queries = {(q.target, q.kind): q for q in make_queries(pairs, parents, {"r", "s"})}
    assert queries[("c", "parent-present")].expected == {"a"}
    assert queries[("c", "hidden-ancestors")].candidates == ("s",)
    assert queries[("r", "root")].expected == frozenset()
    assert queries[("a", "parent-present")].expected == {"r"}
    assert ("s", "hidden-ancestors") not in queries  # a root has no ancestors to hide


# ---------------------------------------------------------------- the command on the smoke zoo

FAST_METHODS = "progenitor-genes,progenitor-black,sac_m,mother"


@pytest.fixture(scope="session")
def bench_zoo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke zoo: the shared ``smoke_zoo`` fixture when conftest has one, else built here."""
    try:
        value: Any = request.getfixturevalue("smoke_zoo")
    except pytest.FixtureLookupError:
        from progenitor.zoo import build_zoo

        out = tmp_path_factory.mktemp("bench-zoo")
        build_zoo("smoke", out, progress=False)
        return out
    return Path(value[0] if isinstance(value, tuple | list) else value)


@pytest.fixture(scope="session")
def bench_out(bench_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`progenitor bench` run once on the smoke zoo (train split of the arch scheme: it has
    independent same-architecture negatives and many derivation kinds)."""
    from progenitor.cli_bench import register

    app = typer.Typer()
    register(app)
    register(app)  # idempotent
    app.command("noop")(lambda: None)  # two commands, so typer keeps `bench` as a subcommand
    out = tmp_path_factory.mktemp("bench-out")
    result = CliRunner().invoke(app, ["bench", "--zoo", str(bench_zoo), "--out", str(out), "--methods",
                                      FAST_METHODS, "--split", "train", "--scheme", "arch", "--calibration", "shipped"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out


def test_bench_writes_results_json(bench_out: Path) -> None:
    results = json.loads((bench_out / "results.json").read_text())
    assert results["format"] == "progenitor-bench"
    assert set(results["methods"]) == set(FAST_METHODS.split(","))
    assert len(results["zoo"]["hash"]) == 64 and results["environment"]["torch"]
    assert "git_commit" in results["environment"] and results["environment"]["machine"]["cores"]
    assert results["command"].startswith("progenitor bench --zoo")
    kinds = results["tasks"]["derived_by_kind"]
    assert {"finetune", "prune", "quantize"} <= set(kinds)
    for name, m in results["methods"].items():
        assert m["error"] is None, name
        assert set(m["auc"]["by_kind"]) == set(kinds)
        assert 0.0 <= m["auc"]["overall"] <= 1.0
        assert {"parent_accuracy", "orphan_abstention", "accuracy"} <= set(m["top1"])
        assert m["operating"]["same_arch_pairs"] > 0
        assert m["cost"]["extract_s_per_model"] > 0 and m["cost"]["bytes_per_model"] > 0
        assert m["cost"]["pairs_compared"] > 0
    ours = results["methods"]["progenitor-genes"]
    assert ours["rule"].startswith("own verdict") and ours["auc"]["overall"] >= 0.9
    black = results["methods"]["progenitor-black"]  # the same DNAs, outputs only
    assert black["access"] == "black" and ours["access"] == "white"
    assert black["cost"]["bytes_per_model"] < ours["cost"]["bytes_per_model"]
    assert results["methods"]["sac_m"]["rule"].startswith("score > threshold")
    for name in ("progenitor-genes", "mother"):
        tree = results["methods"][name]["tree"]
        assert tree is not None and tree["n_children"] > 0 and 0 <= tree["accuracy"] <= 1, name
    assert results["methods"]["sac_m"]["tree"] is None


def test_bench_writes_markdown_csv_and_plots(bench_out: Path) -> None:
    md = (bench_out / "results.md").read_text()
    assert "## Summary" in md and "## ROC-AUC per derivation kind" in md
    for name in FAST_METHODS.split(","):
        assert md.count(f"| {name} |") + md.count(f"| **{name}** |") >= 3, name
    assert json.loads((bench_out / "calibration.json").read_text())["genes"]
    header = (bench_out / "pairs.csv").read_text().splitlines()[0].split(",")
    assert header[:5] == ["set", "source", "target", "derived", "kind"] and header[5:] == FAST_METHODS.split(",")
    for plot in ("roc_by_kind.png", "auc_heatmap.png", "cost_vs_accuracy.png"):
        data = (bench_out / plot).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000, plot


def test_bench_refuses_a_split_without_negatives(bench_zoo: Path, tmp_path: Path) -> None:
    from progenitor.bench import BenchConfig, run_bench
    from progenitor.errors import ProgenitorError

    # the smoke zoo's test families form one family: no negative pair lies inside the split
    with pytest.raises(ProgenitorError, match="no negative pairs"):
        run_bench(BenchConfig(zoo=bench_zoo, out=tmp_path, methods=["sac_m"], split="test"))
    with pytest.raises(ProgenitorError, match="unknown method"):
        run_bench(BenchConfig(zoo=bench_zoo, out=tmp_path, methods=["nope"], split="train", scheme="arch"))


def test_ours_detects_with_compare_and_ranks_lineage_with_the_index(saved) -> None:
    """Ours' pair result carries ``compare``'s p-value (detection metrics) and, when parent
    queries or trees ask, the relation ``progenitor search`` judges (``relate``: compare's
    verdict, its strength on the pooled null)."""
    import progenitor as pg
    from progenitor.bench.methods import BenchContext, ProgenitorMethod
    from progenitor.calibration import load_calibration
    from progenitor.index._relate import relate

    calibration = load_calibration(None)
    context = BenchContext(pg.load_probes(str(saved["probes"])), calibration, None, 0.01)
    method = ProgenitorMethod("progenitor-genes", context, learned=False)
    source = pg.extract(saved["parent"], probes=saved["probes"], learned=False)
    target = pg.extract(saved["fine-tuned"], probes=saved["probes"], learned=False)
    result = method.score(source, [target])[0]
    assert result.p_value == pg.compare(source, target, calibration=calibration, learned=False).p_value
    assert "relation" not in result.extra  # judged only when asked
    lineage = method.relation(result)
    assert lineage.p_value == relate(source, target, calibration, 0.01).p_value and lineage.verdict == "derived"
    assert method.relation(result) is lineage
