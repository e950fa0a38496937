"""The reward server's wire format: JSON in, JSON out, base64 images, no pickle. Versions 1 and 2.

Request (``POST /v1/score``)::

    {"version": 2,                       # optional; 1 when absent (the old meaning), 1 or 2
     "rubric": "simple",                 # optional; must name the rubric the server was started with
     "group_wait_s": 60,                 # version 2, optional: this request's group deadline (at most the server's)
     "items": [{"id": "a",               # optional, echoed back
                "edited": "<base64 PNG, JPEG or WebP>",   # a data: URL prefix is accepted too
                "source": "<base64>",    # required when the rubric shows the judge the source image
                "instruction": "make the sky red",
                "group": "step3/prompt-0",   # optional (string or integer): GRPO groups
                "group_size": 8}]}       # version 2: required with group: the group's FULL size over all requests

Answer, version 2::

    {"version": 2, "rubric": "simple",
     "results": [{"id": "a", "score": 7.0, "sub_scores": {}, "raw_output": "{\\"score\\": 7}",
                  "error": null, "group": "step3/prompt-0", "advantage": 0.71}],
     "groups": [{"group": "step3/prompt-0", "size": 8, "received": 8, "status": "complete", "reason": null,
                 "mean": 5.5, "std": 2.1}],
     "normalization": {"formula": "(score - mean) / (std + epsilon)", "std": "population", "epsilon": 0.0001}}

``score`` is the judge's raw score. ``advantage`` is set only once the group is complete: all
``group_size`` members scored, from this request and others (``editjudge.serve.groups``); the
answer waits for that, up to the group's deadline. A group that misses its deadline or has a member
without a score answers ``advantage: null`` for every member (``status`` incomplete or failed).

Version 1 (unchanged): no ``group_size``; the answer's ``reward`` is the score normalised over the
items of the same group *in the same request* that were scored (null without a group or a score);
its ``groups`` entries are ``{"group", "count", "scored", "mean", "std"}``. Errors (both versions)
are ``{"version": 2, "error": {"code": ..., "field": ..., "message": ...}, "details": [...]}``.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import re
import warnings
from typing import Any

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from ..images import to_rgb

VERSION = 2  # the newest; requests without a version are version 1
VERSIONS = (1, 2)
MAX_GROUP_SIZE = 4096
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
    group_size: StrictInt | None = Field(default=None, ge=1, le=MAX_GROUP_SIZE)


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[Item] = Field(min_length=1)
    version: StrictInt = 1
    rubric: StrictStr | None = None
    group_wait_s: float | None = Field(default=None, gt=0)


def _field_name(loc: tuple) -> str:
    name = ""
    for part in loc:
        if isinstance(part, int):
            name += f"[{part}]"
        elif part not in ("str", "int", "function-after", "nullable"):  # pydantic's union branch labels
            name += f".{part}" if name else str(part)
    return name or "body"


_WHITESPACE = re.compile(r"[ \t\n\r]*")
_TOP_LEVEL = {"items": "a list of items", "version": "an integer", "rubric": "a string or null",
              "group_wait_s": "a number of seconds"}
MAX_DETAILS = 10  # validation problems listed in an error answer; the message says how many more


def _invalid_json(reason: str) -> ApiError:
    return ApiError(400, "invalid_json", f"the body is not valid JSON: {reason}")


def load_body(body: bytes, max_items: int) -> dict:
    """The body's top-level JSON object, its ``items`` counted while they are parsed: the item past
    ``max_items`` is a 413 before it (or any later one) is parsed, and no item is validated yet.

    Memory and time are bounded by ``max_items`` items, not by how many the body holds; a top-level
    value that cannot be right (``items`` not a list, an unknown key, a list or object where a number
    or string belongs) is refused without parsing it.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid_json(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    decoder = json.JSONDecoder()

    def skip(i: int) -> int:
        return _WHITESPACE.match(text, i).end()

    def value(i: int):
        try:
            return decoder.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise _invalid_json(str(exc)) from None
        except RecursionError:
            raise _invalid_json(f"nested too deeply (char {i})") from None

    def expect(i: int, chars: str, what: str) -> int:
        if i >= len(text) or text[i] not in chars:
            raise _invalid_json(f"expecting {what} (char {i})")
        return i + 1

    i = expect(skip(0), "{", "a JSON object")
    data: dict = {}
    i = skip(i)
    if text[i:i + 1] == "}":
        i += 1
    else:
        while True:
            if text[i:i + 1] != '"':
                raise _invalid_json(f"expecting a property name in double quotes (char {i})")
            key, i = value(i)
            i = skip(expect(skip(i), ":", "':'"))
            if key not in _TOP_LEVEL:
                raise ApiError(422, "invalid_field", f"{key}: unknown field", key)
            if key == "items":
                if text[i:i + 1] != "[":
                    raise ApiError(422, "invalid_field", "items: Input should be a valid list", "items")
                items, i = [], skip(i + 1)
                if text[i:i + 1] == "]":
                    i += 1
                else:
                    while True:
                        if len(items) == max_items:
                            raise ApiError(413, "too_many_items", f"items: more than {max_items} items, over this "
                                                                  f"server's limit of {max_items} per request (split "
                                                                  "the request)", "items")
                        item, i = value(i)
                        items.append(item)
                        i = skip(i)
                        if text[i:i + 1] == "]":
                            i += 1
                            break
                        i = skip(expect(i, ",", "',' or ']'"))
                data[key] = items
            elif text[i:i + 1] in ("[", "{"):
                raise ApiError(422, "invalid_field", f"{key}: expected {_TOP_LEVEL[key]}", key)
            else:
                data[key], i = value(i)
            i = skip(i)
            if text[i:i + 1] == "}":
                i += 1
                break
            i = skip(expect(i, ",", "',' or '}'"))
    if skip(i) != len(text):
        raise _invalid_json(f"extra data after the object (char {skip(i)})")
    return data


def parse_request(body: bytes, max_items: int) -> ScoreRequest:
    """The request body as a ScoreRequest, or ApiError 400 (not JSON), 413 (over ``max_items`` items,
    counted before any is validated) or 422 (naming the first ``MAX_DETAILS`` bad fields, and how many
    more there are). CPU work: call it off the event loop."""
    data = load_body(body, max_items)
    try:
        request = ScoreRequest.model_validate(data)
    except ValidationError as exc:
        details, seen = [], set()
        for e in exc.errors(include_url=False, include_context=False, include_input=False):
            field = _field_name(tuple(e["loc"]))
            message = "required" if e["type"] == "missing" else (
                "unknown field" if e["type"] == "extra_forbidden" else e["msg"])
            if (field, message) not in seen:  # a union reports each branch; one line is enough
                seen.add((field, message))
                details.append({"field": field, "message": message})
        first, total = details[0], len(details)
        more = f" (and {total - 1} more problem(s))" if total > 1 else ""
        shown = details[:MAX_DETAILS]
        if total > MAX_DETAILS:
            shown.append({"field": None, "message": f"... and {total - MAX_DETAILS} more problem(s) not listed"})
        raise ApiError(422, "invalid_field", f"{first['field']}: {first['message']}{more}", first["field"],
                       shown) from None
    if request.version not in VERSIONS:
        raise ApiError(422, "unsupported_version", f"version: {request.version} is not supported; this server "
                                                   f"speaks versions {', '.join(map(str, VERSIONS))}", "version")
    check_groups(request)
    return request


def check_groups(request: ScoreRequest) -> None:
    """Version 1 has no group sizes; version 2 needs one with every group, the same for all its items."""
    if request.version == 1:
        for i, item in enumerate(request.items):
            if item.group_size is not None:
                raise ApiError(422, "invalid_field", f"items[{i}].group_size: needs version 2 (version 1 normalises "
                                                     "within the request)", f"items[{i}].group_size")
        if request.group_wait_s is not None:
            raise ApiError(422, "invalid_field", "group_wait_s: needs version 2", "group_wait_s")
        return
    sizes: dict[tuple[str, Any], int] = {}
    counts: dict[tuple[str, Any], int] = {}
    for i, item in enumerate(request.items):
        field = f"items[{i}].group_size"
        if item.group is None:
            if item.group_size is not None:
                raise ApiError(422, "invalid_field", f"{field}: given without a group", field)
            continue
        if item.group_size is None:
            raise ApiError(422, "invalid_field", f"{field}: required with group in version 2: the group's full size "
                                                 "over all requests (e.g. K samples per prompt)", field)
        key = (type(item.group).__name__, item.group)
        if sizes.setdefault(key, item.group_size) != item.group_size:
            raise ApiError(422, "invalid_field", f"{field}: {item.group_size}, but an earlier item of group "
                                                 f"{item.group!r} says {sizes[key]}", field)
        counts[key] = counts.get(key, 0) + 1
        if counts[key] > item.group_size:
            raise ApiError(422, "invalid_field", f"{field}: group {item.group!r} has more than {item.group_size} "
                                                 "items in this request", field)


def group_members(request: ScoreRequest) -> dict[Any, tuple[int, int]]:
    """Version 2: {group name: (its full size, its items in this request)}, in order of first appearance."""
    out: dict[Any, tuple[int, int]] = {}
    for item in request.items:
        if item.group is not None:
            size, count = out.get(item.group, (item.group_size, 0))
            out[item.group] = (size, count + 1)
    return out


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


def item_result(item: Item, judged: dict, version: int = 1) -> dict:
    """One answer line from the judge's score fields (``editjudge.models.reward.judge.judge_items``):
    version 1's carries ``reward``, version 2's ``advantage`` (both null until set)."""
    out = {"id": item.id, "score": _clean(judged.get("score")), "sub_scores": _clean(judged.get("sub_scores") or {}),
           "raw_output": judged.get("raw_output"), "error": judged.get("error"), "group": item.group}
    out["reward" if version == 1 else "advantage"] = None
    return out


def normalize_groups(results: list[dict], epsilon: float = EPSILON) -> list[dict]:
    """Version 1: set each grouped result's ``reward`` to (score - mean) / (std + epsilon) within its group.

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
