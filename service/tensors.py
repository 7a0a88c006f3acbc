"""The binary tensor path: numpy ``.npy`` bodies and answers (``application/x-npy``).

Multipart uploads and base64 PNGs are the price of curl-friendliness; a program that already
holds arrays sends them as they are (Triton's binary tensor extension and KServe's v2 protocol
do the same):

- ``POST /v1/encode`` with a ``Content-Type: application/x-npy`` body: an N×C×H×W array in the
  model's shape, uint8 (0..255) or float32 (0..1), no preprocessing (the array is the model's
  input); at most ATNL_MAX_FILES images and ATNL_MAX_REQUEST_BYTES;
- ``POST /v1/decode`` with a ``Content-Type: application/x-npy`` body: an N×d float32 array;
- either, with ``Accept: application/x-npy``, answers an npy array (encode: N×d float32 unit
  latents; decode: N×C×H×W float32 in [0, 1]) and the model in ``X-Model-Id``.

Bodies are read with ``allow_pickle=False`` (an object array is refused, never unpickled) and
checked like every input: dtype, shape, count, finite values, range.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable

import numpy as np
from fastapi import Request, Response

from service.errors import InvalidInput, PayloadTooLarge

NPY = "application/x-npy"
NPY_MAGIC = b"\x93NUMPY"
NPY_BODIES: dict[str, Callable[[Request], Awaitable[Response]]] = {}
"""Route path -> the handler of its ``application/x-npy`` bodies (service.forms.QueryOptionsRoute
calls it instead of parsing a form)."""
IMAGE_DTYPES = ("uint8", "float32")
LATENT_DTYPES = ("float32", "float64")


def sends_npy(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == NPY


def wants_npy(request: Request) -> bool:
    return NPY in request.headers.get("accept", "").lower()


def read_npy(body: bytes, field: str) -> np.ndarray:
    """The one array of an .npy body; InvalidInput for anything else (pickles, npz, truncated bytes)."""
    if not body.startswith(NPY_MAGIC):  # an .npz (a zip), JSON, an image: not this path's
        raise InvalidInput(f"{field}: not a .npy array (it starts with {NPY_MAGIC!r}; np.save writes one)", field=field)
    try:
        array = np.lib.format.read_array(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError, TypeError) as e:
        raise InvalidInput(f"{field}: not a readable .npy array without pickles ({str(e)[:120]})", field=field) from e
    return np.asarray(array)


def images_of(array: np.ndarray, shape: tuple[int, int, int], max_images: int) -> np.ndarray:
    """An N×C×H×W uint8 or float32 array in ``shape`` -> float32 in [0, 1]; InvalidInput or
    PayloadTooLarge (naming the setting) otherwise."""
    if array.dtype.name not in IMAGE_DTYPES:
        raise InvalidInput(f"images must be uint8 (0..255) or float32 (0..1), not {array.dtype.name}", field="body")
    if array.ndim != 4 or tuple(array.shape[1:]) != shape or array.shape[0] < 1:
        raise InvalidInput(
            f"images must be an N x {shape[0]} x {shape[1]} x {shape[2]} array (N >= 1), the model's shape; "
            f"got {'x'.join(map(str, array.shape)) or 'a scalar'}",
            field="body",
        )
    if array.shape[0] > max_images:
        raise PayloadTooLarge(f"{array.shape[0]} images sent; the limit is {max_images} (ATNL_MAX_FILES)", field="body")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0:
        raise InvalidInput("float32 images must be finite and within [0, 1]", field="body")
    return np.ascontiguousarray(array, dtype=np.float32)


def latents_of(array: np.ndarray, dim: int, max_latents: int, max_abs: float) -> np.ndarray:
    """An N×d float array -> float32; InvalidInput or PayloadTooLarge otherwise (the JSON path's rules)."""
    if array.dtype.name not in LATENT_DTYPES:
        raise InvalidInput(f"latents must be float32 (or float64), not {array.dtype.name}", field="latents")
    if array.ndim != 2 or array.shape[1] != dim or array.shape[0] < 1:
        raise InvalidInput(f"latents must be an N x {dim} array (N >= 1), the model's latent_dim", field="latents")
    if array.shape[0] > max_latents:
        raise PayloadTooLarge(f"{array.shape[0]} latents sent; the limit is {max_latents} (ATNL_MAX_LATENTS)", field="latents")
    if not np.isfinite(array).all():
        raise InvalidInput("latents must be finite numbers", field="latents")
    if np.abs(array).max() > max_abs:
        raise InvalidInput(f"latents must lie within ±{max_abs:g} (ATNL_MAX_LATENT_ABS)", field="latents")
    return np.ascontiguousarray(array, dtype=np.float32)


def npy_answer(array: np.ndarray, model_id: str) -> Response:
    """``array`` as an .npy answer, the model that made it in X-Model-Id."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return Response(buffer.getvalue(), media_type=NPY, headers={"X-Model-Id": model_id})
