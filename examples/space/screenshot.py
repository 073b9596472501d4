"""A screenshot of the running Space in headless Chromium, taken after segmenting an example picture.

The script serves the Space (``app.build_demo``) on a free localhost port, opens it in the system's
Chromium (Debian package ``chromium``) through Playwright, uploads the picture, types the class
names, presses "Segment", waits for the overlay and the table, and saves the page as a PNG. No
screen and no browser download are needed::

    apt-get install -y chromium
    pip install -e ".[space]" playwright         # in the repository root
    python examples/space/screenshot.py --output examples/space/screenshot.png

The README's picture is taken with the model that act 2 of ``magicseg demo`` trains on procedural
scenes, on a held-out procedural scene (``magicseg_hf.generation.procedural``, the seed the demo holds
out), with the model's classes typed into the page::

    magicseg demo --output-dir demo-output
    python examples/space/screenshot.py --model demo-output/model

Without ``--image`` the scene is drawn from the model's own classes (held-out seed, context bias 0,
at the tiny model's 64 px, shown enlarged); without ``--classes`` the model's vocabulary is typed.
Without ``--model`` a tiny *random* model with the demo's scene classes is built in a temporary
folder: the picture then shows the page, not what a trained model sees.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import tempfile
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from app import build_demo  # noqa: E402 (the Space's app.py, beside this file)

from magicseg_hf.demo import SCENE_CLASSES, SCENE_HELDOUT_SEED, SCENE_SIZE  # noqa: E402
from magicseg_hf.generation.procedural import procedural_row  # noqa: E402
from magicseg_hf.loading import build_open_seg, load_open_seg  # noqa: E402

logger = logging.getLogger("magicseg_space.screenshot")

#: Classes of the tiny random model built when no --model is given.
SCENE_CLASSES_DEFAULT = list(SCENE_CLASSES)
#: Side of the scene as the page shows it (the 64 px scene enlarged, pixels kept sharp).
SHOWN_SIZE = 384
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


def procedural_scene(classes: list[str], index: int = 5, shown: int = SHOWN_SIZE) -> Image.Image:
    """Held-out procedural scene ``index`` of ``classes`` (the demo's held-out seed and size, context bias 0),
    enlarged to ``shown`` px with nearest-neighbour resampling."""
    row = procedural_row(classes, index, seed=SCENE_HELDOUT_SEED, size=SCENE_SIZE)
    return row["image"].resize((shown, shown), Image.Resampling.NEAREST)


def tiny_model(folder: Path) -> Path:
    """Save a tiny random CLIPForOpenSegmentation with the demo's scene classes as its vocabulary in ``folder``."""
    model, processor = build_open_seg("tiny", seed=0)
    model.set_vocabulary(SCENE_CLASSES_DEFAULT)
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
    parser.add_argument("--model", default=None,
                        help="Hub id or model folder, e.g. demo-output/model (default: a tiny random model)")
    parser.add_argument("--image", type=Path, default=None,
                        help="picture to segment (default: a held-out procedural scene of the model's classes)")
    parser.add_argument("--scene-index", type=int, default=5,
                        help="which held-out procedural scene (default 5: a sun and a house with the demo's classes)")
    parser.add_argument("--classes", default=None, help="class names typed into the page (default: the model's)")
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
        model, processor = load_open_seg(model_name)
        vocabulary = list(model.config.vocabulary or SCENE_CLASSES_DEFAULT)
        if image is None:
            image = Path(tmp) / "scene.png"
            procedural_scene(vocabulary, args.scene_index).save(image)
        classes = args.classes if args.classes is not None else ", ".join(vocabulary)
        demo = build_demo(model, processor, args.model or "tiny random model (screenshot)")
        demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
        try:
            take_screenshot(demo.local_url, image, classes, args.output, args.chromium, args.width, args.timeout)
        finally:
            demo.close()
    logger.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
