"""The command line: JSON contract, one-line errors, exit codes, nothing half-written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from progenitor.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_compare_json_contract(capsys, saved) -> None:
    null = [a for i in range(4) for a in ("--null", saved[f"independent{i}"])]
    code, out, err = run(
        capsys,
        "compare",
        saved["parent"],
        saved["noised"],
        saved["independent5"],
        "--probes",
        saved["probes"],
        "--json",
        *null,
    )
    assert code == 0
    data = json.loads(out)  # exactly one JSON document on stdout
    assert isinstance(data, list) and len(data) == 2
    assert [d["target"] for d in data] == [str(saved["noised"]), str(saved["independent5"])]
    for d in data:
        assert set(d) == {"source", "target", "verdict", "probability", "p_value", "access", "evidence"}
        assert d["verdict"] in ("derived", "unrelated", "inconclusive")
        assert 0 <= d["probability"] <= 1 and d["access"] in ("white", "gray", "black")
    assert data[0]["verdict"] == "derived" and data[1]["verdict"] == "unrelated"
    assert "target" in err  # progress goes to stderr


def test_compare_table_and_report(capsys, saved, tmp_path) -> None:
    report = tmp_path / "r.html"
    code, out, _ = run(
        capsys, "compare", saved["parent"], saved["permuted"], "--probes", saved["probes"], "--report", report
    )
    assert code == 0 and "derived" in out and "permuted" in out
    assert "weight_sketch" in report.read_text()


def test_dna_then_inspect_then_compare(capsys, saved, tmp_path) -> None:
    code, _, err = run(capsys, "dna", saved["parent"], saved["pruned-50"], "-o", tmp_path, "--probes", saved["probes"])
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parent.dna", "pruned-50.dna"]
    code, out, _ = run(capsys, "inspect", tmp_path / "parent.dna")
    assert code == 0 and "weight_sketch v5" in out and "probes.npy" in out and "vector" in out
    code, out, _ = run(capsys, "inspect", tmp_path / "parent.dna", "--json")
    assert json.loads(out)["model"]["format"] == "torchscript"
    code, out, _ = run(capsys, "compare", tmp_path / "parent.dna", tmp_path / "pruned-50.dna", "--json")
    assert code == 0 and json.loads(out)[0]["verdict"] == "derived"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compare", "missing.pt", "other.pt"], "no such file"),
        (["inspect", "{bad_dna}"], "not a progenitor DNA"),
        (["compare", "{parent}", "{parent}", "--probes", "{text}"], "does not fit"),
        (["compare", "{parent}", "{parent}", "--alpha", "2"], "--alpha"),
        (["compare", "{parent}", "{parent}", "--access", "purple"], "access must be"),
        (["dna", "{junk}", "-o", "{out}"], "unknown model format"),
        (["compare", "{parent}", "{parent}", "--input-shape", "a,b"], "--input-shape"),
        (["dna", "{parent}", "-o", "{out}", "--device", "gpu0"], "not one of cpu, cuda"),
        (["compare", "{parent}", "{parent}", "--input-shape", "-1,8,8"], "at least 1"),
        (["dna", "{parent}", "{parent}", "-o", "{out}"], "both be written"),
        (["compare", "{parent}", "{parent}", "--input-shape", ""], "needs sizes"),
        (["compare", "{parent}", "{parent}", "--probes", "{probes}", "--report", "{folder}"], "is a folder"),
        (["bench", "--zoo", "{out}", "--out", "{out}", "--scheme", "nosuch"], "--scheme must be"),
        (["compare", "{parent}", "{parent}", "--probes", "smooth-noise:0"], "count after ':'"),
        (["compare", "{parent}", "{parent}", "--calibration", "{list_json}"], "not a calibration"),
        (["compare", "{bad_dna}", "{parent}", "--report", "{bad_dna}"], "is one of the inputs"),
        (["dna", "{parent}", "-o", "{junk}/out", "--probes", "{probes}"], "junk.xyz"),  # OSError: a file, not a folder
    ],
)
def test_bad_input_one_line_error(capsys, saved, tmp_path, args, message) -> None:
    (tmp_path / "bad.dna").write_bytes(b"nonsense")
    (tmp_path / "probes.txt").write_text("a text probe\nanother\n")
    (tmp_path / "junk.xyz").write_text("?")
    (tmp_path / "list.json").write_text("[]")
    values = {
        "list_json": tmp_path / "list.json",
        "folder": tmp_path,
        "probes": saved["probes"],
        "bad_dna": tmp_path / "bad.dna",
        "parent": saved["parent"],
        "text": tmp_path / "probes.txt",
        "junk": tmp_path / "junk.xyz",
        "out": tmp_path / "out",
    }
    code, out, err = run(capsys, *[a.format(**values) for a in args])
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1]
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_debug_shows_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "progenitor.cli", "--debug", "inspect", "nope.dna"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_help_everywhere(capsys) -> None:
    for command in ([], ["compare"], ["dna"], ["inspect"], ["genes"], ["formats"]):
        code, out, _ = run(capsys, *command, "--help")
        assert code == 0 and "Usage" in out


def test_lists(capsys) -> None:
    code, out, _ = run(capsys, "genes")
    assert code == 0 and "weight_sketch" in out and "output_geometry" in out
    code, out, _ = run(capsys, "formats")
    assert code == 0 and "torchscript:" in out and "onnx:" in out


@pytest.mark.parametrize("args", [["compare"], ["dna", "x.pt"], ["no-such-command"], ["compare", "a", "b", "--bogus"]])
def test_usage_errors_are_one_line_not_tracebacks(capsys, args) -> None:
    code, _out, err = run(capsys, *args)
    assert code == 2 and "Traceback" not in err and err.strip()
