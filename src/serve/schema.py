"""The reward server's wire format, version 1: JSON in, JSON out, base64 images, no pickle.

Request (``POST /v1/score``)::

    {"version": 1,                       # optional; only 1 is accepted
     "rubric": "simple",                 # optional; must name the rubric the server was started with
     "items": [{"id": "a",               # optional, echoed back
                "edited": "<base64 PNG, JPEG or WebP>",   # a data: URL prefix is accepted too
                "source": "<base64>",    # required when the rubric shows the judge the source image
                "instruction": "make the sky red",
                "group": "prompt-0"}]}   # optional (string or integer): GRPO groups

Answer::

    {"version": 1, "rubric": "simple",
     "results": [{"id": "a", "score": 7.0, "sub_scores": {}, "raw_output": "{\\"score\\": 7}",
                  "error": null, "group": "prompt-0", "reward": 0.71}],
     "groups": [{"group": "prompt-0", "count": 4, "scored": 4, "mean": 5.5, "std": 2.1}],
     "normalization": {"formula": "(score - mean) / (std + epsilon)", "std": "population", "epsilon": 0.0001}}

``reward`` is the group-normalised score, over the items of the same group in the same request that
were scored; it is null for an item without a group or without a score. Errors are
``{"version": 1, "error": {"code": ..., "field": ..., "message": ...}, "details": [...]}``.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
import warnings
from typing import Any

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from ..images import to_rgb

VERSION = 1
# Flow-GRPO's per-prompt advantage uses the same form and epsilon: (r - mean) / (std + 1e-4).
EPSILON = 1e-4
FORMATS = ("PNG", "JPEG", "WEBP")
_DATA_URL = re.compile(r"^data:image/[a-zA-Z0-9.+-]+;base64,")


class ApiError(Exception):
    """A request the server refuses: an HTTP status, a code, the field at fault and a message."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 details: list[dict] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.details = details or []
        self.headers = headers or {}

    def body(self) -> dict:
        out: dict[str, Any] = {"version": VERSION,
                               "error": {"code": self.code, "field": self.field, "message": self.message}}
        if self.details:
            out["details"] = self.details
        return out


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")

    edited: StrictStr
    instruction: StrictStr
    source: StrictStr | None = None
    id: StrictStr | StrictInt | None = None
    group: StrictStr | StrictInt | None = None


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[Item] = Field(min_length=1)
    version: StrictInt = VERSION
    rubric: StrictStr | None = None


def _field_name(loc: tuple) -> str:
    name = ""
    for part in loc:
        if isinstance(part, int):
            name += f"[{part}]"
        elif part not in ("str", "int", "function-after", "nullable"):  # pydantic's union branch labels
            name += f".{part}" if name else str(part)
    return name or "body"


def parse_request(body: bytes) -> ScoreRequest:
    """The request body as a ScoreRequest, or ApiError 400 (not JSON) / 422 (naming each bad field)."""
    try:
        request = ScoreRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise ApiError(400, "invalid_json", f"the body is not valid JSON: {errors[0]['msg']}") from None
        details, seen = [], set()
        for e in errors:
            field = _field_name(tuple(e["loc"]))
            message = "required" if e["type"] == "missing" else (
                "unknown field" if e["type"] == "extra_forbidden" else e["msg"])
            if (field, message) not in seen:  # a union reports each branch; one line is enough
                seen.add((field, message))
                details.append({"field": field, "message": message})
        first = details[0]
        more = f" (and {len(details) - 1} more problem(s))" if len(details) > 1 else ""
        raise ApiError(422, "invalid_field", f"{first['field']}: {first['message']}{more}", first["field"],
                       details) from None
    if request.version != VERSION:
        raise ApiError(422, "unsupported_version",
                       f"version: {request.version} is not supported; this server speaks version {VERSION}", "version")
    return request


def open_image(text: str, field: str, max_pixels: int) -> Image.Image:
    """A base64 PNG, JPEG or WebP opened lazily: its header read and checked, no pixel decoded yet."""
    text = _DATA_URL.sub("", text, count=1)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, "bad_base64", f"{field}: not valid base64 ({exc})", field) from None
    if not data:
        raise ApiError(400, "not_an_image", f"{field}: empty image", field)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies below
            opened = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ApiError(413, "image_too_large", f"{field}: {exc}; refused before decoding", field) from None
    except UnidentifiedImageError:
        raise ApiError(400, "not_an_image", f"{field}: not an image (PNG, JPEG or WebP expected)", field) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ApiError(400, "not_an_image", f"{field}: unreadable image header ({exc})", field) from None
    width, height = opened.size
    problem = None
    if opened.format not in FORMATS:
        problem = ApiError(400, "unsupported_format",
                           f"{field}: {opened.format} images are not accepted (PNG, JPEG or WebP)", field)
    elif width < 1 or height < 1:
        problem = ApiError(400, "not_an_image", f"{field}: header claims {width}x{height} pixels", field)
    elif width * height > max_pixels:
        problem = ApiError(413, "image_too_large", f"{field}: {width}x{height} = {width * height:,} pixels is over "
                                                   f"this server's limit of {max_pixels:,} (refused before decoding)",
                           field)
    if problem is not None:
        opened.close()
        raise problem
    return opened


def load_rgb(opened: Image.Image, field: str) -> Image.Image:
    """Decode an image from ``open_image`` as RGB (EXIF rotation applied, transparency on white)."""
    with opened:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                opened.load()
                return to_rgb(opened)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise ApiError(400, "not_an_image", f"{field}: truncated or corrupt image ({exc})", field) from None


def decode_image(text: str, field: str, max_pixels: int) -> Image.Image:
    """A base64 PNG, JPEG or WebP as an RGB image; the pixel count is checked from the header first."""
    return load_rgb(open_image(text, field, max_pixels), field)


def _clean(value: Any) -> Any:
    """NaN and infinities are not JSON: they go out as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def item_result(item: Item, judged: dict) -> dict:
    """One answer line from the judge's score fields (``editjudge.models.reward.judge.judge_items``)."""
    return {"id": item.id, "score": _clean(judged.get("score")), "sub_scores": _clean(judged.get("sub_scores") or {}),
            "raw_output": judged.get("raw_output"), "error": judged.get("error"), "group": item.group, "reward": None}


def normalize_groups(results: list[dict], epsilon: float = EPSILON) -> list[dict]:
    """Set each grouped result's ``reward`` to (score - mean) / (std + epsilon) within its group.

    Mean and population std are over the group's scored items; returns one summary per group, in
    order of first appearance.
    """
    groups: dict[Any, list[dict]] = {}
    for result in results:
        if result["group"] is not None:
            groups.setdefault((type(result["group"]).__name__, result["group"]), []).append(result)
    summaries = []
    for (_, name), members in groups.items():
        scores = [r["score"] for r in members if r["score"] is not None]
        mean = std = None
        if scores:
            mean = sum(scores) / len(scores)
            std = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
            for r in members:
                if r["score"] is not None:
                    r["reward"] = (r["score"] - mean) / (std + epsilon)
        summaries.append({"group": name, "count": len(members), "scored": len(scores), "mean": mean, "std": std})
    return summaries


def normalization_info(epsilon: float = EPSILON) -> dict:
    return {"formula": "(score - mean) / (std + epsilon)", "std": "population", "epsilon": epsilon}
