"""The OpenAPI document tells the truth (docs/API.md): it validates against OpenAPI 3.1, every error
is the one problem+json schema, bounds are this deployment's, 405s carry Allow, HEAD and OPTIONS
work, and docs/API.md agrees with it (endpoints, statuses, fields), with the settings, the error
kinds and the metric names. schemathesis against a real server: test_openapi_schemathesis.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate
from pydantic import SecretStr

from service import prometheus
from service.bounds import STEPS
from service.errors import PROBLEM_JSON, ServiceError
from service.main import create_app
from service.settings import Settings

pytestmark = pytest.mark.anyio
API_MD = Path(__file__).resolve().parents[2] / "docs" / "API.md"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def section(number: str) -> str:
    """The text of docs/API.md's '## §N' (or '### §N.M') section, up to the next heading of its level or above."""
    text = API_MD.read_text()
    level = "##" if "." not in number else "###"
    start = re.search(rf"^{level} §{re.escape(number)} .*$", text, re.M)
    assert start, f"docs/API.md has no section §{number}"
    end = re.compile(rf"^#{{2,{len(level)}}} ", re.M).search(text, start.end())
    return text[start.end() : end.start() if end else len(text)]


def table_rows(text: str) -> list[list[str]]:
    """Cells of the first Markdown table in ``text`` (header and rule left out), backticks stripped."""
    rows, seen = [], False
    for line in text.splitlines():
        if line.startswith("|"):
            seen = True
            rows.append([c.strip().strip("`") for c in line.strip().strip("|").split("|")])
        elif seen:
            break
    return rows[2:]


def operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m.upper(), p): op for p, item in spec["paths"].items() for m, op in item.items() if m in METHODS}


def inputs(spec: dict[str, Any], op: dict[str, Any]) -> set[str]:
    """Names of an operation's parameters and request-body fields."""
    names = {p["name"] for p in op.get("parameters", [])}
    for media in op.get("requestBody", {}).get("content", {}).values():
        schema = media["schema"]
        if "$ref" in schema:
            schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        names |= set(schema.get("properties", {}))
    return names


@pytest.fixture
async def spec(client) -> dict[str, Any]:
    return (await client.get("/openapi.json")).json()


def body_schema(spec: dict[str, Any], path: str, media: str = "multipart/form-data") -> dict[str, Any]:
    schema = spec["paths"][path]["post"]["requestBody"]["content"][media]["schema"]
    return spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]] if "$ref" in schema else schema


# --- the document ------------------------------------------------------------------------------------


async def test_the_document_validates_against_openapi_3_1(spec, settings) -> None:
    assert spec["openapi"].startswith("3.1")
    validate(spec)
    validate(create_app(settings.model_copy(update={"api_token": SecretStr("t")})).openapi())
    validate(create_app(settings).openapi())  # no lifespan: no model, bounds that need one left open


async def test_every_error_is_the_one_problem_schema(spec) -> None:
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert {"type", "title", "status", "detail", "instance"} <= set(spec["components"]["schemas"]["Problem"]["required"])
    for (method, path), op in operations(spec).items():
        for status, answer in op["responses"].items():
            if int(status) >= 400 and (method, path, status) != ("GET", "/readyz", "503"):
                assert answer["content"] == {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}, (path, status)


async def test_bounds_are_this_deployments(spec, settings) -> None:
    latents = body_schema(spec, "/v1/decode", "application/json")["properties"]["latents"]
    assert latents["maxItems"] == settings.max_latents
    assert latents["items"]["minItems"] == latents["items"]["maxItems"] == 8  # the tiny model's latent_dim
    assert latents["items"]["items"]["maximum"] == settings.max_latent_abs
    form = body_schema(spec, "/v1/hallucinate")
    assert form["properties"]["labels"]["items"]["enum"] == [str(k) for k in range(10)]
    assert form["properties"]["per_class"]["maximum"] == settings.max_hallucinate_n // 10
    assert form["properties"]["files"]["maxItems"] == settings.max_files
    assert [b["required"] for b in form["oneOf"]] == [["per_class"], ["n"]]
    steps = body_schema(spec, "/v1/interpolate")["properties"]["steps"]
    assert (steps["type"], steps["minimum"], steps["maximum"], steps["default"]) == (
        "integer", STEPS.minimum, settings.max_steps, settings.default_steps
    )  # fmt: skip
    train = body_schema(spec, "/v1/train", "application/json")["properties"]
    assert (train["epochs"]["anyOf"][0]["minimum"], train["epochs"]["anyOf"][0]["maximum"]) == (1, settings.max_train_epochs)
    assert train["dataset"]["anyOf"][0]["enum"] == ["mnist-5k", "pose-digits", "pose-photos", "digits-8x8"]
    small = create_app(settings.model_copy(update={"max_steps": 12, "max_files": 3})).openapi()
    assert body_schema(small, "/v1/interpolate")["properties"]["steps"]["maximum"] == 12
    assert "maxItems" not in body_schema(small, "/v1/decode", "application/json")["properties"]["latents"]["items"]


async def test_the_token_guarded_operations_declare_the_bearer_scheme(settings) -> None:
    spec = create_app(settings.model_copy(update={"api_token": SecretStr("t")})).openapi()
    guarded = {key for key, op in operations(spec).items() if op.get("security")}
    assert guarded == {
        ("POST", "/v1/train"),
        ("POST", "/v1/models/{model_id}/activate"),
        ("DELETE", "/v1/jobs/{job_id}"),
        ("POST", "/v1/datasets"),
        ("DELETE", "/v1/datasets/{dataset_id}"),
    }
    assert "securitySchemes" not in create_app(settings).openapi()["components"]


# --- the schema is the validation --------------------------------------------------------------------


async def test_integers_are_json_schema_integers(client, redis_conn) -> None:
    assert (await client.post("/v1/train", json={"epochs": 2.0})).status_code == 202
    for bad in ({"epochs": "2"}, {"epochs": True}, {"lr": "0.1"}, {"augment": 1}):
        assert (await client.post("/v1/train", json=bad)).status_code == 422, bad
    assert (await client.post("/v1/train", json={"family": "ae", "latent_dim": 2})).status_code == 202
    assert (await client.post("/v1/train", json={"family": "atnl", "latent_dim": 2})).status_code == 422


async def test_train_reads_json_only(client, redis_conn) -> None:
    assert (await client.post("/v1/train", content=b"\xff\xfe", headers={"content-type": "application/json"})).status_code == 422
    assert (await client.post("/v1/train", data={"epochs": "1"})).status_code == 415
    assert redis_conn.keys("rq:job:*") == []


async def test_directory_data_sets_follow_the_documented_pattern(client_factory, settings, redis_conn, tmp_path) -> None:
    roots = settings.model_copy(update={"data_roots": [tmp_path]})
    async for client in client_factory(roots):
        spec = (await client.get("/openapi.json")).json()
        pattern = body_schema(spec, "/v1/train", "application/json")["properties"]["dataset"]["anyOf"][1]["pattern"]
        for good in ("folder:digits", "folder:a/b.c", f"mnist-idx:{tmp_path}/x"):
            assert re.match(pattern, good)
            assert (await client.post("/v1/train", json={"dataset": good, "epochs": 1})).status_code == 202, good
        for bad in ("folder:../x", "folder:a/../../x", "folder:/etc", "folder:.", "mnist-idx:"):
            assert not re.match(pattern, bad)
            assert (await client.post("/v1/train", json={"dataset": bad, "epochs": 1})).status_code == 422, bad


# --- methods -----------------------------------------------------------------------------------------


async def test_405_says_allow_head_and_options_answer(client) -> None:
    r = await client.request("TRACE", "/v1/jobs/abc")
    assert r.status_code == 405 and r.headers["content-type"] == PROBLEM_JSON
    assert r.headers["allow"] == "DELETE, GET, HEAD, OPTIONS"
    assert (await client.put("/v1/encode")).headers["allow"] == "OPTIONS, POST"
    head, get = await client.head("/v1/models"), await client.get("/v1/models")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == get.headers["content-length"]
    assert (await client.head("/v1/encode")).headers["allow"] == "OPTIONS, POST"
    options = await client.options("/readyz")
    assert options.status_code == 204 and options.headers["allow"] == "GET, HEAD, OPTIONS"
    assert (await client.options("/nowhere")).status_code == 404


# --- docs/API.md agrees ------------------------------------------------------------------------------


async def test_api_md_lists_every_operation_and_status(spec) -> None:
    documented = {(m, p): set(answers.split(", ")) for m, p, answers, _ in table_rows(section("1"))}
    actual = {key: set(op["responses"]) for key, op in operations(spec).items()}
    assert documented == actual


async def test_api_md_lists_every_request_field(spec) -> None:
    text = section("2")
    for (method, path), op in operations(spec).items():
        names = inputs(spec, op)
        part = re.search(rf"^### {method} {re.escape(path)}\n(.*?)(?=^### |\Z)", text, re.M | re.S)
        if not names:
            continue
        assert part, f"docs/API.md §2 has no '### {method} {path}'"
        assert {row[0] for row in table_rows(part.group(1))} == names, (method, path)


def test_api_md_lists_every_error_kind() -> None:
    def kinds(cls: type[ServiceError]) -> set[type[ServiceError]]:
        return {cls} | {k for sub in cls.__subclasses__() for k in kinds(sub)}

    documented = {(int(status), title) for status, title, _ in table_rows(section("3"))}
    missing = {(k.status, k.title) for k in kinds(ServiceError) if k is not ServiceError} - documented
    assert not missing, f"errors not in docs/API.md §3: {missing}"


def test_api_md_lists_every_setting_with_its_default() -> None:
    rows = {name: default for name, default, _ in table_rows(section("4"))}
    assert set(rows) == {f"ATNL_{name.upper()}" for name in Settings.model_fields}
    for name, field in Settings.model_fields.items():
        if isinstance(field.default, bool):
            assert rows[f"ATNL_{name.upper()}"] == str(field.default).lower(), name
        elif isinstance(field.default, int | float):
            assert float(rows[f"ATNL_{name.upper()}"]) == field.default, name


def test_api_md_lists_every_prometheus_metric() -> None:
    kinds = [m for m in vars(prometheus).values() if hasattr(m, "_type") and hasattr(m, "_name")]
    registered = {m._name + ("_total" if m._type == "counter" else "") for m in kinds}
    assert {row[0] for row in table_rows(section("8.3"))} == registered


def test_api_md_names_every_checkpoint_metric(tiny_checkpoint) -> None:
    from models import read_meta

    assert set(read_meta(tiny_checkpoint)["metrics"]) <= {row[0] for row in table_rows(section("8.1"))}
