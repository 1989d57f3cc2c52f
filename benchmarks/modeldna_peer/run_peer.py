"""Run the `modeldna` package (PyPI, 0.1.0) unchanged next to progenitor on a text zoo's LM pairs.

    .venv/bin/python benchmarks/modeldna_peer/run_peer.py --zoo ZOO_TEXT --out peer.json

What it does:

1. creates a separate virtual environment (``--venv``, default ``benchmarks/modeldna_peer/.venv``,
   git-ignored) and installs ``modeldna==0.1.0`` into it from the package index, unless it is
   already there; ``modeldna --version`` must answer;
2. takes the zoo's labelled pairs (``--split``, default ``test``, of the ``family`` scheme; ``all``
   for every split) whose two models are language models saved as Hugging Face safetensors
   directories (``--archs``, default the causal LMs ``gpt2-tiny`` and ``llama-tiny``, the layouts
   modeldna reads; ``--archs all`` adds the BERT/MiniLM encoders, which it reports as unsupported);
3. runs ``modeldna compare TARGET_DIR SOURCE_DIR --json`` for each pair ("is the suspect derived
   from the candidate?"), with ``HOME`` and ``MODELDNA_DB`` pointed at a scratch folder so it
   writes nothing under the user's home, and times it;
4. runs progenitor's verdict on the same pairs (``compare_many`` on the zoo's cached DNAs, genes
   calibrated on the zoo's train split, the packaged learned DNA if one ships);
5. writes one JSON file: every pair with both verdicts, and per method the ROC-AUC of derived
   against independent pairs (modeldna's probability, ours' -log10 p; no score ranks lowest), TPR
   on derived pairs and FPR on independent pairs at the verdicts, per derivation kind.

modeldna's classes map to verdicts as follows: EXACT_COPY, QUANTIZED_COPY, FINE_TUNE,
SAME_LINEAGE and LIKELY_MERGE = derived; SAME_FAMILY_UNRESOLVED = inconclusive; NO_MATCH =
unrelated; INSUFFICIENT = unsupported (counted as not derived).

Exits with status 2 and a one-line reason when the zoo is not built, holds no LM pairs in the
split, or modeldna cannot be installed or run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path
from typing import Any

import numpy as np

MODELDNA = "modeldna==0.1.0"
HERE = Path(__file__).resolve().parent
DERIVED_CLASSES = {"EXACT_COPY", "QUANTIZED_COPY", "FINE_TUNE", "SAME_LINEAGE", "LIKELY_MERGE"}
VERDICT_OF = {**dict.fromkeys(DERIVED_CLASSES, "derived"), "SAME_FAMILY_UNRESOLVED": "inconclusive",
              "NO_MATCH": "unrelated", "INSUFFICIENT": "unsupported"}
LM_ARCHS = ("gpt2-tiny", "llama-tiny")


class PeerError(Exception):
    """A reason the comparison cannot run (printed as one line, exit status 2)."""


def ensure_modeldna(env_dir: Path) -> Path:
    """The ``modeldna`` executable of a venv holding modeldna 0.1.0 (created when missing)."""
    exe = env_dir / "bin" / "modeldna"
    if not exe.exists():
        print(f"creating {env_dir} and installing {MODELDNA}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True, clear=False).create(env_dir)
        pip = subprocess.run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", MODELDNA],
                             capture_output=True, text=True, check=False)
        if pip.returncode != 0 or not exe.exists():
            raise PeerError(f"pip could not install {MODELDNA} into {env_dir}: {pip.stderr.strip()[-400:]}")
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=False)
    if version.returncode != 0 or "0.1.0" not in version.stdout + version.stderr:
        raise PeerError(f"{exe} --version failed: {(version.stdout + version.stderr).strip()[-300:]}")
    return exe


def lm_pairs(zoo_dir: Path, split: str, archs: tuple[str, ...] | None) -> tuple[Any, list[Any]]:
    """The zoo (as ``ZooDNA``) and its labelled pairs between HF-directory models of ``archs``."""
    from progenitor.errors import ProgenitorError
    from progenitor.zoo.dna_dataset import ZooDNA

    if not (zoo_dir / "manifest.json").is_file():
        raise PeerError(f"{zoo_dir}: no manifest.json: build the text zoo first "
                        f"(progenitor zoo build --preset text --out {zoo_dir})")
    try:
        zoo = ZooDNA(zoo_dir)
    except ProgenitorError as exc:
        raise PeerError(str(exc)) from exc
    text = [p for p in zoo.manifest["probes"] if p.get("modality") == "text"]
    if not text:
        raise PeerError(f"{zoo_dir}: not a text zoo (no text probe set)")
    zoo = ZooDNA(zoo_dir, probes_id=text[0]["id"])

    def usable(model_id: str) -> bool:
        m = zoo.models[model_id]
        return (m.get("modality") == "text" and m["format"] == "hf"
                and (archs is None or m["architecture"] in archs)
                and (zoo.root / m["path"] / "config.json").is_file())

    pairs = [p for p in zoo.pairs_all(modality="text")
             if (split == "all" or p.split.get("family") == split) and usable(p.source) and usable(p.target)]
    if not pairs:
        raise PeerError(f"{zoo_dir}: no language-model pairs in split {split!r} for architectures "
                        f"{', '.join(archs) if archs else 'any'}")
    return zoo, pairs


def run_modeldna(exe: Path, suspect: Path, candidate: Path, scratch: Path) -> dict[str, Any]:
    """``modeldna compare SUSPECT CANDIDATE --json``: its verdict class, probability and time."""
    env = {**os.environ, "HOME": str(scratch), "MODELDNA_DB": str(scratch / "db"),
           "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "TERM": "dumb"}
    started = time.perf_counter()
    proc = subprocess.run([str(exe), "compare", str(suspect), str(candidate), "--json"],
                          capture_output=True, text=True, env=env, check=False, timeout=600)
    seconds = time.perf_counter() - started
    try:
        doc = json.loads(proc.stdout[proc.stdout.index("{"):])
    except ValueError:
        return {"verdict": "error", "class": None, "probability": None, "seconds": seconds,
                "error": (proc.stderr or proc.stdout).strip()[-300:], "exit_code": proc.returncode}
    v = doc.get("verdict", {})
    cls = v.get("verdict")
    return {"verdict": VERDICT_OF.get(cls, "unknown"), "class": cls, "probability": v.get("probability"),
            "notes": v.get("notes", [])[:3], "seconds": seconds, "exit_code": proc.returncode}


def calibration_for(zoo: Any) -> tuple[Any, str]:
    """Gene calibration on the zoo's train-split text pairs (falls back to the shipped one)."""
    from progenitor.api import score_genes
    from progenitor.calibrate import calibrate
    from progenitor.calibration import load_calibration
    from progenitor.zoo.dna_dataset import NULL_KINDS

    pairs = [p for p in zoo.pairs("train", "family", modality="text") if p.derived or p.kind in NULL_KINDS]
    if sum(not p.derived for p in pairs) < 3 or not any(p.derived for p in pairs):
        return load_calibration(None), "shipped default (too few train-split text pairs)"
    records = [({n: s.similarity for n, s in score_genes(zoo.dna(p.source), zoo.dna(p.target)).items()}, p.derived)
               for p in pairs]
    return calibrate(records, f"zoo {zoo.manifest['name']} train split, text pairs"), "zoo train split (text pairs)"


def run_ours(zoo: Any, pairs: list[Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """progenitor's verdict on each pair (cached zoo DNAs, learned DNA if one ships)."""
    from progenitor.api import compare_many, default_learned

    calibration, where = calibration_for(zoo)
    bundle = default_learned()
    out = []
    for p in pairs:
        started = time.perf_counter()
        c = compare_many(zoo.dna(p.source), [zoo.dna(p.target)], calibration=calibration,
                         learned=bundle if bundle is not None else False)[0]
        out.append({"verdict": c.verdict, "p_value": c.p_value, "probability": c.probability,
                    "seconds": time.perf_counter() - started})
    return out, {"calibration": where, "learned": "packaged default" if bundle is not None else "none shipped"}


def _score(result: dict[str, Any]) -> float:
    """A rank score: modeldna's probability, ours' -log10 p (nan when the method gave none)."""
    if "p_value" in result:
        p = result["p_value"]
        return float("nan") if p is None else -math.log10(max(p, 1e-300))
    prob = result.get("probability")
    return float("nan") if prob is None else float(prob)


def rates(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """TPR on derived pairs, FPR on independent pairs, per derivation kind, for one method."""
    from progenitor.bench.metrics import roc_auc
    from progenitor.bench.tasks import INDEPENDENT_KINDS

    def share(items: list[dict[str, Any]]) -> float | None:
        return sum(r[key]["verdict"] == "derived" for r in items) / len(items) if items else None

    derived = [r for r in rows if r["derived"]]
    independent = [r for r in rows if not r["derived"] and r["kind"] in INDEPENDENT_KINDS]
    kinds = sorted({r["kind"] for r in derived})
    graded = derived + independent
    return {
        "auc_vs_independent": roc_auc(np.array([_score(r[key]) for r in graded]),
                                      np.array([r["derived"] for r in graded])),
        "tpr": share(derived),
        "fpr_independent": share(independent),
        "tpr_by_kind": {k: share([r for r in derived if r["kind"] == k]) for k in kinds},
        "flagged_by_negative_kind": {k: share([r for r in rows if not r["derived"] and r["kind"] == k])
                                     for k in sorted({r["kind"] for r in rows if not r["derived"]})},
        "verdicts": {v: sum(r[key]["verdict"] == v for r in rows) for v in sorted({r[key]["verdict"] for r in rows})},
        "seconds_per_pair": sum(r[key]["seconds"] for r in rows) / len(rows),
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", type=Path, required=True, help="a built text zoo")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--venv", type=Path, default=HERE / ".venv", help="virtual environment for modeldna")
    parser.add_argument("--split", default="test", help="family-scheme split of the pairs, or 'all'")
    parser.add_argument("--archs", default=",".join(LM_ARCHS), help="architectures to include, or 'all'")
    parser.add_argument("--limit", type=int, default=0, help="at most this many pairs (0: all)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    archs = None if args.archs == "all" else tuple(a.strip() for a in args.archs.split(",") if a.strip())
    try:
        zoo, pairs = lm_pairs(args.zoo, args.split, archs)
        exe = ensure_modeldna(args.venv)
    except PeerError as exc:
        print(f"modeldna peer: {exc}", file=sys.stderr)
        return 2
    if args.limit:
        pairs = pairs[: args.limit]
    print(f"{len(pairs)} pairs; running modeldna and progenitor on each", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory(prefix="modeldna-home-") as scratch:
        for i, p in enumerate(pairs, 1):
            suspect, candidate = (args.zoo / zoo.models[m]["path"] for m in (p.target, p.source))
            result = run_modeldna(exe, suspect, candidate, Path(scratch))
            rows.append({"source": p.source, "target": p.target, "derived": p.derived, "kind": p.kind,
                         "split": p.split.get("family"), "modeldna": result})
            if i % 20 == 0:
                print(f"  modeldna {i}/{len(pairs)}", file=sys.stderr)
    errors = [r for r in rows if r["modeldna"]["verdict"] == "error"]
    if errors and len(errors) == len(rows):
        print(f"modeldna peer: modeldna failed on every pair, e.g. {errors[0]['modeldna']['error']}", file=sys.stderr)
        return 2
    ours, ours_info = run_ours(zoo, pairs)
    for row, verdict in zip(rows, ours, strict=True):
        row["progenitor"] = verdict
    doc = {
        "modeldna": MODELDNA,
        "zoo": {"name": zoo.manifest["name"], "hash": zoo.zoo_hash, "dir": str(args.zoo.resolve())},
        "split": args.split,
        "archs": list(archs) if archs else "all",
        "progenitor": ours_info,
        "summary": {"modeldna": rates(rows, "modeldna"), "progenitor": rates(rows, "progenitor")},
        "pairs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    s = doc["summary"]
    print(f"wrote {args.out}: modeldna TPR {s['modeldna']['tpr']}, FPR {s['modeldna']['fpr_independent']}; "
          f"progenitor TPR {s['progenitor']['tpr']}, FPR {s['progenitor']['fpr_independent']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
