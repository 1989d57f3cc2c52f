"""compare: derived children are derived, independent models of the same recipe are not."""

from __future__ import annotations

import numpy as np
import pytest

import progenitor as pg

CHILDREN = ["fine-tuned", "pruned-50", "noised", "permuted"]


@pytest.fixture(scope="module")
def results(saved):
    """The parent against every child and held-out independents, with a null of 4 other seeds."""
    null = [saved[f"independent{i}"] for i in range(4)]
    targets = [saved[c] for c in CHILDREN] + [saved["independent4"], saved["independent5"]]
    out = pg.compare_many(saved["parent"], targets, probes=saved["probes"], null=null)
    return dict(zip([*CHILDREN, "independent4", "independent5"], out, strict=True))


@pytest.mark.parametrize("child", CHILDREN)
def test_children_are_derived(results, child) -> None:
    r = results[child]
    assert r.verdict == "derived", r.evidence
    assert r.p_value < 0.01 and r.evidence["decided_by"]


@pytest.mark.parametrize("other", ["independent4", "independent5"])
def test_independent_same_recipe_is_not_derived(results, other) -> None:
    r = results[other]
    assert r.verdict == "unrelated", r.evidence["reason"]
    assert r.p_value > 0.05


def test_evidence_names_genes_and_null(results) -> None:
    ev = results["fine-tuned"].evidence
    # TorchScript: no hooks, so no features; the probes are labelled, but the parent errs on too
    # few of them for error_agreement to say anything
    assert set(ev["genes"]) == {"weight_sketch", "output_geometry", "output_logits"}
    for gene in ev["genes"].values():
        assert gene["null_from"] == "supplied independent models" and gene["null_n"] == 4
    assert results["fine-tuned"].access == "white"


def test_black_box_access_only(saved) -> None:
    null = [saved[f"independent{i}"] for i in range(4)]
    r = pg.compare(saved["parent"], saved["noised"], probes=saved["probes"], access="black", null=null)
    assert r.access == "black" and set(r.evidence["genes"]) == {"output_geometry", "output_logits"}
    assert r.verdict == "derived"


def test_white_dnas_compared_at_black_access_are_black_box_dnas(saved) -> None:
    """Restricting the access of white DNAs gives the verdict black-box extractions give."""
    import dataclasses

    probes = saved["probes"]
    white = [pg.extract(saved[k], probes=probes) for k in ("parent", "noised")]
    black = [pg.extract(saved[k], probes=probes, access="black") for k in ("parent", "noised")]
    # a calibration that holds a null for the parent's layer structure, which a black-box DNA lacks
    shipped = pg.load_calibration()
    gene = shipped.genes["output_logits"]
    genes = {**shipped.genes, "output_logits": dataclasses.replace(gene, groups={white[0].recipe(): [2.0] * 10})}
    calibration = pg.Calibration(genes, shipped.logistic, "with a recipe null")
    narrowed = pg.compare(white[0], white[1], access="black", calibration=calibration)
    direct = pg.compare(black[0], black[1], calibration=calibration)
    assert narrowed.access == direct.access == "black"
    assert narrowed.p_value == direct.p_value and narrowed.evidence["genes"] == direct.evidence["genes"]


def test_learned_assessment_across_accesses_is_that_of_the_common_access(saved) -> None:
    """A white-box source and a black-box target reach the classifier as two black-box DNAs
    (with four input blocks against one, its direction head had called the target the ancestor)."""
    from progenitor.api import default_learned

    bundle = default_learned()
    probes = saved["probes"]
    parent, child = (pg.extract(saved[k], probes=probes) for k in ("parent", "noised"))
    black_child = pg.extract(saved["noised"], probes=probes, access="black")
    mixed = bundle.assess(parent, black_child)
    assert mixed == bundle.assess(parent.at_access("black"), black_child)
    assert mixed != bundle.assess(parent, child)  # two white-box DNAs: every block


def test_in_process_modules_and_dna_objects(family, probes_array) -> None:
    src = pg.extract(pg.load(family.parent, input_shape=(1, 8, 8)), probes=probes_array)
    null = [pg.load(m, input_shape=(1, 8, 8)) for m in family.independents[:4]]
    r = pg.compare(src, pg.load(family.children["fine-tuned"], input_shape=(1, 8, 8)), probes=probes_array, null=null)
    assert r.verdict == "derived"
    assert set(r.evidence["genes"]) == {"weight_sketch", "output_geometry", "output_logits", "feature_cka"}


def test_weights_only_source_against_torchscript(saved) -> None:
    null = [saved[f"independent{i}"] for i in range(4)]
    r = pg.compare(saved["state"], saved["permuted"], null=null)
    assert r.access == "white" and set(r.evidence["genes"]) == {"weight_sketch"}
    assert r.verdict == "derived"


def test_without_any_calibrated_null_is_inconclusive(saved) -> None:
    empty = pg.Calibration({}, (0.0, 1.0), "empty")
    r = pg.compare(saved["parent"], saved["noised"], probes=saved["probes"], calibration=empty)
    assert r.verdict == "inconclusive" and r.p_value is None


def test_a_null_calibrated_for_another_gene_version_is_not_used(saved) -> None:
    """Similarities of another version of a gene may mean something else: its null is ignored."""
    import dataclasses

    shipped = pg.load_calibration()
    stale = dataclasses.replace(shipped.genes["weight_sketch"], version=shipped.genes["weight_sketch"].version - 1)
    calibration = pg.Calibration({"weight_sketch": stale}, shipped.logistic, "stale")
    r = pg.compare(saved["parent"], saved["noised"], probes=saved["probes"], calibration=calibration)
    entry = r.evidence["genes"]["weight_sketch"]
    assert entry["p_value"] is None and "recalibrate" in entry["note"]
    assert r.verdict == "inconclusive"


def test_probe_kind_mismatch(saved) -> None:
    with pytest.raises(pg.ProbeError, match="text"):
        pg.compare(saved["parent"], saved["noised"], probes=["a sentence", "another one"])


def test_compare_json_shape(results) -> None:
    obj = results["noised"].to_json()
    assert list(obj) == ["source", "target", "verdict", "probability", "p_value", "access", "evidence"]
    assert 0 <= obj["probability"] <= 1 and isinstance(obj["p_value"], float)
    np.testing.assert_equal(obj["verdict"] in ("derived", "unrelated", "inconclusive"), True)


@pytest.fixture(scope="module")
def int8_onnx(family, tmp_path_factory):
    """The parent exported to ONNX and quantized to int8 weights by onnxruntime."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = tmp_path_factory.mktemp("onnx")
    torch.onnx.export(
        family.parent,
        (torch.zeros(1, 1, 8, 8),),
        root / "fp32.onnx",
        dynamo=False,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
    )
    quantize_dynamic(root / "fp32.onnx", root / "int8.onnx", weight_type=QuantType.QInt8)
    return root / "int8.onnx"


def test_int8_onnx_export_is_derived(saved, int8_onnx) -> None:
    null = [saved[f"independent{i}"] for i in range(4)]
    r = pg.compare(saved["parent"], int8_onnx, probes=saved["probes"], null=null)
    assert r.verdict == "derived", r.evidence["reason"]
    sketch = r.evidence["genes"]["weight_sketch"]
    assert sketch["similarity"] > 0.95 and sketch["details"]["paired"] == 4
    assert r.evidence["genes"]["output_geometry"]["similarity"] > 0.99


def test_a_null_needs_three_distinct_models(saved) -> None:
    """Fewer than three, or the source again, would have fallen back to the calibration or
    measured the source against itself without a word."""
    with pytest.raises(pg.ProgenitorError, match="at least three"):
        pg.compare_many(saved["parent"], [saved["noised"]], probes=saved["probes"], null=[saved["independent0"]])
    again = [saved["independent0"], saved["independent1"], saved["parent"]]
    with pytest.raises(pg.ProgenitorError, match="the source or another null model again"):
        pg.compare_many(saved["parent"], [saved["noised"]], probes=saved["probes"], null=again)
