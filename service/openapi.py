"""The OpenAPI document this deployment serves (GET /openapi.json, /docs): FastAPI's, made exact.

FastAPI writes the document from the route declarations. What it cannot know is added
here, in one place:

- Errors. Every error answer is application/problem+json (service.errors). Routes list
  theirs with ``errors.problems(...)``; the ``Problem`` schema joins the components, and
  FastAPI's own 422 (its HTTPValidationError, as application/json) becomes a Problem
  where validation can fail, and goes where it cannot (plain string path parameters).
- Forms. A multipart field cannot be null (a client leaves it out), so the null branch
  of an optional form field goes; image parts are binary (``format``, for clients);
  body-level constraints a route gives next to the body's ``$ref`` (``oneOf`` over two
  fields) move into the body's schema.
- Auth. With ATNL_API_TOKEN set, the operations behind ``require_token`` declare the
  bearer scheme.
- Bounds. Schemas marked ``schemas.bound(name)`` take their numbers from this
  deployment's settings and its active model (BOUND_FILLERS): the most files, the latent
  length, the label names, the uploaded data sets a training request may name. The
  document is rebuilt when the active model or those data sets change, so a
  schema-valid request is one this service accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import iter_route_contexts
from pydantic.json_schema import models_json_schema

from service.bounds import HALLUCINATE_N, STEPS, TRAIN_BOUNDS, Bound
from service.dataset_store import open_datasets
from service.datasets import BUILT_IN, UPLOAD_KIND
from service.deps import require_token
from service.errors import InvalidInput, problems
from service.schemas import BOUND, Problem, dataset_pattern
from service.settings import Settings

if TYPE_CHECKING:
    from service.loaded_model import LoadedModel

COMPONENTS = "#/components/schemas/"
FASTAPI_422 = COMPONENTS + "HTTPValidationError"
BEARER = "bearerToken"
"""Name of the security scheme of ATNL_API_TOKEN."""
Filler = Callable[[dict[str, Any], Settings, "LoadedModel | None"], None]


def _value_branch(node: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of ``anyOf: [X, null]`` (where bounds go), else the node itself."""
    branches = [b for b in node.get("anyOf", []) if b.get("type") != "null"]
    return branches[0] if len(branches) == 1 else node


def _declared(bound: Bound) -> Filler:
    """A ``service.bounds`` declaration's minimum, maximum and default."""
    return lambda node, settings, model: _value_branch(node).update(bound.schema(settings))


def _labels(node: dict[str, Any], settings: Settings, model: LoadedModel | None) -> None:
    node["maxItems"] = settings.max_files
    if model is not None:
        node["items"]["enum"] = model.label_names


def _per_class(node: dict[str, Any], settings: Settings, model: LoadedModel | None) -> None:
    labels = len(model.label_names) if model is not None else 1
    _value_branch(node)["maximum"] = HALLUCINATE_N.highest(settings) // max(labels, 1)


def _latent(node: dict[str, Any], settings: Settings, model: LoadedModel | None) -> None:
    if model is not None:
        node["minItems"] = node["maxItems"] = model.latent_dim


def uploaded_datasets(settings: Settings) -> list[str]:
    """Ids of the data sets uploaded to this deployment's store (the document lists them)."""
    return open_datasets(settings).ids()


def _dataset(node: dict[str, Any], settings: Settings, model: LoadedModel | None) -> None:
    branches: list[dict[str, Any]] = [{"type": "string", "enum": list(BUILT_IN)}]
    if settings.data_roots:
        branches.append({"type": "string", "maxLength": 1024, "pattern": dataset_pattern(settings.data_roots)})
    uploads = uploaded_datasets(settings)
    if uploads:  # the ones there now: a schema-valid upload:ID is one the store holds
        branches.append({"type": "string", "enum": [f"{UPLOAD_KIND}:{dataset_id}" for dataset_id in uploads]})
    node["anyOf"] = [*branches, {"type": "null"}]


BOUND_FILLERS: dict[str, Filler] = {
    "files": lambda node, settings, model: node.update(maxItems=settings.max_files),
    "labels": _labels,
    "steps": _declared(STEPS),
    "n": _declared(HALLUCINATE_N),
    "per_class": _per_class,
    "latents": lambda node, settings, model: node.update(maxItems=settings.max_latents),
    "latent": _latent,
    "coordinate": lambda node, settings, model: node.update(minimum=-settings.max_latent_abs, maximum=settings.max_latent_abs),
    "dataset": _dataset,
    **{f"train.{field}": _declared(bound) for field, bound in TRAIN_BOUNDS.items()},
}
"""Each ``schemas.bound`` name -> how it bounds its schema node, from the settings and the active model
(None before one is loaded: the bounds that need it are left open)."""


def _nodes(tree: Any) -> Iterator[dict[str, Any]]:
    if isinstance(tree, dict):
        yield tree
        for value in list(tree.values()):
            yield from _nodes(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _nodes(value)


def apply_bounds(document: dict[str, Any], settings: Settings, model: LoadedModel | None) -> None:
    for node in _nodes(document):
        if BOUND in node:
            BOUND_FILLERS[node.pop(BOUND)](node, settings, model)


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            yield path, method, operation


def _can_fail_validation(operation: dict[str, Any]) -> bool:
    """Whether FastAPI's validation can refuse a request: a body, or a parameter that is more than any string."""
    plain = {"type", "title", "description"}
    return "requestBody" in operation or any(
        set(p.get("schema", {})) - plain or p["schema"].get("type") != "string" for p in operation.get("parameters", [])
    )


def _problem_422(document: dict[str, Any]) -> None:
    """FastAPI's default 422 -> the Problem 422 where validation can fail; dropped where it cannot."""
    for _path, _method, operation in _operations(document):
        answer = operation["responses"].get("422", {})
        if FASTAPI_422 in str(answer):
            if _can_fail_validation(operation):
                operation["responses"]["422"] = problems(InvalidInput)[422]
            else:
                del operation["responses"]["422"]
    schemas = document["components"]["schemas"]
    if FASTAPI_422 not in str(document["paths"]):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    _, definitions = models_json_schema([(Problem, "serialization")], ref_template=COMPONENTS + "{model}")
    schemas.update(definitions["$defs"])


def _forms(document: dict[str, Any]) -> None:
    """Multipart bodies: no null branches (a form field is left out, never null); the parts the route
    lists as images (their ``encoding``) say ``format: binary`` (sent as files); body-level constraints
    written beside the body's $ref move into the referenced schema."""
    schemas = document["components"]["schemas"]
    for _path, _method, operation in _operations(document):
        media = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data")
        if media is None:
            continue
        if "$ref" in media["schema"]:
            ref = media["schema"].pop("$ref")
            body = schemas[ref.removeprefix(COMPONENTS)]
            body.update(media.pop("schema"))
            media["schema"] = {"$ref": ref}
        else:  # a form the route reads itself, its schema given inline (openapi_extra)
            body = media["schema"]
        for field in body["properties"].values():
            branch = _value_branch(field)
            if branch is not field:
                del field["anyOf"]
                field.update({k: v for k, v in branch.items() if k not in field})
        for name in media.get("encoding", {}):
            part = body["properties"][name]
            part = part["items"] if part.get("type") == "array" else part
            part["format"] = "binary"


def _security(document: dict[str, Any], app: FastAPI, settings: Settings) -> None:
    """With a token set, the operations behind require_token declare the bearer scheme."""
    if settings.api_token is None:
        return
    document["components"]["securitySchemes"] = {
        BEARER: {"type": "http", "scheme": "bearer", "description": "The server's ATNL_API_TOKEN."}
    }
    for route in iter_route_contexts(app.routes):
        if any(d.dependency is require_token for d in getattr(route, "dependencies", ())):
            for method in route.methods or ():
                document["paths"][route.path_format][method.lower()]["security"] = [{BEARER: []}]


def openapi_document(app: FastAPI, model: LoadedModel | None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app`` with its settings and ``model`` (the active one, or None)."""
    settings: Settings = app.state.settings
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes, tags=app.openapi_tags
    )
    _problem_422(document)
    _forms(document)
    _security(document, app, settings)
    apply_bounds(document, settings, model)
    return document


def install_openapi(app: FastAPI) -> None:
    """Serve ``openapi_document`` at /openapi.json, built once per active model and set of uploaded data sets."""
    built: dict[tuple[str | None, tuple[str, ...]], dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        engine = getattr(app.state, "engine", None)
        model = engine.current if engine is not None and engine.ready else None
        key = (model.id if model is not None else None, tuple(uploaded_datasets(app.state.settings)))
        if key not in built:
            built.clear()
            built[key] = openapi_document(app, model)
        return built[key]

    app.openapi = openapi  # type: ignore[method-assign]
