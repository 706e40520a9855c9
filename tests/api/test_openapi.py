"""The OpenAPI document offers the model names and examples that work as-is in Swagger UI's "Try it out"."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT

MODEL_NAMES = ["breast-cancer", "digits", "digits-vit", "residual", "sentiment", "walkthrough"]


@pytest.fixture(scope="module")
def schema(client):
    return client.get("/openapi.json").json()


def test_every_model_path_parameter_is_an_enum_of_the_loaded_models(schema):
    found = 0
    for item in schema["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "model":
                    assert parameter["schema"]["enum"] == MODEL_NAMES
                    found += 1
    # /models/{model}, /predict and /explain with their /image variants, and the three /v2 ones with their versions
    assert found == 11


@pytest.mark.parametrize("path", ["/predict/{model}", "/explain/{model}"])
@pytest.mark.parametrize("model", MODEL_NAMES)
def test_each_model_s_request_example_works_as_is(client, schema, path, model):
    examples = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert sorted(examples) == MODEL_NAMES
    response = client.post(path.replace("{model}", model), json=examples[model]["value"])
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("name,path", [("PredictRequest", "/predict/walkthrough"),
                                       ("ExplainRequest", "/explain/walkthrough")])
def test_schema_level_request_examples_work_as_is(client, schema, name, path):
    (example,) = schema["components"]["schemas"][name]["examples"]
    assert client.post(path, json=example).status_code == 200


@pytest.mark.parametrize("name", ["PredictResponse", "ExplainResponse", "ModelSummary", "ModelDetail",
                                  "ErrorResponse", "Health", "PredictRequest", "ExplainRequest", "LRPParamsBody"])
def test_request_and_response_schemas_carry_examples(schema, name):
    assert schema["components"]["schemas"][name]["examples"]


def test_response_examples_match_what_the_service_answers(client, schema):
    (predicted,) = schema["components"]["schemas"]["PredictResponse"]["examples"]
    (explained,) = schema["components"]["schemas"]["ExplainResponse"]["examples"]
    request = schema["components"]["schemas"]["ExplainRequest"]["examples"][0]
    live = client.post("/explain/walkthrough", json=request).json()
    assert live["explanations"][0]["relevance"] == pytest.approx(explained["explanations"][0]["relevance"],
                                                                 abs=1e-4)
    assert live["explanations"][0]["conservation_delta"] == pytest.approx(
        explained["explanations"][0]["conservation_delta"], abs=1e-4)
    live_prediction = client.post("/predict/walkthrough", json={"inputs": [request["inputs"][0]]}).json()
    assert live_prediction["predictions"][0]["logits"] == pytest.approx(predicted["predictions"][0]["logits"],
                                                                        abs=1e-4)


def test_model_detail_example_matches_the_service(client, schema):
    (example,) = schema["components"]["schemas"]["ModelDetail"]["examples"]
    live = client.get("/models/walkthrough").json()
    assert [(layer["name"], layer["op"], layer["rule"]) for layer in live["layers"]] == [
        (layer["name"], layer["op"], layer["rule"]) for layer in example["layers"]]


def test_swagger_ui_is_served_without_any_outside_host(client):
    page = client.get("/docs")
    assert page.status_code == 200 and "/openapi.json" in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sorted(assets) == ["/docs/assets/favicon.png", "/docs/assets/swagger-ui-bundle.js",
                              "/docs/assets/swagger-ui.css"]
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200 and len(response.content) > 1000
    assert "SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").text


def test_redoc_is_served_without_any_outside_host(client):
    page = client.get("/redoc")
    assert page.status_code == 200 and "/openapi.json" in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sorted(assets) == ["/docs/assets/favicon.png", "/docs/assets/redoc.standalone.js"]
    assert "Redoc" in client.get("/docs/assets/redoc.standalone.js").text
    favicon = client.get("/favicon.ico")
    assert favicon.status_code == 200 and favicon.content.startswith(b"\x89PNG")


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_docs_pages_may_load_nothing_from_another_host(client, path):
    policy = dict(part.strip().split(" ", 1) for part in client.get(path).headers["content-security-policy"].split(";"))
    for directive in ("default-src", "script-src", "style-src", "img-src", "font-src", "connect-src", "worker-src"):
        sources = policy[directive].split()
        assert "'self'" in sources and all(s in ("'self'", "'unsafe-inline'", "data:", "blob:") for s in sources)


def test_the_upload_routes_offer_an_image_model_and_empty_optional_fields_that_work_as_sent(client, schema):
    for path in ("/predict/{model}/image", "/explain/{model}/image"):
        (parameter,) = schema["paths"][path]["post"]["parameters"]
        assert client.get(f"/models/{parameter['example']}").json()["input"]["kind"] == "image"
    body = schema["paths"]["/explain/{model}/image"]["post"]["requestBody"]["content"]["multipart/form-data"]
    fields = schema["components"]["schemas"][body["schema"]["$ref"].rsplit("/", 1)[1]]["properties"]
    defaults = {name: field["default"] for name, field in fields.items() if name != "file"}
    assert defaults == {"target": "", "composite": "", "params": "", "overlay": True, "format": "png"}
    (parameter,) = schema["paths"]["/explain/{model}/image"]["post"]["parameters"]
    sent = {name: str(value).lower() if isinstance(value, bool) else value for name, value in defaults.items()}
    with open(ROOT / "docs" / "digit.png", "rb") as image:
        response = client.post(f"/explain/{parameter['example']}/image", data=sent,
                               files={"file": ("digit.png", image.read(), "image/png")})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
