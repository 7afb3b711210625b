"""``camix train --smoke`` on shipped configs at full size (slow: the paper's networks on full-size images)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _layouts import make_full_size

from camix.cli import main

ROOTS = {
    "gta2cs/camix.yaml": ["data.source.root={gta}", "data.target.root={cs}", "data.val.root={cs}"],
    "cs2acdc/daformer_camix.yaml": ["data.source.root={cs}", "data.target.root={acdc}", "data.val.root={acdc}"],
}


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(ROOTS))
def test_smoke_of_a_shipped_config_at_full_size(
    tmp_path: Path, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_full_size(tmp_path / "data")
    paths = {"gta": data / "gta", "cs": data / "cityscapes", "acdc": data / "acdc"}
    sets = [o.format(**paths) for o in ROOTS[config]]
    sets += ["model.pretrained=null", "data.workers=0", f"out_dir={tmp_path / 'run'}"]
    args = ["train", "--smoke", "-c", f"configs/{config}", "--no-progress"]
    assert main([*args, *(a for s in sets for a in ("--set", s))]) == 0
    out = capsys.readouterr().out
    assert re.search(r"-> \d+\.\d\d s per iteration", out) and "(after the warm-up)" in out
    assert re.search(r"estimated wall time of \d+ iterations and \d+ evaluations: [\d.]+ (s|min|h|days)", out)
    assert not (tmp_path / "run").exists()
    with capsys.disabled():  # the figures, for the record (pytest -m slow -s)
        print(f"\nsmoke of configs/{config}:\n{out}")
