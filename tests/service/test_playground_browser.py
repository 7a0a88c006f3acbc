"""The Playground in a real headless Chromium (Debian's ``chromium``, driven by Playwright),
against real ``atnl serve`` and ``atnl worker`` processes on the tiny checkpoint: draw two
digits and slide ω, pick test images by keyboard, see an API error's detail, hallucinate and
count the grid, click two map points, activate a model, start a training job, watch its
progress and cancel it, and draw by touch on a phone-sized screen. Then on a colour model
(24×24 pose-photos tiles, labels "-60deg" .. "+60deg"): no drawing pads, two colour PNGs chosen
and dropped are morphed into colour frames at the model's side, the test images and the
hallucinations carry the set's label names, and a swap to the grey digit model and back
brings the pads back and takes them away.

Screenshots go to ``var/test-artifacts/playground/`` (or ``$ATNL_TEST_ARTIFACTS/playground``).
Without a browser (no Chromium, and ``make test`` could not install one) these tests skip,
saying so; everything else about the page is checked in test_playground.py.
"""

from __future__ import annotations

import base64
import io
import math
import os
import re
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks.servers import Process, Server
from service.store import ModelStore
from tests.service.conftest import COLOUR_SIDE
from tests.service.images import png_of

pytestmark = pytest.mark.e2e
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: `make test` installs the dev extra")
expect = sync_api.expect
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("ATNL_TEST_ARTIFACTS", ROOT / "var" / "test-artifacts")) / "playground"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
"""Executables tried in order, after $ATNL_CHROMIUM."""
WAIT_MS = 60_000
"""Longest wait for one thing on the page (a loaded 2-core machine; most take well under a second)."""
expect.set_options(timeout=WAIT_MS)
JOB_WAIT_MS = 180_000
"""Longest wait for the worker to start training (it imports torch and loads the data first)."""

ZERO = [(0.5 + 0.2 * math.sin(t), 0.5 - 0.3 * math.cos(t)) for t in (i * 2 * math.pi / 24 for i in range(25))]
SEVEN = [(0.28, 0.2), (0.72, 0.2), (0.45, 0.85)]
"""Strokes in [0, 1]² of a pad: a 0 and a 7."""


def chromium() -> str | None:
    given = os.environ.get("ATNL_CHROMIUM")
    return given or next((exe for name in BROWSERS if (exe := shutil.which(name))), None)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    exe = chromium()
    if exe is None:
        pytest.skip("no Chromium here and `make test` could not install one (apt-get install chromium): browser tests skipped")
    with sync_api.sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(redis_url: str, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``atnl serve`` and ``atnl worker`` on a store holding the tiny checkpoint twice: ``tiny``
    (active) and ``tiny-b``."""
    tmp = tmp_path_factory.mktemp("playground")
    store = tmp / "store"
    for model_id in ("tiny", "tiny-b"):
        shutil.copytree(tiny_checkpoint, store / model_id)
    ModelStore(store).set_active("tiny")
    env = {
        "ATNL_REDIS_URL": redis_url.rsplit("/", 1)[0] + "/2",  # its own database: other tests flush theirs
        "ATNL_MODEL_STORE": str(store),
        "ATNL_PROGRESS_INTERVAL_SECONDS": "0.3",
    }
    api, worker = Server.serve(env, tmp), Process.worker(env, tmp)
    try:
        worker.start()
        yield api.start().url
    finally:
        api.stop()
        worker.stop()


def open_page(browser, base: str, **context_args):
    """A fresh page on the Playground, loaded (the latent map drawn), and what it did wrong so far."""
    context = browser.new_context(accept_downloads=True, **context_args)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
    page.on("request", lambda r: r.url.startswith((base, "data:", "blob:")) or problems.append(f"fetched {r.url}"))
    page.goto(base + "/")
    page.locator("#map-points .pt").first.wait_for()
    return page, problems


@pytest.fixture
def page(browser, server: str) -> Iterator:
    page, problems = open_page(browser, server, viewport={"width": 1280, "height": 900})
    yield page
    page.context.close()
    assert not problems, problems  # no script error, nothing fetched from another origin


def screenshot(target, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def draw(page, selector: str, stroke: list[tuple[float, float]]) -> None:
    """One mouse stroke through ``stroke`` (fractions of the element's box)."""
    box = page.locator(selector).bounding_box()
    at = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
    page.mouse.move(*at[0])
    page.mouse.down()
    for x, y in at[1:]:
        page.mouse.move(x, y, steps=3)
    page.mouse.up()


def touch_draw(page, selector: str, stroke: list[tuple[float, float]]) -> None:
    """One finger stroke, as a phone's touch screen sends it (CDP touch events)."""
    box = page.locator(selector).bounding_box()
    cdp = page.context.new_cdp_session(page)
    points = [{"x": box["x"] + x * box["width"], "y": box["y"] + y * box["height"]} for x, y in stroke]
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [points[0]]})
    for point in points[1:]:
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
    page.wait_for_timeout(150)  # the finger rests before it lifts: a lift in motion starts a fling, which swallows the next tap
    cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [points[-1]]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def strip_omegas(page, selector: str) -> list[str]:
    return page.locator(f"{selector} li span").all_inner_texts()


def test_draw_two_digits_and_slide_omega(page) -> None:
    draw(page, "#canvas-a", ZERO)
    draw(page, "#canvas-b", SEVEN)
    expected = [f"ω {k / 7:.2f}" for k in range(8)]
    expect(page.locator("#strip-slerp li")).to_have_count(8)
    expect(page.locator("#strip-lerp li")).to_have_count(8)
    assert strip_omegas(page, "#strip-slerp") == expected and strip_omegas(page, "#strip-lerp") == expected

    live = page.locator("#live-slerp")
    expect(live).to_have_attribute("data-omega", "0.50")
    page.locator("#omega").focus()
    page.keyboard.press("Home")
    expect(live).to_have_attribute("data-omega", "0.00")
    expect(live).to_have_attribute("src", re.compile("^data:image/png"))
    at_start = live.get_attribute("src")
    page.keyboard.press("End")
    expect(live).to_have_attribute("data-omega", "1.00")
    expect(live).not_to_have_attribute("src", at_start)  # decoded again: the image changed
    expect(page.locator("#omega-value")).to_have_text("1.00")
    screenshot(page, "morph")

    with page.expect_download() as download:
        page.click("#download-gif")
    assert download.value.suggested_filename == "morph-slerp.gif"
    assert Path(download.value.path()).read_bytes()[:6] == b"GIF89a"


def test_pick_test_images_with_the_keyboard(page) -> None:
    page.locator("#picker summary").focus()
    page.keyboard.press("Enter")  # opens the gallery
    expect(page.locator("#gallery button")).to_have_count(60)  # 6 test images a label
    page.locator('#gallery button[data-label="1"]').first.focus()
    page.keyboard.press("Enter")  # into Start; the next pick goes to End
    expect(page.locator('input[name="pick-into"][value="b"]')).to_be_checked()
    page.locator('#gallery button[data-label="6"]').first.focus()
    page.keyboard.press(" ")
    expect(page.locator("#strip-slerp li")).to_have_count(8)
    expect(page.locator("#morph-error")).to_be_empty()


def test_an_api_error_shows_its_problem_detail(page, server: str, digits) -> None:
    page.fill("#steps", "1")
    draw(page, "#canvas-a", ZERO)
    draw(page, "#canvas-b", SEVEN)
    files = {"start": ("a.png", png_of(digits[0][0]), "image/png"), "end": ("b.png", png_of(digits[7][0]), "image/png")}
    problem = httpx.post(server + "/v1/interpolate", files=files, data={"steps": "1"}, timeout=30).json()
    assert "steps" in problem["detail"], problem
    expect(page.locator("#morph-error")).to_have_text(problem["detail"])


def test_hallucinate_and_count_the_grid(page) -> None:
    page.fill("#hall-pick-labels", "3,7,9")
    page.fill("#hall-pick-count", "2")
    page.click("#hall-pick")
    expect(page.locator("#fewshot li")).to_have_count(6)
    page.fill("#per-class", "3")
    page.select_option("#hall-filter", "none")  # the tiny model draws blobs: keep them all, marked
    with page.expect_response("**/v1/hallucinate") as answer:
        page.click("#hall-run")
    made = answer.value.json()["images"]
    expect(page.locator(".hall-group .made img")).to_have_count(len(made))
    misread = [m for m in made if m["read"] != m["label"]]
    expect(page.locator(".hall-group .made img.misread")).to_have_count(len(misread))
    expect(page.locator("#hall-check")).to_contain_text(f"{len(misread)} image(s) the model reads as another label")
    groups = page.locator(".hall-group")
    labels = [groups.nth(i).get_attribute("data-label") for i in range(groups.count())]
    assert {"3", "7", "9"} <= set(labels) and labels == sorted(labels, key=int)  # grouped, in label order
    for i, label in enumerate(labels):
        group = groups.nth(i)
        assert group.locator(".made img").count() == 3, label  # per_class of each label made
        assert group.locator(".sources img").count() == (2 if label in {"3", "7", "9"} else 0), label  # its examples beside it
    screenshot(page.locator("#hallucinate"), "hallucinate")

    with page.expect_download() as download:
        page.click("#hall-zip")
    with zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())) as archive:
        assert len(archive.read("labels.csv").decode().splitlines()) == len(made) + 1


def test_an_example_the_model_reads_otherwise_is_marked(page) -> None:
    page.fill("#hall-pick-labels", "3,7")
    page.fill("#hall-pick-count", "1")
    page.click("#hall-pick")
    expect(page.locator("#fewshot li")).to_have_count(2)
    page.select_option("#fewshot li:first-child select", "7")  # the 3, labelled 7
    with page.expect_response("**/v1/hallucinate") as answer:
        page.click("#hall-run")
    body = answer.value.json()
    first = body["disagreements"][0]
    assert (first["file"], first["given"], first["read"]) == (0, "7", "3")
    expect(page.locator("#fewshot li:first-child img.misread")).to_have_count(1)
    expect(page.locator("#fewshot li:first-child .misread-note")).to_have_text("model reads 3")
    expect(page.locator("#hall-check")).to_contain_text("example 1 (given 7, reads 3)")
    check = body["self_check"]
    expect(page.locator("#hall-check")).to_contain_text(f"{check['replaced']} redrawn, {check['dropped']} left out")
    expect(page.locator('.hall-group[data-label="7"] .sources img.misread')).to_have_count(1)
    screenshot(page.locator("#hallucinate"), "hallucinate-disagreement")


CLICKABLE_POINTS = """() => Array.from(document.querySelectorAll('#map-points .pt')).flatMap((dot) => {
  const r = dot.getBoundingClientRect(), x = r.x + r.width / 2, y = r.y + r.height / 2;
  return document.elementFromPoint(x, y) === dot ? [{x, y, label: dot.dataset.label, index: dot.dataset.index}] : [];
})"""
"""Points a click at their centre would hit (not under another point), in viewport pixels."""


def test_click_two_map_points_to_morph(page) -> None:
    expect(page.locator("#map-points .pt")).to_have_count(1000)
    expect(page.locator("#map-svg .tick")).to_have_count(10)  # the order circle's labels
    page.locator("#map-svg").scroll_into_view_if_needed()
    points = page.evaluate(CLICKABLE_POINTS)
    first = min(points, key=lambda p: int(p["label"]))
    second = max(points, key=lambda p: int(p["label"]))
    page.mouse.click(first["x"], first["y"])
    expect(page.locator("#map-picked")).to_contain_text("now click a second point")
    page.mouse.click(second["x"], second["y"])
    expect(page.locator("#map-picked")).to_have_text(
        f"From label {first['label']} (#{first['index']}) to label {second['label']} (#{second['index']})."
    )
    expect(page.locator("#map-strip li")).to_have_count(10)
    expect(page.locator("#map-paths .path-slerp")).to_have_count(1)
    expect(page.locator("#map-points .picked")).to_have_count(2)
    screenshot(page.locator("#map"), "map")


def test_activate_a_model_then_train_and_cancel(page) -> None:
    expect(page.locator("#model-table tbody tr")).to_have_count(2)
    expect(page.locator('tr[data-model="tiny"] .badge')).to_have_text("active")
    expect(page.locator("#token-row")).to_be_hidden()  # no token on this server
    page.click('tr[data-model="tiny-b"] button')
    expect(page.locator("#model-id")).to_have_text("tiny-b")
    expect(page.locator('tr[data-model="tiny-b"] .badge')).to_have_text("active")
    expect(page.locator("#map-caption")).to_contain_text("model tiny-b")

    page.fill("#train-epochs", "50")
    page.fill("#train-latent", "8")
    page.click("#train-start")
    expect(page.locator("#job")).to_be_visible()
    page.wait_for_function("() => document.querySelector('#job-progress').value > 0", timeout=JOB_WAIT_MS)
    expect(page.locator("#job-status")).to_have_text("started")
    expect(page.locator("#job-progress-label")).to_contain_text("epoch 1/50")
    screenshot(page.locator("#models"), "training")
    page.click("#job-cancel")
    expect(page.locator("#job-status")).to_have_text("stopped", timeout=JOB_WAIT_MS)
    expect(page.locator("#job-cancel")).to_be_disabled()


def test_phone_sized_screen_and_touch(browser, server: str) -> None:
    page, problems = open_page(browser, server, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        touch_draw(page, "#canvas-a", ZERO)
        page.click("#picker summary")
        page.check('input[name="pick-into"][value="b"]')
        page.locator('#gallery button[data-label="7"]').first.tap()
        expect(page.locator("#strip-slerp li")).to_have_count(8)
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"the page is wider than the screen: {width}"
        screenshot(page.locator("#morph"), "phone")
    finally:
        page.context.close()
    assert not problems, problems


# ---------------------------------------------------------------- a colour model

PHOTO_LABELS = ["-60deg", "-45deg", "-30deg", "-15deg", "0deg", "+15deg", "+30deg", "+45deg", "+60deg"]
"""The colour checkpoint's label names, in its order (tests/service/conftest.py, colour_folder)."""

PICTURE = """(img) => {
  const c = document.createElement("canvas");
  c.width = img.naturalWidth;
  c.height = img.naturalHeight;
  const ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  let colour = 0;
  for (let i = 0; i < d.length; i += 4) {
    colour = Math.max(colour, Math.abs(d[i] - d[i + 1]), Math.abs(d[i + 1] - d[i + 2]), Math.abs(d[i] - d[i + 2]));
  }
  return {natural: [c.width, c.height], shown: [img.width, img.height], colour,
          rendering: getComputedStyle(img).imageRendering};
}"""
"""A shown picture's own size, displayed size, largest channel difference (0 for grey) and scaling."""

DROP = """([selector, name, b64]) => {
  const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, {type: "image/png"}));
  const target = document.querySelector(selector);
  for (const type of ["dragover", "drop"]) {
    target.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
  }
}"""
"""Drop a PNG file onto ``selector``, as a drag from the desktop does."""


@pytest.fixture(scope="module")
def colour_server(
    redis_url: str, colour_checkpoint: Path, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``atnl serve`` on a store holding the colour checkpoint ``photos`` (active) and the grey
    digit one ``tiny``."""
    tmp = tmp_path_factory.mktemp("playground-colour")
    store = tmp / "store"
    shutil.copytree(colour_checkpoint, store / "photos")
    shutil.copytree(tiny_checkpoint, store / "tiny")
    ModelStore(store).set_active("photos")
    env = {"ATNL_REDIS_URL": redis_url.rsplit("/", 1)[0] + "/3", "ATNL_MODEL_STORE": str(store)}
    api = Server.serve(env, tmp)
    try:
        yield api.start().url
    finally:
        api.stop()


@pytest.fixture
def colour_page(browser, colour_server: str) -> Iterator:
    page, problems = open_page(browser, colour_server, viewport={"width": 1280, "height": 900})
    yield page
    page.context.close()
    assert not problems, problems


def photo(colour_folder: Path, label: str, i: int = 0) -> Path:
    """The ``i``-th colour PNG of ``label`` in the colour folder, named after its label (``-60deg_000.png``)."""
    return sorted((colour_folder / label).glob("*.png"))[i]


def assert_colour_picture(page, img, side: int = COLOUR_SIDE) -> dict:
    """``img`` shows a colour picture of the model's side, scaled by a whole factor, pixelated."""
    seen = img.evaluate(PICTURE)
    assert seen["natural"] == [side, side], seen
    assert seen["colour"] >= 4, seen  # not grey (0): its channels differ (a one-epoch model's by about 10 of 255)
    assert seen["shown"][0] % side == 0 and seen["shown"][0] == seen["shown"][1], seen  # its own aspect, whole pixels
    assert seen["rendering"] == "pixelated", seen
    return seen


def test_a_colour_model_morphs_two_chosen_and_dropped_pictures(colour_page, colour_folder: Path) -> None:
    page = colour_page
    expect(page.locator("#model-kind")).to_have_text("(colour 24×24, 9 labels)")
    for slot in ("a", "b"):
        expect(page.locator(f"#canvas-{slot}")).to_be_hidden()  # a drawn digit means nothing to this model
        expect(page.locator(f"#drop-{slot}")).to_be_visible()
        expect(page.locator(f"[data-file='{slot}']")).to_be_attached()
    expect(page.locator("#pad-note")).to_contain_text("No drawing pads: this model reads colour 24×24 pictures")
    sent: list[bytes] = []
    page.on("request", lambda r: r.url.endswith("/v1/interpolate") and sent.append(r.post_data_buffer or b""))

    page.set_input_files("[data-file='a']", str(photo(colour_folder, "-60deg")))
    expect(page.locator("#drop-a img")).to_be_visible()
    page.evaluate(DROP, ["#drop-b", "+60deg_000.png", base64.b64encode(photo(colour_folder, "+60deg").read_bytes()).decode()])
    expect(page.locator("#drop-b img")).to_be_visible()

    expect(page.locator("#strip-slerp li")).to_have_count(8)
    expect(page.locator("#strip-lerp li")).to_have_count(8)
    expect(page.locator("#morph-error")).to_be_empty()
    for img in page.locator("#strip-slerp img").all():
        assert_colour_picture(page, img)
    expect(page.locator("#live-slerp")).to_have_attribute("data-omega", "0.50")
    assert_colour_picture(page, page.locator("#live-slerp"))
    assert sent and all(b'name="preprocess"' not in body for body in sent), "the page sent a preprocessing of its own"
    screenshot(page.locator("#morph"), "colour-morph")


def test_a_colour_models_test_images_carry_its_label_names(colour_page) -> None:
    page = colour_page
    page.click("#picker summary")
    rows = page.locator("#gallery .label-row > span")
    expect(rows).to_have_count(len(PHOTO_LABELS))
    assert rows.all_inner_texts() == PHOTO_LABELS
    assert_colour_picture(page, page.locator("#gallery img").first)
    page.locator('#gallery button[data-label="-45deg"]').first.click()
    page.locator('#gallery button[data-label="+45deg"]').first.click()
    expect(page.locator("#strip-slerp li")).to_have_count(8)
    expect(page.locator("#morph-example")).to_have_text(
        "A semantic morph goes through the labels in between: -60deg becomes -45deg, -30deg, -15deg, 0deg, then +15deg."
    )
    expect(page.locator("#map-legend li")).to_have_text(PHOTO_LABELS)
    expect(page.locator("#map-svg .tick")).to_have_text(PHOTO_LABELS)
    expect(page.locator("#map-from option")).to_have_text(PHOTO_LABELS)
    expect(page.locator("#hall-pick-labels")).to_have_value("-60deg,0deg,+60deg")
    screenshot(page.locator("#map"), "colour-map")


def test_hallucinate_from_colour_files_by_label_name(colour_page, colour_folder: Path) -> None:
    page = colour_page
    given = ["-60deg", "-60deg", "-30deg", "+45deg", "+45deg"]
    page.set_input_files("#hall-files", [str(photo(colour_folder, label, i)) for i, label in enumerate(given)])
    expect(page.locator("#fewshot li")).to_have_count(len(given))
    assert [page.locator("#fewshot li select").nth(i).input_value() for i in range(len(given))] == given  # from the file names
    page.fill("#per-class", "2")
    page.select_option("#hall-filter", "none")  # a one-epoch model: keep what it makes, marked
    with page.expect_response("**/v1/hallucinate") as answer:
        page.click("#hall-run")
    body = answer.value.json()
    assert "preprocess" not in (answer.value.request.post_data_buffer or b"").decode("latin-1")
    expect(page.locator(".hall-group .made img")).to_have_count(len(body["images"]))
    groups = page.locator(".hall-group")
    made = ["-60deg", "-45deg", "-30deg", "+45deg"]  # the labels given, and -45deg between two of them
    assert [groups.nth(i).get_attribute("data-label") for i in range(groups.count())] == made  # by name, in label order
    assert page.locator(".hall-group h3").all_inner_texts() == made
    for label in made:
        group = page.locator(f'.hall-group[data-label="{label}"]')
        assert group.locator(".sources img").count() == given.count(label), label
        assert group.locator(".made img").count() == 2, label
    assert_colour_picture(page, page.locator(".hall-group .made img").first)
    screenshot(page.locator("#hallucinate"), "colour-hallucinate")


def test_a_swap_between_grey_digits_and_colour_follows_the_model(colour_page) -> None:
    page = colour_page
    page.click('tr[data-model="tiny"] button')
    expect(page.locator("#model-id")).to_have_text("tiny")
    expect(page.locator("#model-kind")).to_have_text("(grey 28×28, 10 labels)")
    expect(page.locator("#canvas-a")).to_be_visible()
    expect(page.locator("#drop-a")).to_be_hidden()
    expect(page.locator("#pad-note")).to_be_hidden()
    expect(page.locator("#map-legend li")).to_have_count(10)
    expect(page.locator("#hall-pick-labels")).to_have_value("0,5,9")
    page.evaluate("window.scrollTo(0, 0)")  # the pads, where the mouse can reach them
    draw(page, "#canvas-a", ZERO)
    draw(page, "#canvas-b", SEVEN)
    expect(page.locator("#strip-slerp li")).to_have_count(8)
    assert page.locator("#strip-slerp img").first.evaluate(PICTURE)["colour"] == 0  # grey frames again

    page.click('tr[data-model="photos"] button')
    expect(page.locator("#model-id")).to_have_text("photos")
    expect(page.locator("#canvas-a")).to_be_hidden()
    expect(page.locator("#drop-a")).to_be_visible()
    expect(page.locator("#strip-slerp li")).to_have_count(0)  # the drawn digits went with the pads
    expect(page.locator("#map-legend li")).to_have_text(PHOTO_LABELS)
