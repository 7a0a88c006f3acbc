"""The Playground's page and read-only endpoints, through the ASGI app on the real tiny checkpoint:
GET / and its files, GET /v1/samples, /v1/samples/{index}, /v1/latent-map and /v1/auth; what
the page follows of the active model (GET /v1/models), on the grey digit model and on a colour
one; and what the page's files hold: no preprocessing or label names of their own, a file
input and a drop zone for each morph end, pictures sized by their own shape.
(The page itself, in a real browser: test_playground_browser.py.)"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import time
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import SecretStr

from models import read_meta
from service import latent_map
from service.store import ModelStore
from tests.service.conftest import COLOUR_SIDE
from tests.service.helpers import assert_problem

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "service" / "static"


def png_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)), dtype=np.float32) / 255.0


async def test_page_and_its_files_are_served(client) -> None:
    r = await client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]  # nothing from another origin
    assert '<script src="/playground/app.js"' in r.text and 'href="/playground/style.css"' in r.text
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        r = await client.get(f"/playground/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind), name
        assert r.content == (STATIC / name).read_bytes()
    assert_problem(await client.get("/playground/index.html"), 404)  # only the two files, nothing else of the package
    assert_problem(await client.get("/playground/..%2Fmain.py"), 404)


def test_page_fetches_nothing_from_elsewhere() -> None:
    """No CDN, no web font, no absolute URL: the page works offline (SVG's namespace is a name, not a fetch)."""
    for path in STATIC.iterdir():
        text = path.read_text()
        urls = [u for u in re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"'`)]*", text) if u != "http://www.w3.org/2000/svg"]
        assert not urls, (path.name, urls)
        assert "@import" not in text and "import(" not in text, path.name


def test_the_page_leaves_the_preprocessing_to_the_model() -> None:
    """The page never names a preprocessing in a request: the server prepares pictures as the
    active model was trained (``model``, the default), grey digits or colour photos alike."""
    script = (STATIC / "app.js").read_text()
    assert not re.search(r"""append\(\s*["']preprocess""", script)
    assert not re.search(r"preprocess\s*[:=]\s*[\"'`]|[?&]preprocess=", script)
    assert not re.search(r"""["'`]mnist["'`]""", script)  # the old clients' name for digits


def test_the_page_holds_no_label_names_of_its_own() -> None:
    """Label names come from the model (GET /v1/models, /v1/samples, /v1/latent-map), not the page."""
    html = (STATIC / "index.html").read_text()
    pick = re.search(r'<input[^>]*id="hall-pick-labels"[^>]*>', html)
    assert pick and "value=" not in pick.group(0), pick
    for select in ("map-from", "map-to"):
        assert f'<select id="{select}"></select>' in html, select
    script = (STATIC / "app.js").read_text()
    assert not re.search(r"""["'`]\d(,\d)+["'`]""", script)  # no "3,7,9"
    assert "parseInt" not in script and not re.search(r"Number\((name|label|[a-z]\.label)\)", script)


def test_each_morph_end_takes_an_image_file() -> None:
    """A drawing pad for grey digit models, and beside it (hidden until a model that takes no
    drawing is active) a drop zone; a file input either way."""
    html = (STATIC / "index.html").read_text()
    for slot in ("a", "b"):
        assert f'<canvas id="canvas-{slot}"' in html
        zone = re.search(rf'<div id="drop-{slot}"[^>]*>', html)
        assert zone and " hidden" in zone.group(0) and 'tabindex="0"' in zone.group(0), slot
        assert re.search(rf'<input type="file" accept="image/png,image/jpeg" data-file="{slot}">', html), slot
    assert re.search(r'<p class="note" id="pad-note" hidden>', html)  # says why, when the pads are hidden


def test_pictures_keep_their_own_shape() -> None:
    """No style rule squares a picture: the script sizes each at a whole multiple of its own
    width and height (24×24, 48×48 or 28×28 alike), scaled with square pixels."""
    css = (STATIC / "style.css").read_text()
    rules = re.findall(r"([^{}]+)\{([^{}]*)\}", re.sub(r"/\*.*?\*/", "", css, flags=re.S))
    for selector, body in rules:
        if re.search(r"\bimg\b", selector):
            fixed = [p for p in ("width", "height", "aspect-ratio") if re.search(rf"(?<![-\w]){p}\s*:\s*[\d.]", body)]
            assert not fixed, (selector.strip(), fixed)
    pictures = next(body for selector, body in rules if ".strip img" in selector)
    assert "image-rendering: pixelated" in pictures


def test_the_package_ships_the_page() -> None:
    """pyproject's package data names every file of service/static (a wheel or `pip install .` has them)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["service"]
    for path in STATIC.iterdir():
        relative = path.relative_to(ROOT / "service").as_posix()
        assert any(fnmatch(relative, pattern) for pattern in config), (relative, config)


async def test_samples_are_the_models_own_test_images(client, tiny_checkpoint: Path, mnist_5k) -> None:
    r = await client.get("/v1/samples", params={"per_label": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_id"] == "tiny" and body["labels"] == [str(k) for k in range(10)]
    assert [s["label"] for s in body["samples"]] == [str(k) for k in range(10) for _ in range(2)]
    test_indices = set(read_meta(tiny_checkpoint)["data"]["test_indices"])
    for s in body["samples"]:
        assert s["index"] in test_indices and str(int(mnist_5k.labels[s["index"]])) == s["label"]
        pixels = png_pixels(base64.b64decode(s["png"]))
        np.testing.assert_allclose(pixels, mnist_5k.images[s["index"], 0].numpy(), atol=1 / 255)

    one = body["samples"][3]
    r = await client.get(f"/v1/samples/{one['index']}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.headers["x-model-id"] == "tiny"
    np.testing.assert_allclose(png_pixels(r.content), mnist_5k.images[one["index"], 0].numpy(), atol=1 / 255)
    assert len((await client.get("/v1/samples")).json()["samples"]) == 40  # default: 4 a label


async def test_samples_refuse_what_they_cannot_serve(client, tiny_checkpoint: Path) -> None:
    assert_problem(await client.get("/v1/samples", params={"per_label": 0}), 422, "per_label")
    assert_problem(await client.get("/v1/samples", params={"per_label": latent_map.MAX_SAMPLES_PER_LABEL + 1}), 422, "per_label")
    assert_problem(await client.get("/v1/samples", params={"per_label": "many"}), 422, "per_label")
    train_index = min(set(range(5000)) - set(read_meta(tiny_checkpoint)["data"]["test_indices"]))
    assert_problem(await client.get(f"/v1/samples/{train_index}"), 404, "not one of model tiny's")
    assert_problem(await client.get("/v1/samples/-1"), 422)


async def test_latent_map_places_each_test_latent_as_documented(client, tiny_checkpoint: Path) -> None:
    r = await client.get("/v1/latent-map")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_id"] == "tiny" and body["method"] == "order-circle" and body["spherical"] is True
    points = body["points"]
    assert len(points) == 1000 and {p["label"] for p in points} == {str(k) for k in range(10)}
    assert {p["index"] for p in points} == set(read_meta(tiny_checkpoint)["data"]["test_indices"])
    centres = body["centres"]
    assert [c["label"] for c in centres] == body["labels"]
    xs = [c["x"] for c in centres]
    assert xs == sorted(xs) and all(c["y"] > 0 for c in centres)  # left to right over the circle's top
    np.testing.assert_allclose([np.hypot(c["x"], c["y"]) for c in centres], 1.0, atol=1e-9)

    # The formula the response documents, on latents from POST /v1/encode, gives the points back.
    p = body["projection"]
    mean, components = np.asarray(p["mean"]), np.asarray(p["components"])
    chosen = points[::100]
    files = [
        ("files", (f"{q['index']}.png", (await client.get(f"/v1/samples/{q['index']}")).content, "image/png")) for q in chosen
    ]
    z = np.asarray((await client.post("/v1/encode", files=files, data={"preprocess": "none"})).json()["latents"])
    psi, rho = np.arctan2(z[:, 1], z[:, 0]), np.hypot(z[:, 0], z[:, 1]) / p["radius"]
    xy = np.stack([rho * np.sin(psi), rho * np.cos(psi)], 1) + p["style_scale"] * (z[:, 2:] - mean) @ components.T
    error = np.abs(xy - [[q["x"], q["y"]] for q in chosen]).max(axis=1)
    assert (error < 0.02).sum() >= len(chosen) - 1, error  # PNG rounding may move one image across a sector edge


async def test_latent_map_is_computed_once_per_model_and_follows_a_swap(client, store_dir: Path) -> None:
    first = await client.get("/v1/latent-map")
    lm = client.app.state.engine.current
    cached = latent_map.latent_map(lm)
    start = time.perf_counter()
    again = await client.get("/v1/latent-map")
    assert again.json() == first.json() and latent_map.latent_map(lm) is cached
    assert time.perf_counter() - start < 2.0

    shutil.copytree(store_dir / "tiny", store_dir / "tiny-b")
    assert (await client.post("/v1/models/tiny-b/activate", json={})).status_code == 200
    swapped = (await client.get("/v1/latent-map")).json()
    assert swapped["model_id"] == "tiny-b" and latent_map.latent_map(client.app.state.engine.current) is not cached
    assert (await client.get("/v1/samples", params={"per_label": 1})).json()["model_id"] == "tiny-b"


async def test_a_model_whose_data_is_not_here(client, store_dir: Path) -> None:
    """Its map and samples answer 404 problem+json, saying why without the server's paths."""
    shutil.copytree(store_dir / "tiny", store_dir / "elsewhere")
    meta_path = store_dir / "elsewhere" / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["data"]["spec"] = "folder:/srv/secret/faces"
    meta_path.write_text(json.dumps(meta))
    assert (await client.post("/v1/models/elsewhere/activate", json={})).status_code == 200
    for path in ("/v1/latent-map", "/v1/samples", "/v1/samples/0"):
        body = assert_problem(await client.get(path), 404, "cannot be read here")
        assert "/srv/secret" not in body["detail"], body


async def test_no_model_yet(client_factory, settings, tmp_path: Path) -> None:
    empty = settings.model_copy(update={"model_store": tmp_path / "empty"})
    async for c in client_factory(empty):
        assert (await c.get("/")).status_code == 200  # the page loads, and says so itself
        for path in ("/v1/latent-map", "/v1/samples", "/v1/samples/3"):
            assert_problem(await c.get(path), 503, "no model")


async def test_auth_says_whether_a_token_is_needed(client, client_factory, settings) -> None:
    assert (await client.get("/v1/auth")).json() == {"token_required": False}
    async for c in client_factory(settings.model_copy(update={"api_token": SecretStr("s3cret")})):
        assert (await c.get("/v1/auth")).json() == {"token_required": True}


async def test_openapi_documents_the_new_endpoints(client) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    assert "/" not in paths and not any(p.startswith("/playground") for p in paths)
    for path, schema in (("/v1/samples", "SampleList"), ("/v1/latent-map", "LatentMapResponse"), ("/v1/auth", "AuthInfo")):
        answer = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert answer == {"$ref": f"#/components/schemas/{schema}"}, path
        assert paths[path]["get"]["description"] or paths[path]["get"]["summary"]
    assert "image/png" in paths["/v1/samples/{index}"]["get"]["responses"]["200"]["content"]
    per_label = next(p for p in paths["/v1/samples"]["get"]["parameters"] if p["name"] == "per_label")
    assert per_label["schema"]["minimum"] == 1 and per_label["schema"]["maximum"] == latent_map.MAX_SAMPLES_PER_LABEL


async def test_models_list_what_the_page_follows(client) -> None:
    """The page reads the active model's picture shape, preprocessing and label names from GET /v1/models."""
    listing = (await client.get("/v1/models")).json()
    active = next(m for m in listing["models"] if m["id"] == listing["active"])
    assert listing["active"] == "tiny"
    assert (active["image_shape"], active["preprocess"], active["labels"]) == ([1, 28, 28], "digits", [str(k) for k in range(10)])


async def test_a_colour_model_answers_the_page_in_its_own_shape(
    client_factory, settings, colour_checkpoint: Path, colour_folder: Path, tmp_path: Path
) -> None:
    """On a colour model the listing, the test images, the map and a morph sent as the page sends
    it (no preprocess field) are all in its shape and label names: colour PNGs at its side."""
    store = tmp_path / "colour-store"
    shutil.copytree(colour_checkpoint, store / "photos")
    ModelStore(store).set_active("photos")
    names = (colour_folder / "labels.txt").read_text().split()
    async for c in client_factory(settings.model_copy(update={"model_store": store})):
        listing = (await c.get("/v1/models")).json()
        (model,) = listing["models"]
        assert listing["active"] == "photos" and model["labels"] == names
        assert model["image_shape"] == [3, COLOUR_SIDE, COLOUR_SIDE] and model["preprocess"] == "fit"

        samples = (await c.get("/v1/samples", params={"per_label": 1})).json()
        assert samples["labels"] == names and [s["label"] for s in samples["samples"]] == names
        for s in samples["samples"]:
            picture = Image.open(io.BytesIO(base64.b64decode(s["png"])))
            assert (picture.mode, picture.size) == ("RGB", (COLOUR_SIDE, COLOUR_SIDE))
        map_labels = (await c.get("/v1/latent-map")).json()["labels"]
        assert map_labels == names

        ends = [sorted((colour_folder / name).glob("*.png"))[0] for name in (names[0], names[-1])]
        files = {"start": ("start.png", ends[0].read_bytes(), "image/png"), "end": ("end.png", ends[1].read_bytes(), "image/png")}
        r = await c.post("/v1/interpolate", files=files, data={"steps": "4", "method": "slerp"})
        assert r.status_code == 200, r.text
        for png in r.json()["frames"]:
            frame = np.asarray(Image.open(io.BytesIO(base64.b64decode(png))))
            assert frame.shape == (COLOUR_SIDE, COLOUR_SIDE, 3)
