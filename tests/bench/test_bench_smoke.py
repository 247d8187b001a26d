"""The benchmark harness runs end to end at tiny sizes and writes its JSON (no timing asserted)."""

import json
from pathlib import Path

import pytest

from bench.run import main


@pytest.mark.spec("PERF-BENCH-SMOKE")
def test_bench_quick_run_prints_every_row_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    assert main(["--quick", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["cores"] >= 1
    assert f"{data['cores']} cores" in table
    assert len(data["costs"]) == 12
    assert len(data["speedups"]) == 2
    for row in data["costs"]:
        assert row["base_s"] > 0 and row["on_s"] > 0
        assert row["name"] in table
    assert data["checker"]["status"].startswith(("not available", "available"))
