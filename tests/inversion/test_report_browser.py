"""A run report opened in headless Chromium (Debian's ``chromium``) loads every image and renders.

Skipped when no Chromium is installed (``apt-get install -y chromium``; .ci/run installs it).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from PIL import Image

from inversion import cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (apt-get install -y chromium)"
)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=5000"]

# appended to a copy of the report: after load, write how many images decoded and how many did not
PROBE = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images];
  const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).length;
  const probe = `<div id="probe">images=${imgs.length} broken=${broken}</div>`;
  document.body.insertAdjacentHTML('beforeend', probe);
});</script>"""


def _chromium(*args, timeout=60):
    return subprocess.run([CHROMIUM, *FLAGS, *args], capture_output=True, text=True, timeout=timeout)


def test_report_loads_every_image_in_chromium(tmp_path, make_task_folder):
    op = "  class_path: inversion.operators.Inpainting\n  init_args: {mask_kind: center, box_size: 0.4}\n"
    src, cfg = make_task_folder(3, 1, op, "{csgm_steps: 5, restarts: 2, iagan_steps: 3}")
    args = [
        "--config",
        str(cfg),
        "--prior",
        "lcm.toy:tiny_prior",
        "--input",
        str(src),
        "--progress",
        "false",
    ]
    csgm = ["--options", "{csgm_steps: 5, restarts: 2}"]  # the task's options are IAGAN's (iagan_steps)
    a = cli.main([*args, "--method", "csgm", *csgm, "--output", str(tmp_path / "a")])
    b = cli.main([*args, "--method", "iagan", "--output", str(tmp_path / "b")])
    cmp = cli.main(["compare", str(a), str(b), "--output", str(tmp_path / "cmp")])
    for report in (a / "report.html", cmp):
        probe = report.with_name("probe.html")
        probe.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
        dom = _chromium("--dump-dom", probe.as_uri()).stdout
        m = re.search(r'id="probe">images=(\d+) broken=(\d+)<', dom)
        assert m is not None, f"the page did not finish loading in chromium: {dom[-500:]}"
        assert int(m.group(1)) >= 2 and int(m.group(2)) == 0  # grids + loss curves, none broken
        shot = tmp_path / f"{report.parent.name}.png"
        _chromium(f"--screenshot={shot}", "--window-size=1000,1400", report.as_uri())
        with Image.open(shot) as im:
            assert im.size == (1000, 1400)
            colours = im.convert("L").getcolors(maxcolors=1 << 16)
            assert colours is None or len(colours) > 20  # text, tiles and plots, not a blank page
