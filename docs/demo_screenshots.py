"""Screenshots of the demo page, one per tab, taken by a real browser: headless Chromium (Debian's `chromium`
package) driven by Playwright (`pip install playwright`; it uses the system's Chromium, nothing is downloaded).

    python docs/demo_screenshots.py --pretrained runs/clip-shapes/version_0/checkpoints/last.ckpt --checkpoints runs

serves the page in this process, and for each tab: opens it, clicks its first example, presses each of its
primary buttons in turn and waits for the answers, then saves ``docs/pictures/demo/<tab>.png``. Any request the
page makes to another host than the page's own fails the run: the page must fetch nothing from the network.
"""
from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from urllib.parse import urlparse

from playwright.sync_api import Page, sync_playwright

from lit_clip.demo.page import TABS, launch
from lit_clip.demo.weights import Weights, find_checkpoints


def file_name(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_") + ".png"


def wait_for_answers(page: Page, timeout_s: float) -> None:
    """Until no event of the page is pending or running: Gradio shows a timer over their outputs meanwhile, and marks
    the outputs of an event that yields (a drawing that grows) as generating until it ends."""
    deadline = time.monotonic() + timeout_s
    page.wait_for_timeout(500)
    while page.locator(".eta-bar, .progress-text, .generating").count() and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    page.wait_for_timeout(500)


def run_tab(page: Page, title: str, timeout_s: float) -> list[str]:
    """Open the tab; for each of its sections (a primary button and the examples table after it, in page order)
    use the first example and press the button; the error messages the page showed."""
    page.get_by_role("tab", name=title).click()
    panel = page.locator("[role=tabpanel]:visible").first
    buttons, examples = panel.locator("button.primary:visible"), panel.locator("table:has(tr.tr-body):visible")
    for index in range(buttons.count()):
        if index < examples.count():
            examples.nth(index).locator("tr.tr-body").first.click()
            page.wait_for_timeout(1000)
        buttons.nth(index).click()
        wait_for_answers(page, timeout_s)
    return page.locator(".toast-body").all_inner_texts()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pretrained")
    parser.add_argument("--checkpoints", nargs="*", default=[])
    parser.add_argument("--out", default="docs/pictures/demo")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--tabs", nargs="*", help="the tab titles to take (default: all)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for a tab's answers")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _, url = launch(Weights(args.pretrained, find_checkpoints(args.checkpoints)), block=False)
    own_host, foreign = urlparse(url).netloc, []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("request", lambda request: foreign.append(request.url)
                if urlparse(request.url).netloc not in (own_host, "") else None)  # fmt: skip
        page.goto(url)
        page.wait_for_selector("[role=tab]")
        for title, _ in TABS:
            if args.tabs and title not in args.tabs:
                continue
            started = time.monotonic()
            messages = run_tab(page, title, args.timeout)
            page.screenshot(path=str(out / file_name(title)), full_page=True)
            print(f"{title}: {time.monotonic() - started:.1f} s, {out / file_name(title)}",
                  f"messages on the page: {messages}" if messages else "")
        browser.close()
    if foreign:
        raise SystemExit(f"the page requested other hosts: {sorted(set(foreign))}")
    print("the page requested nothing outside", own_host)


if __name__ == "__main__":
    main()
