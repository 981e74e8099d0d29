"""A run's report rendered by headless Chromium to a PNG screenshot: the page as a browser shows it, offline
(what `make report-check` and the report tests look at). `python -m deepncheap.report.screenshot RUN [PNG]`."""

from __future__ import annotations

import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from deepncheap.errors import OutputError

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
WIDTH = 1280
TEXT_HEIGHT = 3000  # pixels of the page's headings, tables and captions, about


def screenshot(run_dir: str | Path, png: str | Path | None = None) -> Path:
    """Render RUN/report.html to `png` (default RUN/report-screenshot.png), tall enough for the whole page."""
    from deepncheap.report import PLOTS_DIR, REPORT_HTML

    run_dir = Path(run_dir)
    html = run_dir / REPORT_HTML
    png = Path(png) if png is not None else run_dir / "report-screenshot.png"
    if not CHROMIUM.is_file():
        raise OutputError(f"headless Chromium is not installed ({CHROMIUM}); install it: apt-get install chromium")
    if not html.is_file():
        raise OutputError(f"{run_dir} has no {REPORT_HTML}; write it first with: dnc report {run_dir}")
    height = TEXT_HEIGHT + sum(_png_height(p) + 80 for p in (run_dir / PLOTS_DIR).glob("*.png"))
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        command = [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", f"--screenshot={png.resolve()}"]
        command += [f"--window-size={WIDTH},{height}", html.resolve().as_uri()]
        done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    if not png.is_file():
        raise OutputError(f"Chromium wrote no screenshot (exit {done.returncode}): {done.stderr.strip()[-300:]}")
    return png


def _png_height(path: Path) -> int:
    """The height in pixels of a PNG file, from its header."""
    with path.open("rb") as handle:
        header = handle.read(24)
    return int(struct.unpack(">I", header[20:24])[0])


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m deepncheap.report.screenshot RUN [PNG]")
    try:
        print(screenshot(*sys.argv[1:]))
    except OutputError as exc:
        sys.exit(f"error: {exc}")
