"""Rubrics: how an edit is judged, as data (prompts, the fields each answer gives, how to combine them).

``reward_model.params.rubric`` is ``simple`` (one prompt, one 0-10 score: the default),
``viescore`` (GEdit-Bench's scheme), ``editscore`` (EditScore's: reasoning first, 0-25 answers
normalised to 0-10) or a mapping in the same shape as ``BUILTIN`` below:

    rubric:
      name: my_rubric
      prompts:
        - name: semantics
          with_source: true                 # shown two images: the source first, then the edited one
          user_prompt: 'Instruction: "{instruction}" ... Answer {"success": N, "faithful": N}.'
          fields: [success, faithful]
        - name: quality
          user_prompt: "... Answer {\"quality\": N}."
          fields: [quality]
      combine:                              # evaluated in order; may use fields and earlier names
        SC: min(success, faithful)
        overall: sqrt(SC * quality)
      score: overall                        # the item's score
      scale: [0, 25]                        # optional: the answers' range, when not the judge's score_range

Every prompt goes through the judge's normal batching (one ``batch_evaluate`` call per prompt).
A prompt with ``with_source`` is always given the item's source image, before the edited image
(write the prompt in that order: "first the original, then the edited"); the others see the
edited image alone. With ``sampling.num_samples`` above 1, the combination is computed per sample
(sample k of every prompt), and the item's score is the mean of the samples' scores, as EditScore's
self-ensembling does (a mean of minima, never the minimum of means); each sub-score is the mean over
the samples of that field or combined value.
``combine`` expressions allow numbers, names, + - * / **, and min, max, mean, sqrt: nothing else,
in at most 1,000 characters and 50 levels of nesting (checked with the configuration: exit 2). One
that fails for an item's values (a division by zero, sqrt of a negative, an overflow, a result that
is not finite) is that item's error, in the job as in the server; the other items go on.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Any

from .parsing import ScoreParseError, json_decided, parse_fields
from .prompts import DEFAULT_SYSTEM_PROMPT, DEFAULT_USER_PROMPT, fill_prompt


@dataclass(frozen=True)
class RubricPrompt:
    name: str
    user_prompt: str
    fields: tuple[str, ...]
    system_prompt: str | None = None
    with_source: bool = False


@dataclass(frozen=True)
class Rubric:
    name: str
    prompts: tuple[RubricPrompt, ...]
    combine: tuple[tuple[str, str], ...] = ()
    score: str = "score"
    scale: tuple[float, float] | None = None  # the range answers are read in; None: the judge's score_range

    @property
    def is_simple(self) -> bool:
        return self.name == "simple"


_VIESCORE_SYSTEM = (
    "You are an expert reviewer of digitally edited pictures. You judge images strictly and answer "
    "with JSON only."
)
_VIESCORE_SEMANTICS = (
    "You see two pictures: first the original, then a version edited with the instruction "
    '"{instruction}".\n'
    "Give two ratings from 0 to 10.\n"
    "editing_success: how completely the edited picture carries out the instruction "
    "(0 = not at all, 10 = exactly as asked).\n"
    "over_editing: how well everything the instruction did not mention was left alone "
    "(0 = the picture became something else, 10 = only the requested change was made).\n"
    'Answer as {"editing_success": N, "over_editing": N}.'
)
_VIESCORE_QUALITY = (
    "Look at this picture, which was produced by an image editor.\n"
    "Give two ratings from 0 to 10.\n"
    "naturalness: how much it looks like a real, coherent scene, with believable lighting, "
    "shadows and proportions (0 = clearly unnatural, 10 = fully natural).\n"
    "artifacts: how free it is of distortions, smears, broken textures, warped text or watermarks "
    "(0 = heavily damaged, 10 = clean).\n"
    'Answer as {"naturalness": N, "artifacts": N}.'
)

# EditScore (github.com/VectorSpaceLab/EditScore, editscore/__init__.py @ 6e0f1b9): two prompts, each
# answered with its reasoning first and two integers from 0 to 25 (its answer shape, {"reasoning": ...,
# "score": [a, b]}, which parse_fields reads in field order; named fields are read too); both show the source and
# the edit (batch_evaluate's shape, which RL uses; its single-item evaluate shows the quality prompt
# the edit alone). Each answer's lowest value, divided by 2.5, is on a 0-10 scale:
# SC = min(prompt following, consistency), PQ = min(naturalness, artifacts), overall = sqrt(SC * PQ).
_EDITSCORE_SYSTEM = (
    "You are a careful judge of image edits made by AI models. You explain what you see first, then "
    "give integer ratings, and you answer with one JSON object only."
)
_EDITSCORE_SEMANTICS = (
    "Two images follow: the original first, then the result of editing it with the instruction "
    '"{instruction}".\n'
    "Rate the edited image with two integers from 0 to 25.\n"
    "prompt_following: how fully the requested change was carried out (0 = not at all, 25 = exactly as "
    "asked).\n"
    "consistency: how well everything the instruction did not ask to change was kept (0 = a different "
    "picture, 25 = only the requested change).\n"
    'Write your reasoning first, then the two ratings in that order, as '
    '{"reasoning": "...", "score": [prompt_following, consistency]}.'
)
_EDITSCORE_QUALITY = (
    "Two images follow: an original and, second, an edited version of it. Judge only the second one's "
    "visual quality.\n"
    "Rate it with two integers from 0 to 25.\n"
    "naturalness: how real and coherent it looks: light, shadows, proportions, perspective (0 = clearly "
    "unnatural, 25 = fully natural).\n"
    "artifacts: how free it is of distortion, blur, smears, broken text or textures, watermarks (0 = heavily "
    "damaged, 25 = clean).\n"
    'Write your reasoning first, then the two ratings in that order, as '
    '{"reasoning": "...", "score": [naturalness, artifacts]}.'
)

BUILTIN: dict[str, dict[str, Any]] = {
    "simple": {
        "prompts": [{"name": "score", "system_prompt": DEFAULT_SYSTEM_PROMPT, "user_prompt": DEFAULT_USER_PROMPT,
                     "fields": ["score"]}],
        "score": "score",
    },
    # GEdit-Bench / VIEScore: SC from source + edit, PQ from the edit alone, overall = sqrt(SC * PQ).
    "viescore": {
        "prompts": [
            {"name": "semantics", "system_prompt": _VIESCORE_SYSTEM, "user_prompt": _VIESCORE_SEMANTICS,
             "fields": ["editing_success", "over_editing"], "with_source": True},
            {"name": "quality", "system_prompt": _VIESCORE_SYSTEM, "user_prompt": _VIESCORE_QUALITY,
             "fields": ["naturalness", "artifacts"]},
        ],
        "combine": {"SC": "min(editing_success, over_editing)", "PQ": "min(naturalness, artifacts)",
                    "overall": "sqrt(SC * PQ)"},
        "score": "overall",
    },
    "editscore": {
        "prompts": [
            {"name": "semantics", "system_prompt": _EDITSCORE_SYSTEM, "user_prompt": _EDITSCORE_SEMANTICS,
             "fields": ["prompt_following", "consistency"], "with_source": True},
            {"name": "quality", "system_prompt": _EDITSCORE_SYSTEM, "user_prompt": _EDITSCORE_QUALITY,
             "fields": ["naturalness", "artifacts"], "with_source": True},
        ],
        "combine": {"PF": "prompt_following / 2.5", "C": "consistency / 2.5", "SC": "min(PF, C)",
                    "PQ": "min(naturalness, artifacts) / 2.5", "overall": "sqrt(SC * PQ)"},
        "score": "overall",
        "scale": [0, 25],
    },
}

_FUNCTIONS = {"min": min, "max": max, "sqrt": math.sqrt, "mean": lambda *v: sum(v) / len(v)}
_BINARY = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
           ast.Div: lambda a, b: a / b, ast.Pow: lambda a, b: a ** b}


MAX_EXPRESSION_CHARS = 1000
MAX_EXPRESSION_DEPTH = 50  # nested operators and calls; viescore's deepest is 3


def _depth(tree: ast.AST) -> int:
    """How deeply ``tree`` nests (iteratively: a deep tree cannot exhaust the stack here)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _check_expression(text: str, known: set[str]) -> list[str]:
    shown = repr(text) if len(text) <= 80 else repr(text[:60]) + f"... ({len(text):,} characters)"
    if len(text) > MAX_EXPRESSION_CHARS:
        return [f"{shown} is over {MAX_EXPRESSION_CHARS:,} characters"]
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        return [f"{shown} is not an expression ({exc.msg})"]
    except (RecursionError, MemoryError):  # Python's parser gives up on very deep nesting
        return [f"{shown} nests too deeply (at most {MAX_EXPRESSION_DEPTH} levels)"]
    if _depth(tree) > MAX_EXPRESSION_DEPTH:
        return [f"{shown} nests too deeply (at most {MAX_EXPRESSION_DEPTH} levels)"]
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS or node.keywords:
                problems.append(f"{text!r}: only {sorted(_FUNCTIONS)} may be called")
        elif isinstance(node, ast.Name):
            if node.id not in known and node.id not in _FUNCTIONS:
                problems.append(f"{text!r}: unknown name {node.id!r} (known: {sorted(known)})")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY:
                problems.append(f"{text!r}: operator {type(node.op).__name__} not allowed")
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, ast.USub):
                problems.append(f"{text!r}: operator {type(node.op).__name__} not allowed")
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float)) or isinstance(node.value, bool):
                problems.append(f"{text!r}: only numbers may appear as constants")
        elif not isinstance(node, (ast.Expression, ast.Load, ast.operator, ast.unaryop)):
            problems.append(f"{text!r}: {type(node).__name__} not allowed")
    return problems


def evaluate(text: str, values: dict[str, float]) -> float:
    """Evaluate a checked ``combine`` expression over ``values``."""
    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            return values[node.id]
        if isinstance(node, ast.UnaryOp):
            return -walk(node.operand)
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.Call):
            return float(_FUNCTIONS[node.func.id](*(walk(a) for a in node.args)))
        raise ValueError(f"unsupported expression {ast.dump(node)}")

    return walk(ast.parse(text, mode="eval"))


def rubric_problems(spec: Any) -> list[str]:
    """What is wrong with a ``rubric`` value (a built-in name or a mapping), without building it."""
    if isinstance(spec, str):
        return [] if spec in BUILTIN else [f"rubric: {spec!r} is not one of {sorted(BUILTIN)} or a mapping"]
    if not isinstance(spec, dict):
        return [f"rubric: expected a name or a mapping, got {type(spec).__name__}"]
    problems = []
    unknown = set(spec) - {"name", "prompts", "combine", "score", "scale"}
    if unknown:
        problems.append(f"rubric: unknown keys {sorted(unknown)} (known: name, prompts, combine, score, scale)")
    scale = spec.get("scale")
    if scale is not None and not (isinstance(scale, list) and len(scale) == 2
                                  and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scale)
                                  and math.isfinite(scale[0]) and math.isfinite(scale[1]) and scale[0] < scale[1]):
        problems.append(f"rubric.scale: expected [low, high] with low < high, got {scale!r}")
    if spec.get("name") in BUILTIN:
        problems.append(f"rubric.name: {spec['name']!r} is a built-in rubric's name; choose another")
    prompts = spec.get("prompts")
    if not isinstance(prompts, list) or not prompts:
        return problems + ["rubric.prompts: a non-empty list is required"]
    known: set[str] = set()
    for i, prompt in enumerate(prompts):
        where = f"rubric.prompts[{i}]"
        if not isinstance(prompt, dict):
            problems.append(f"{where}: expected a mapping")
            continue
        extra = set(prompt) - {"name", "user_prompt", "system_prompt", "fields", "with_source"}
        if extra:
            problems.append(f"{where}: unknown keys {sorted(extra)}")
        for key in ("name", "user_prompt"):
            if not isinstance(prompt.get(key), str) or not prompt.get(key):
                problems.append(f"{where}.{key}: a non-empty string is required")
        fields = prompt.get("fields")
        if not isinstance(fields, list) or not fields or not all(isinstance(f, str) and f.isidentifier()
                                                                 for f in fields):
            problems.append(f"{where}.fields: a non-empty list of names is required")
            continue
        clash = known & set(fields)
        if clash:
            problems.append(f"{where}.fields: {sorted(clash)} already given by another prompt")
        known |= set(fields)
    combine = spec.get("combine", {})
    if not isinstance(combine, dict):
        problems.append("rubric.combine: expected a mapping of name: expression")
        combine = {}
    for name, expression in combine.items():
        if not isinstance(name, str) or not name.isidentifier():
            problems.append(f"rubric.combine: {name!r} is not a name")
        elif not isinstance(expression, str):
            problems.append(f"rubric.combine.{name}: expected an expression string")
        else:
            problems.extend(f"rubric.combine.{name}: {p}" for p in _check_expression(expression, known))
        known.add(str(name))
    score = spec.get("score", "score")
    if score not in known:
        problems.append(f"rubric.score: {score!r} is neither a field nor a combined name ({sorted(known)})")
    return problems


def get_rubric(spec: Any) -> Rubric:
    problems = rubric_problems(spec)
    if problems:
        raise ValueError("invalid rubric: " + "; ".join(problems))
    name = spec if isinstance(spec, str) else spec.get("name", "custom")
    data = BUILTIN[spec] if isinstance(spec, str) else spec
    prompts = tuple(RubricPrompt(p["name"], p["user_prompt"], tuple(p["fields"]), p.get("system_prompt"),
                                 bool(p.get("with_source", False))) for p in data["prompts"])
    scale = data.get("scale")
    return Rubric(name, prompts, tuple((data.get("combine") or {}).items()), data.get("score", "score"),
                  (float(scale[0]), float(scale[1])) if scale is not None else None)


class FieldsParser:
    """The ``parse=`` of one rubric prompt: an answer's lowest field (the call's score), and
    ``decided``, where early stopping may end the answer (its JSON object with every field closed)."""

    def __init__(self, fields: tuple[str, ...], low: float, high: float) -> None:
        self.fields, self.low, self.high = list(fields), low, high

    def __call__(self, text: str) -> float:
        return min(parse_fields(text, self.fields, self.low, self.high).values())

    def decided(self, text: str) -> bool:
        return json_decided(text, self.fields)


@dataclass
class RubricResult:
    score: float | None
    sub_scores: dict[str, float | None]
    raw_outputs: dict[str, str | None]
    error: str | None
    fallback: bool


def _combine(rubric: Rubric, values: dict[str, float | None]) -> list[str]:
    """Set ``values[name]`` for each ``combine`` entry; the item's error when one fails at run time
    (a division by zero, sqrt of a negative, an overflow, a result that is not a finite number)."""
    for name, expression in rubric.combine:
        try:
            value = evaluate(expression, values)
            if not math.isfinite(value):
                raise ValueError(f"the result is {value}, not a finite number")
        except (ArithmeticError, ValueError, TypeError) as exc:
            return [f"combine {name}: {expression!r} failed for this item's values "
                    f"({type(exc).__name__}: {exc})"]
        values[name] = value
    return []


def score_with_rubric(model, rubric: Rubric, edited_images: list, instructions: list[str],
                      original_images: list | None, item_ids: list[str] | None = None) -> list[RubricResult]:
    """Run every prompt of ``rubric`` over all images with ``model.batch_evaluate``, then combine.

    An item fails (score None, error set) when any of its answers cannot be parsed; the sub-scores
    that could be read are kept.
    """
    n = len(edited_images)
    # Per item, per prompt: one {field: value} per sample (one entry without sampling).
    answers: list[dict[str, list[dict[str, float]]]] = [{} for _ in range(n)]
    raws: list[dict[str, str | None]] = [{} for _ in range(n)]
    errors: list[list[str]] = [[] for _ in range(n)]
    fallback = [False] * n
    low, high = rubric.scale or model.score_range
    for prompt in rubric.prompts:
        if prompt.with_source and original_images is None:
            raise ValueError(f"rubric prompt {prompt.name!r} needs the source images")
        results = model.batch_evaluate(
            edited_images,
            system_prompts=[model.system_prompt if prompt.system_prompt is None else prompt.system_prompt] * n,
            user_prompts=[fill_prompt(prompt.user_prompt, instruction) for instruction in instructions],
            original_images=original_images if prompt.with_source else None,
            **({"item_ids": item_ids} if item_ids is not None else {}),
            parse=FieldsParser(prompt.fields, low, high),
        )
        for i, result in enumerate(results):
            raws[i][prompt.name] = result.raw_output
            fallback[i] = fallback[i] or result.fallback
            if result.error is None:
                try:
                    answers[i][prompt.name] = [parse_fields(text, list(prompt.fields), low, high)
                                               for text in result.answers()]
                except ScoreParseError as exc:
                    errors[i].append(f"{prompt.name}: {exc}")
            else:
                errors[i].append(f"{prompt.name}: {result.error}")
    out = []
    for i in range(n):
        per_sample: list[dict[str, float]] = []
        if not errors[i]:
            per_sample, problems = combine_per_sample(rubric, answers[i])
            errors[i].extend(problems)
        values: dict[str, float | None] = {}
        for prompt in rubric.prompts:  # the fields that could be read are kept, even on a failed item
            sampled = answers[i].get(prompt.name)
            for field in prompt.fields:
                values[field] = sum(a[field] for a in sampled) / len(sampled) if sampled else None
        for name, _ in rubric.combine:
            values[name] = sum(v[name] for v in per_sample) / len(per_sample) if per_sample else None
        score = values[rubric.score] if per_sample else None
        out.append(RubricResult(score, values, raws[i], "; ".join(errors[i]) or None, fallback[i]))
    return out


def combine_per_sample(rubric: Rubric, answers: dict[str, list[dict[str, float]]]
                       ) -> tuple[list[dict[str, float]], list[str]]:
    """The rubric's fields and combined values of each sample: sample k of every prompt combined
    (a prompt answered once, as by a judge that does not sample, counts for every sample); or no
    samples and the item's error when a ``combine`` fails for one of them (``_combine``)."""
    count = max(len(a) for a in answers.values())
    samples = []
    for k in range(count):
        values: dict[str, float | None] = {}
        for prompt in rubric.prompts:
            sampled = answers[prompt.name]
            values.update(sampled[k] if len(sampled) == count else sampled[0])
        problems = _combine(rubric, values)
        if problems:
            return [], problems
        samples.append(values)
    return samples, []
