"""The demo on the smoke zoo: every derived pair derived, every other pair not."""

from __future__ import annotations

from progenitor.cli import main
from progenitor.demo import run_demo


def test_demo_verdicts_are_right(smoke_zoo) -> None:
    rows = run_demo(smoke_zoo)
    assert len(rows) >= 20
    assert {r["truth"] for r in rows} >= {"derived", "same-arch-same-data-other-seed", "other-arch"}
    wrong = [(r["source"], r["target"], r["truth"], r["verdict"]) for r in rows if not r["correct"]]
    assert not wrong


def test_demo_command_prints_table(smoke_zoo, capsys) -> None:
    assert main(["demo", "--out", str(smoke_zoo)]) == 0
    out = capsys.readouterr().out
    assert "verdicts right" in out and "mlp-fa-s0.permute" in out
