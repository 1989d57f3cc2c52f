"""The public operations: extract a model's DNA, compare a source with targets.

``compare`` accepts model references, Models or DNAs on either side, extracts what is missing
with the same probe set, scores every gene both sides have at the access both allow, and turns
the scores into a verdict (``progenitor.verdict``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from progenitor._threads import single_blas
from progenitor.calibration import Calibration, load_calibration
from progenitor.dna import DNA, check_comparable, load_dna
from progenitor.errors import AccessError, DNAFormatError, IncomparableError, ProgenitorError
from progenitor.genes import GeneNotApplicable, GeneScore, Observation, get_gene, list_genes
from progenitor.models import ACCESS_LEVELS, Model, load
from progenitor.models.base import InputSpec
from progenitor.probes import ProbeSet, load_probes
from progenitor.stats import fisher_z
from progenitor.verdict import DEFAULT_ALPHA, Comparison, decide, learned_evidence

ModelLike = str | Path | Model | DNA | Any
Progress = Callable[[str], None]


def check_access(requested: str) -> None:
    """Refuse a requested access other than ``auto``, ``white``, ``gray`` or ``black``."""
    if requested != "auto" and requested not in ACCESS_LEVELS:
        raise ProgenitorError(f"access must be auto, white, gray or black, not {requested!r}")


def _level(model_access: str, requested: str) -> str:
    check_access(requested)
    if requested == "auto":
        return model_access
    if ACCESS_LEVELS.index(requested) > ACCESS_LEVELS.index(model_access):
        raise AccessError(f"access {requested!r} requested but the model allows only {model_access!r}")
    return requested


def extract(
    model: ModelLike,
    probes: str | Path | ProbeSet | Any | None = None,
    access: str = "auto",
    genes: Sequence[str] | None = None,
    data: str | Path | ProbeSet | Any | None = None,
    learned: Any = True,
    **load_options: Any,
) -> DNA:
    """Extract a model's DNA: every registered gene its access allows.

    Args:
        model: a reference, Model, or torch module.
        probes: probe set (see ``progenitor.probes.load_probes``); default: a preset that fits.
        access: ``auto`` (the widest the model allows) or ``white``/``gray``/``black``.
        genes: only these genes (default: all the access allows).
        data: a sample of the model's training data (same forms as probes) for the data-driven
            gene; without it that gene is absent.
        learned: the learned Model DNA that fills ``dna.vector``: True for the packaged default
            (when one ships), a LearnedDNA or its directory, or False for none.
        **load_options: passed to ``progenitor.load`` (e.g. ``arch=``, ``input_shape=``,
            ``device="cuda"`` to run a torch model on a GPU).
    """
    handle = load(model, **load_options)
    level = _level(handle.access, access)
    sample = None if data is None else load_probes(data, handle.input_spec)
    selected = [
        g
        for g in list_genes(level)
        if (handle.can(g.needs) or (g.needs == "data" and sample is not None)) and (genes is None or g.name in genes)
    ]
    probe_set = None
    if any(g.uses_probes for g in selected):
        probe_set = load_probes(probes, handle.input_spec)
    obs = Observation(handle, probe_set, sample)
    readers = [g for g in selected if g.needs == "features"]
    obs.want_features = bool(readers)
    if readers and all(g.feature_rows is not None for g in readers):
        obs.feature_rows = max(g.feature_rows for g in readers)  # type: ignore[type-var]
    if readers and all(g.select_features([]) is not None for g in readers):
        obs.feature_select = _union_of_selections(readers)
    values, versions = {}, {}
    with single_blas():
        for gene in selected:
            try:
                values[gene.name] = gene.extract(obs)
                versions[gene.name] = gene.version
            except GeneNotApplicable:
                continue
    used_probes = probe_set is not None and any(get_gene(n).uses_probes for n in values)
    dna = DNA(
        model=handle.info(),
        access=level,
        probes=probe_set.info() if used_probes and probe_set is not None else None,
        genes=values,
        versions=versions,
    )
    bundle = resolve_learned(learned)
    if bundle is not None:
        dna.vector = bundle.embed([dna])[0]
        dna.vector_spec = bundle.spec
    return dna


def _union_of_selections(readers: Sequence[Any]) -> Callable[[list[tuple[str, int]]], list[str]]:
    """The features any of ``readers`` selects, in forward order."""

    def select(widths: list[tuple[str, int]]) -> list[str]:
        chosen = {name for gene in readers for name in gene.select_features(widths) or ()}
        return [name for name, _ in widths if name in chosen]

    return select


def resolve_learned(learned: Any) -> Any:
    """The LearnedDNA to use: None/False for none, True for the packaged default, or a path."""
    if learned is None or learned is False:
        return None
    from progenitor.learn import LearnedDNA, load_learned

    if isinstance(learned, LearnedDNA):
        return learned
    if learned is True:
        return default_learned()
    return load_learned(learned)


@functools.cache
def default_learned() -> Any:
    """The packaged learned Model DNA, or None when this installation ships none (read once)."""
    from importlib import resources

    from progenitor.learn import load_learned

    if not resources.files("progenitor.data").joinpath("learned", "manifest.json").is_file():
        return None
    return load_learned()


def _is_dna_ref(ref: Any) -> bool:
    return isinstance(ref, str | Path) and str(ref).endswith(".dna")


def _probes_like(dna: DNA, probes: Any) -> Any:
    """The probe set a stored DNA was made with, when it can be regenerated (a preset)."""
    if probes is not None or dna.probes is None:
        return probes
    shape = dna.probes.get("shape")
    spec = InputSpec(dna.probes["kind"], tuple(shape) if shape else None)
    try:
        regenerated = load_probes(dna.probes["name"], spec)
    except ProgenitorError:
        regenerated = None
    if regenerated is None or regenerated.hash != dna.probes["hash"]:
        raise IncomparableError(
            f"{dna.model.get('ref')} was extracted with probe set {dna.probes['name']!r}; "
            "pass the same probes with --probes to compare a model with it"
        )
    return regenerated


def as_dna(ref: ModelLike, probes: Any = None, access: str = "auto", **options: Any) -> DNA:
    """A DNA for ``ref``: loaded if it is one, extracted otherwise (``options`` go to extract)."""
    if isinstance(ref, DNA):
        return ref
    if _is_dna_ref(ref):
        return load_dna(ref)
    return extract(ref, probes=probes, access=access, **options)


def score_genes(source: DNA, target: DNA, access: str | None = None) -> dict[str, GeneScore]:
    """Similarity of every lineage gene both DNAs hold (at or below ``access``).

    Refuses incomparable DNAs (other probe sets or gene versions) with IncomparableError.
    """
    level = min(ACCESS_LEVELS.index(source.access), ACCESS_LEVELS.index(target.access))
    if access is not None and access != "auto":
        level = min(level, ACCESS_LEVELS.index(access))
    shared = [
        n
        for n in source.genes
        if n in target.genes and ACCESS_LEVELS.index(get_gene(n).access) <= level and get_gene(n).role == "lineage"
    ]
    check_comparable(source, target, shared)
    scores = {}
    for name in shared:
        try:
            scores[name] = get_gene(name).compare(source.genes[name], target.genes[name])
        except GeneNotApplicable:
            continue
        except (KeyError, IndexError) as exc:  # a stored value without the arrays its gene writes
            raise DNAFormatError(f"gene {name}: a stored value lacks its data ({exc}); extract the DNA again") from exc
    return scores


def compare_many(
    source: ModelLike,
    targets: Sequence[ModelLike],
    probes: Any = None,
    access: str = "auto",
    alpha: float = DEFAULT_ALPHA,
    calibration: Calibration | str | Path | None = None,
    null: Sequence[ModelLike] | None = None,
    progress: Progress | None = None,
    learned: Any = True,
    **load_options: Any,
) -> list[Comparison]:
    """Compare one source with many targets, extracting the source's DNA once.

    Args:
        source, targets: references, Models or DNAs (``.dna`` files or objects).
        probes: the probe set for both sides (default: the source DNA's preset, or one that fits).
        access: ``auto`` or the access to restrict the comparison to.
        alpha: false-positive rate accepted on independent models (see ``progenitor.verdict``).
        calibration: a Calibration or its JSON path (default: the shipped one).
        null: independently trained models of the source's recipe; when at least three are given
            their similarity to the source is the null instead of the calibration's.
        progress: called with a short message before each model is processed.
        learned: the learned Model DNA whose classifier joins the evidence (see ``extract``);
            False to decide on the training-free genes alone.
        **load_options: passed to ``progenitor.load`` for every model reference.
    """
    cal = calibration if isinstance(calibration, Calibration) else load_calibration(calibration)
    bundle = resolve_learned(learned)
    note = progress or (lambda _msg: None)
    note(f"source {_label(source)}")
    # A DNA compared at a narrower access is seen as that access extracts it (its recipe too).
    src = _at(as_dna(source, probes=probes, access=access, **load_options), access)

    def other(ref: ModelLike) -> DNA:
        if isinstance(ref, DNA) or _is_dna_ref(ref):
            return _at(as_dna(ref), access)
        return as_dna(ref, probes=_probes_like(src, probes), access=access, genes=list(src.genes), **load_options)

    custom = None
    if null:
        if len(null) < 3:
            raise ProgenitorError(f"a null needs at least three independently trained models, got {len(null)}")
        custom = {}
        seen = {src.model.get("sha256")}
        for ref in null:
            note(f"null model {_label(ref)}")
            null_dna = other(ref)
            digest = null_dna.model.get("sha256")
            if digest is not None and digest in seen:
                raise ProgenitorError(f"null model {_label(ref)} is the source or another null model again")
            seen.add(digest)
            for name, score in score_genes(src, null_dna, access).items():
                custom.setdefault(name, []).append(fisher_z(score.similarity))
    results = []
    for ref in targets:
        note(f"target {_label(ref)}")
        tgt = other(ref)
        scores = score_genes(src, tgt, access)
        used = min(ACCESS_LEVELS.index(src.access), ACCESS_LEVELS.index(tgt.access))
        learned_entry = None
        if bundle is not None:
            learned_entry = learned_evidence(bundle.assess(src, tgt), bundle.null_model())
        results.append(
            decide(
                _name(source, src),
                _name(ref, tgt),
                ACCESS_LEVELS[used],
                scores,
                cal,
                alpha,
                custom,
                learned_entry,
                recipe=src.recipe(),
                target_recipe=tgt.recipe(),
            )
        )
    return results


def _at(dna: DNA, access: str) -> DNA:
    return dna if access == "auto" else dna.at_access(access)


def _label(ref: ModelLike) -> str:
    """A short label for progress messages (formatting a DNA object would print its arrays)."""
    if isinstance(ref, DNA):
        return str(ref.model.get("ref", "DNA"))
    return str(ref) if isinstance(ref, str | Path) else type(ref).__name__


def _name(ref: ModelLike, dna: DNA) -> str:
    return str(ref) if isinstance(ref, str | Path) else str(dna.model.get("ref"))


def compare(source: ModelLike, target: ModelLike, **kwargs: Any) -> Comparison:
    """Is ``target`` derived from ``source``? See ``compare_many`` for the arguments."""
    return compare_many(source, [target], **kwargs)[0]
