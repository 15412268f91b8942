"""``python -m inversion.claims --smoke``: every claim row end to end, cached and resumable."""

import json
import time
from pathlib import Path

import pytest

from inversion.claims import CLAIMS, Claim, interval, judge, main

FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")


def test_interval_and_judge_pairs():
    m, h = interval([1.0, 2.0, 3.0])
    assert m == pytest.approx(2.0) and h == pytest.approx(2.4842, rel=1e-3)  # t(0.975, 2) * 1 / sqrt(3)
    c = Claim("k", "t", "psnr", True, ["A", "B"], {}, "src")
    s = judge(c, {"A": [2.0, 3.0, 4.0], "B": [1.0, 2.0, 3.5]})
    assert s["holds"] is True and s["pairs"][0]["diff"] == pytest.approx(2.5 / 3)
    lower = Claim("k", "t", "feature", False, ["A", "B"], {}, "src")
    assert judge(lower, {"A": [2.0, 3.0], "B": [1.0, 2.0]})["holds"] is False


@pytest.mark.slow
@pytest.mark.skipif(not (FASHION.exists() and EMOJI_FONT.exists()), reason="needs Fashion-MNIST and emoji")
def test_smoke_runs_every_claim_and_resumes(tmp_path):
    out = tmp_path / "claims"
    t0 = time.perf_counter()
    main(["--smoke", "--output", str(out)])
    first = time.perf_counter() - t0
    data = json.loads((out / "claims.json").read_text())
    assert set(data["claims"]) == {c.key for c in CLAIMS}
    for c in CLAIMS:
        ours = data["claims"][c.key]["ours"]
        assert set(c.order) | set(c.extra) == set(ours), c.key
        expect = data["meta"]["eglass_images"] if c.key.startswith("eglass") else 2
        assert all(v["n"] == expect for v in ours.values()), c.key
    md = (out / "claims.md").read_text()
    assert md.count("\n### ") == len(CLAIMS)  # one detail table per claim
    assert all(f"| {c.title} |" in md for c in CLAIMS)  # and one summary line each
    t0 = time.perf_counter()
    main(["--smoke", "--output", str(out)])  # everything cached: no training, no fitting
    assert time.perf_counter() - t0 < 0.5 * first
    assert json.loads((out / "claims.json").read_text())["claims"] == data["claims"]
