"""Request and response bodies (pydantic: validation and the OpenAPI schema come from the same classes).

Parsing is strict (no string → bool or float → int coercion) and unknown fields are refused, so that a
typo is a 422 naming the field rather than a silently ignored option.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_sent.runtime.serve.errors import ApiError

Inputs = str | list[str] | list[list[str]]
INPUTS_HELP = "a string, a list of strings, or a list of one-string lists ([['a'], ['b']], TEI's batch form)"


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class PredictRequest(_Strict):
    """TEI's `POST /predict` body."""

    inputs: Inputs = Field(description=f"The text(s) to classify: {INPUTS_HELP}.")
    truncate: bool = Field(
        True, description="Cut texts at the model's max length (listed in the x-truncated-inputs header); false: 422."
    )
    raw_scores: bool = Field(False, description="Logits instead of probabilities.")
    truncation_direction: Literal["right", "Right"] = Field("right", description="Only right truncation.")


class HfParameters(_Strict):
    top_k: int | None = Field(None, ge=1, description="Only the k best labels.")
    function_to_apply: Literal["softmax", "sigmoid", "none"] | None = Field(
        None, description="softmax (default): probabilities; sigmoid: per-label sigmoid of the logits; none: logits."
    )


class HfRequest(_Strict):
    """The Hugging Face Inference API's text-classification body (`POST /`)."""

    inputs: Inputs = Field(description=f"The text(s) to classify: {INPUTS_HELP}.")
    parameters: HfParameters | None = None
    options: dict[str, Any] | None = Field(None, description="Accepted and ignored (wait_for_model, use_cache).")


class Label(BaseModel):
    label: str
    score: float


class ErrorBody(BaseModel):
    error: str
    error_type: str


def flatten(inputs: Inputs) -> tuple[list[str], bool]:
    """The texts, and whether the request sent one string (answered unwrapped)."""
    if isinstance(inputs, str):
        return [inputs], True
    texts: list[str] = []
    for position, item in enumerate(inputs):
        if isinstance(item, str):
            texts.append(item)
        elif len(item) == 1:
            texts.append(item[0])
        else:
            raise ApiError(
                422,
                f"inputs[{position}] holds {len(item)} texts: each inner list holds one text "
                "(this model classifies single texts, not text pairs)",
                "validation",
            )
    return texts, False


def parse_body(model: type[_Strict], body: bytes) -> Any:
    """Validate a JSON body into `model`; every failure is an ApiError naming the first problem."""
    if not body.strip():
        raise ApiError(422, "the request body is empty: send a JSON object with 'inputs'", "validation")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error(exc) from None


def validation_error(exc: ValidationError) -> ApiError:
    first = exc.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        return ApiError(400, f"the body is not valid JSON ({first['ctx']['error']})", "invalid_json")
    where = ".".join(str(part) for part in first["loc"])
    if first["loc"] and first["loc"][0] == "inputs" and first["type"] != "missing":
        return ApiError(422, f"inputs must be {INPUTS_HELP}", "validation")
    if first["type"] == "extra_forbidden":
        return ApiError(422, f"unknown field {where!r}", "validation")
    if not where:
        return ApiError(422, f"the body must be a JSON object ({first['msg']})", "validation")
    return ApiError(422, f"{where}: {first['msg']}", "validation")
