"""POST /predict/{model} and /explain/{model}, JSON or image upload: parse, hand to the REST codec, return."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response

from service.api.deps import Entry, State
from service.api.responses import JSON_ERRORS, PNG_RESPONSE, UPLOAD_ERRORS, respond
from service.api.rest.codec import REST, ExplainOptions, Output, RestRequest
from service.api.rest.forms import form_composite, form_params, form_target
from service.api.routing import ServiceRoute
from service.api.schemas import ExplainRequest, ExplainResponse, PredictRequest, PredictResponse
from service.api.serve import served
from service.errors import PayloadTooLargeError
from service.faithfulness import Evaluation

router = APIRouter(route_class=ServiceRoute)
UploadField = Annotated[UploadFile, File(description="a PNG or JPEG image of any size")]


def preferred_output(accept: str | None, text: bool) -> Output:
    """The format the Accept header ranks highest among application/json, image/png and, for a text model,
    text/html (json on a tie; wildcards do not count, nor text/html for other models: a browser's Accept header
    names it first)."""
    quality = {"application/json": 0.0, "image/png": 0.0, **({"text/html": 0.0} if text else {})}
    for part in (accept or "").split(","):
        media, *options = (piece.strip() for piece in part.split(";"))
        if media in quality:
            q = next((o[2:] for o in options if o.startswith("q=")), "1")
            try:
                quality[media] = float(q)
            except ValueError:
                continue
    best = max(quality, key=lambda media: quality[media])
    return "json" if quality[best] <= quality["application/json"] else "png" if best == "image/png" else "html"


@router.post("/predict/{model}", response_model=PredictResponse, tags=["predict"], responses=JSON_ERRORS)
async def predict(request: Request, state: State, entry: Entry, body: PredictRequest) -> Response:
    """Class, label, probabilities and logits of each instance."""
    return respond(await served(request, state, entry, REST, RestRequest(body.inputs)))


@router.post("/explain/{model}", response_model=ExplainResponse, tags=["explain"],
             responses={**JSON_ERRORS, **PNG_RESPONSE})
async def explain(request: Request, state: State, entry: Entry, body: ExplainRequest) -> Response:
    """LRP relevance of each instance for its target class, as JSON, a PNG heatmap (Accept: image/png) or, for a
    text model, an HTML page of the coloured text (Accept: text/html)."""
    output: Output = (body.format if body.format != "json"
                      else preferred_output(request.headers.get("accept"), entry.text is not None))
    asked = body.evaluate
    options = ExplainOptions(
        body.target, body.composite, body.params.model_dump(exclude_none=True), output,
        body.overlay and output == "png",
        None if asked is None else Evaluation(asked.steps, asked.features_per_step, asked.random_orders))
    return respond(await served(request, state, entry, REST, RestRequest(body.inputs, explain=options)))


async def _upload(state: State, file: UploadFile) -> bytes:
    limit = state.settings.max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLargeError(f"the upload exceeds {limit} bytes (LRP_MAX_UPLOAD_BYTES)")
    return data


@router.post("/predict/{model}/image", response_model=PredictResponse, tags=["predict"], responses=UPLOAD_ERRORS)
async def predict_image(request: Request, state: State, entry: Entry, file: UploadField) -> Response:
    """Prediction for an uploaded image, converted to the model's input size and mode."""
    return respond(await served(request, state, entry, REST, RestRequest(upload=await _upload(state, file))))


@router.post("/explain/{model}/image", response_model=ExplainResponse, tags=["explain"],
             responses={**UPLOAD_ERRORS, **PNG_RESPONSE})
async def explain_image(
        request: Request, state: State, entry: Entry, file: UploadField,
        target: Annotated[str, Form(description="class index or label, or {\"classes\": [...]} (JSON) to explain "
                                    "several together; empty: the predicted class")] = "",
        composite: Annotated[str, Form(description="composite name or rule map (JSON); empty: the model's")] = "",
        params: Annotated[str, Form(description="LRP parameters as JSON, e.g. {\"epsilon\": 0.01}; empty: "
                                    "the model's")] = "",
        overlay: Annotated[bool, Form(description="blend the heatmap over the uploaded image")] = True,
        format: Annotated[Literal["png", "json"], Form(description="png (default) or json")] = "png",
) -> Response:
    """Heatmap over the region of the uploaded image the model sees (the whole image unless its pipeline crops; PNG
    by default; format=json for numbers)."""
    data = await _upload(state, file)
    options = ExplainOptions(form_target(target), form_composite(composite), form_params(params), format, overlay)
    return respond(await served(request, state, entry, REST, RestRequest(upload=data, explain=options)))
