"""Black-box gene on labelled probes: does the target repeat the source's mistakes?

A model extracted through a label API, or distilled, learns its teacher's decisions, right and
wrong; a model trained independently on the same task is right where the teacher is right (so
agreement there says little) and makes mistakes of its own. ``error_agreement`` is the share of
the probes the *source* gets wrong on which the target predicts the same wrong class. It needs a
probe set with labels (``ProbeSet.labels``: a ``NAME.labels.npy`` beside ``NAME.npy``); without
them the gene is absent.

On the standard zoo's validation families, measured before it was built (argmax on the stored
logits): it separated extracted students from independent models with AUC 0.920 (the logits
gene 0.804) and distilled ones 0.977 (0.942); finetunes only 0.812, which the weight genes cover.
Common confusions (shirt for T-shirt) are shared by every model of a task, so independents
repeat about 40% of each other's mistakes; the calibrated null absorbs that.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from progenitor.genes._registry import Gene, GeneNotApplicable, GeneScore, GeneValue, register_gene
from progenitor.genes.observe import Observation
from progenitor.genes.outputs import class_scores

# The share is judged against a calibrated null of independent pairs, whose spread was measured
# on shares of 21 to 250 mistakes (the standard zoo: 256 probes). A share of fewer mistakes carries
# more sampling noise than that null allows for (binomial sd 0.5/sqrt(k): 0.11 at 20, 0.18 at 8),
# and a student-like 8 of 8 would read as overwhelming evidence. Below this, the gene sits out.
MIN_ERRORS = 20
# Every probe counts (more probes, more mistakes to compare); 5 bytes each.
MAX_PROBES = 4096


@register_gene
class ErrorAgreement(Gene):
    """Share of the source's mistakes on labelled probes that the target repeats."""

    name: ClassVar[str] = "error_agreement"
    version: ClassVar[int] = 1
    access = "black"
    needs = "forward"
    uses_probes: ClassVar[bool] = True
    description: ClassVar[str] = "on labelled probes, the share of the source's mistakes the target repeats"
    # A share of some 40 mistakes is too coarse to order relatives: every relative repeats most
    # of its ancestor's mistakes.
    orders_relatives: ClassVar[bool] = False

    def extract(self, obs: Observation) -> GeneValue:
        probes = obs.probes
        if probes is None or probes.labels is None:
            raise GeneNotApplicable("the probe set has no labels")
        outputs = class_scores(obs)
        n = min(len(outputs), MAX_PROBES)
        top = outputs[:n].argmax(axis=1).astype(np.int32)
        wrong = (top != probes.labels[:n]).astype(np.uint8)
        meta = {"n": n, "width": int(outputs.shape[1]), "labels": probes.labels_hash}
        return GeneValue({"top1": top, "wrong": wrong}, meta)

    def compare(self, a: GeneValue, b: GeneValue) -> GeneScore:
        if a.meta["labels"] != b.meta["labels"] or a.meta["n"] != b.meta["n"]:
            raise GeneNotApplicable("the two DNAs were measured on other probe labels")
        if a.meta["width"] != b.meta["width"]:
            raise GeneNotApplicable("different output sizes")
        wrong = a.arrays["wrong"].astype(bool)
        errors = int(wrong.sum())
        if errors < MIN_ERRORS:
            raise GeneNotApplicable(f"the source is wrong on {errors} probes, fewer than {MIN_ERRORS}")
        repeated = int((b.arrays["top1"][wrong] == a.arrays["top1"][wrong]).sum())
        return GeneScore(repeated / errors, {"source_errors": errors, "repeated": repeated})
