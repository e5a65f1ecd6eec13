"""Take docs/screenshot.png: the chat page with a real conversation, for the README.

    .venv/bin/python -m tests.web.screenshot [--dark]

Starts its own `hearth serve` with the default model, asks at temperature 0, and saves a
small PNG. Not a test: run it by hand when the page changes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from tests.conftest import REPO, start_server
from tests.web.conftest import CHROMIUM_ARGS

QUESTIONS = [
    "Write a Python function that adds two numbers.",
    "What is the capital of France?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dark", action="store_true", help="dark colour scheme")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshot.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp), "--n-ctx", "2048")
        try:
            shoot(server.url, args.out, "dark" if args.dark else "light")
        finally:
            server.stop()


def shoot(url: str, out: Path, scheme: str) -> None:
    settings = json.dumps({"temperature": 0, "maxTokens": 120})
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS, headless=True
        )
        page = browser.new_page(viewport={"width": 1000, "height": 640}, color_scheme=scheme)
        page.add_init_script(f"localStorage.setItem('hearth.settings.v1', {json.dumps(settings)})")
        page.goto(f"{url}/")
        page.locator("#model option").first.wait_for(state="attached")
        for question in QUESTIONS:
            page.locator("#input").fill(question)
            page.locator("#input").press("Enter")
            expect(page.locator("#status")).not_to_have_text("Writing a reply…", timeout=120_000)
        page.locator("#input").blur()
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        browser.close()


if __name__ == "__main__":
    main()
