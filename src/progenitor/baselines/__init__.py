"""Published provenance methods, reimplemented from their papers behind one scorer interface.

    from progenitor.baselines import get_baseline, list_baselines
    method = get_baseline("sac_m")
    fp_source = method.fingerprint(source_model, probes)
    fp_target = method.fingerprint_target(target_model, probes, fp_source)
    result = method.score(fp_source, fp_target)   # .score (higher = derived), .p_value, .details

Registered: ``sac_m``, ``sac_w`` (SAC), ``modeldiff``, ``modelgif`` (gradient fields),
``reef_cka``, ``csu_independence`` and ``csu_match`` (weight-matching independence tests),
``mother`` (with ``recover_tree``), ``nikolic`` (with ``best_parent``), and the floors
``weight_cosine`` and ``output_agreement``.
Each module's docstring cites its paper and states the choices the paper leaves open.
"""

from progenitor.baselines import csu, floors, modeldiff, modelgif, mother, nikolic, reef, sac  # noqa: F401
from progenitor.baselines._base import (
    Baseline,
    BaselineNotApplicable,
    BaselineScore,
    Fingerprint,
    fingerprint_nbytes,
    get_baseline,
    list_baselines,
    register_baseline,
)
from progenitor.baselines.mother import recover_tree
from progenitor.baselines.nikolic import ParentTest, best_parent, parent_test

__all__ = [
    "Baseline",
    "BaselineNotApplicable",
    "BaselineScore",
    "Fingerprint",
    "ParentTest",
    "best_parent",
    "fingerprint_nbytes",
    "get_baseline",
    "list_baselines",
    "parent_test",
    "recover_tree",
    "register_baseline",
]
