"""Screenshot an HTML report (``harness report -o FILE``) at a given width, whole page, in Debian's chromium through
playwright (what docs/report_1400.png was made with):

    python scripts/report_screenshot.py report.html docs/report_1400.png --width 1400
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=1400)
    args = parser.parse_args()
    if not args.report.is_file():
        parser.error(f"no report at {args.report} (write one with: harness report -o {args.report})")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": args.width, "height": 1000})
        page.goto(args.report.resolve().as_uri())
        page.screenshot(path=str(args.png), full_page=True)
        browser.close()
    print(f"wrote {args.png} ({args.width} px wide)")


if __name__ == "__main__":
    main()
