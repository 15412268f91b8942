"""The restore CLI's progress: plain lines with s/image and ETA when stderr is not a terminal."""

from __future__ import annotations

import io

from inversion.cli.progress import PlainProgress, make_progress


def test_plain_progress_prints_rate_and_eta_once_the_run_is_not_short():
    now = [0.0]
    out = io.StringIO()
    p = PlainProgress(4, "iagan/sr4", out, after=3.0, clock=lambda: now[0])
    now[0] = 1.0
    p.update()  # 1 s in: a short run prints nothing
    assert out.getvalue() == ""
    now[0] = 50.0
    p.update()
    assert out.getvalue() == "[progress] iagan/sr4: 2/4 images, 25.0 s/image, elapsed 0:50, ETA 0:50\n"


def test_a_terminal_gets_tqdm_and_a_pipe_gets_plain_lines():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    bar = make_progress(3, "csgm/sr4", Tty())
    assert type(bar).__name__ == "tqdm"
    bar.close()
    assert isinstance(make_progress(3, "csgm/sr4", io.StringIO()), PlainProgress)
