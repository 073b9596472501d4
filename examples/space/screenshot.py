"""A screenshot of the running Space in headless Chromium, taken after segmenting an example picture.

The script serves the Space (``app.build_demo``) on a free localhost port, opens it in the system's
Chromium (Debian package ``chromium``) through Playwright, uploads the picture, types the class
names, presses "Segment", waits for the overlay and the table, and saves the page as a PNG. No
screen and no browser download are needed::

    apt-get install -y chromium
    pip install -e ".[space]" playwright         # in the repository root
    python examples/space/screenshot.py --output examples/space/screenshot.png

Without ``--model`` a tiny random model (vocabulary: sky, grass, sun, house) is built in a
temporary folder, and without ``--image`` a simple scene is drawn: the picture then shows the page,
not what a trained model sees.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from app import build_demo  # noqa: E402 (the Space's app.py, beside this file)

from magicseg_hf.loading import build_open_seg, load_open_seg  # noqa: E402

logger = logging.getLogger("magicseg_space.screenshot")

#: Classes of the tiny model built when no --model is given, and of the drawn scene.
SCENE_CLASSES = ["sky", "grass", "sun", "house"]
#: Chromium flags: headless, no sandbox (root in a container), nothing that reaches the network.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def draw_scene(width: int = 480, height: int = 320) -> Image.Image:
    """A drawn landscape: sky, grass, a sun and a house (the default example picture)."""
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    horizon = int(height * 0.62)
    for y in range(horizon):  # sky, lighter towards the horizon
        t = y / horizon
        draw.line([(0, y), (width, y)], fill=(int(90 + 100 * t), int(150 + 70 * t), 235))
    draw.rectangle([0, horizon, width, height], fill=(70, 150, 60))
    draw.ellipse([width * 0.72, height * 0.08, width * 0.86, height * 0.08 + width * 0.14], fill=(250, 215, 70))
    left, top = int(width * 0.18), int(height * 0.42)
    draw.rectangle([left, top, left + 120, horizon + 30], fill=(200, 80, 60))  # walls
    draw.polygon([(left - 15, top), (left + 60, top - 60), (left + 135, top)], fill=(120, 50, 40))  # roof
    draw.rectangle([left + 48, horizon - 10, left + 72, horizon + 30], fill=(90, 60, 40))  # door
    return image


def tiny_model(folder: Path) -> Path:
    """Save a tiny random CLIPForOpenSegmentation with SCENE_CLASSES as its vocabulary in ``folder``."""
    model, processor = build_open_seg("tiny", seed=0)
    model.set_vocabulary(SCENE_CLASSES)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def take_screenshot(url: str, image: Path, classes: str, output: Path, chromium: str, width: int, timeout_s: float) -> None:
    """Open ``url`` in headless Chromium, segment ``image`` for ``classes``, save the page to ``output``."""
    from playwright.sync_api import sync_playwright

    timeout_ms = timeout_s * 1000
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 800})
            page.goto(url, timeout=timeout_ms)
            page.locator("input[type=file]").first.set_input_files(str(image), timeout=timeout_ms)
            page.locator("img").first.wait_for(timeout=timeout_ms)  # the uploaded picture is shown
            page.get_by_label("class names").fill(classes)
            page.get_by_role("button", name="Segment").click()
            page.locator("img.mask").first.wait_for(timeout=timeout_ms)  # the overlay's class masks
            page.wait_for_timeout(1000)  # let the overlay fade in
            output.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(output), full_page=True)
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "screenshot.png")
    parser.add_argument("--model", default=None, help="Hub id or model folder (default: a tiny random model)")
    parser.add_argument("--image", type=Path, default=None, help="picture to segment (default: a drawn scene)")
    parser.add_argument("--classes", default=", ".join(SCENE_CLASSES), help="class names typed into the page")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium executable")
    parser.add_argument("--width", type=int, default=1280, help="browser window width in pixels")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each step")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not Path(args.chromium).is_file():
        parser.error(f"--chromium must name the Chromium executable (got {args.chromium!r}; apt-get install chromium)")

    with tempfile.TemporaryDirectory() as tmp:
        model_name = args.model or str(tiny_model(Path(tmp) / "tiny-model"))
        image = args.image
        if image is None:
            image = Path(tmp) / "scene.png"
            draw_scene().save(image)
        model, processor = load_open_seg(model_name)
        demo = build_demo(model, processor, args.model or "tiny random model (screenshot)")
        demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
        try:
            take_screenshot(demo.local_url, image, args.classes, args.output, args.chromium, args.width, args.timeout)
        finally:
            demo.close()
    logger.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
