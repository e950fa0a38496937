"""Any OpenAI-compatible chat-completions endpoint as the judge (GPT-4.1, vLLM, SGLang, LMDeploy).

    reward_model:
      type: openai
      params:
        base_url: https://api.openai.com/v1       # or a list of servers to spread the load over
        model: gpt-4.1-2025-04-14                 # a dated snapshot: it is part of the settings hash
        api_key_env: OPENAI_API_KEY               # the NAME of the variable holding the key
        max_concurrent: 8

Same contract as ``Qwen3VLRewardModel``: ``batch_score``/``batch_evaluate`` -> ``ScoreResult`` in
input order, ``stats``, ``config_problems``/``from_config``. Images go as base64 data URLs
(``image_format``: ``png``, the default, or ``jpeg``: Pillow's default JPEG settings, quality 75, as
GEdit-Bench's GPT client sends them), resized first when asked: to ``image_area`` pixels with the
aspect ratio kept, then with Qwen's ``smart_resize`` (sides multiples of ``resize_factor``, area within
``min_pixels`` .. ``max_pixels``) when either is set: 32 (the default) for Qwen3-VL, 28 for Qwen2/2.5-VL
(patch size x merge size), so the server sees the grid the transformers judge would. One user turn holds the images then the prompt's text
(``text_before_images: true``: the text first, as GEdit-Bench's GPT client does), after a system
turn unless the system prompt is empty. ``temperature: null`` sends no temperature (the server's
default: 1 at OpenAI, as in GEdit-Bench's requests). Requests run ``max_concurrent`` at a time; see ``remote`` for
retries. An item whose request fails for good is a failure with the reason, never a score.

``score_mode: logits`` prefills the assistant turn with ``{"score": `` (vLLM's
``continue_final_message``) and reads the digits' ``top_logprobs``; a server that cannot do this
(OpenAI's API has no prefill) is refused with a clear error before scoring. ``response_format``:
``json_schema`` sends a schema built from the answer form the prompt asks for (``{"a": N, ...}``;
``json_object`` where the prompt shows none), ``json_object`` any JSON object, ``none`` nothing.
``extra_body`` adds fields to every request (vLLM's ``top_k``, ``ignore_eos``, ...).
Successful responses are cached on disk (``cache_dir``, default ``OUT/cache/judge-responses``;
``false``: no cache) under the hash of model, messages (images
by their hash), and parameters: a rerun pays nothing twice.

The request of one item (images encoded, messages, body) is built in ``openai_request``; this module
checks the settings, sends the requests, caches and reads their answers.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ...images import ImageLoadError
from .openai_request import IMAGE_FORMATS, MAX_TOP_LOGPROBS, PATCH_FACTOR, ChatRequests, answer_schema, smart_resize
from .openai_request import without_images as _without_images
from .parsing import ScoreParseError, parse_score
from .prompts import DEFAULT_SYSTEM_PROMPT, DEFAULT_USER_PROMPT, fill_prompt
from .remote import ChatClient, JudgeAuthError, RequestFailed, ResponseCache
from .results import ScoreResult, ScoringStats, per_item

logger = logging.getLogger(__name__)

SCORE_MODES = ("generate", "logits")
RESPONSE_FORMATS = ("none", "json_object", "json_schema")
# Built in openai_request (the request of one item); ``from editjudge.models.reward.openai_judge import
# smart_resize`` and the others keep working.
REEXPORTED = (MAX_TOP_LOGPROBS, answer_schema, smart_resize)


@dataclass
class RemoteStats(ScoringStats):
    """``ScoringStats`` plus what a remote judge costs: tokens, requests, retries, cache hits."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    retries: int = 0
    cache_hits: int = 0

    def usage(self) -> str:
        return (f"{self.prompt_tokens} prompt + {self.completion_tokens} completion tokens, {self.requests} "
                f"requests ({self.retries} retries), {self.cache_hits} answers from the cache")


def signature_defaults(function) -> dict:
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty}


class OpenAIRewardModel(ChatRequests):
    """Scores edited images through an OpenAI-compatible ``/chat/completions`` endpoint (requests built by
    ``ChatRequests``, in openai_request)."""

    writes_files = True  # its request log and response cache go under the run's output folder (see reward.judge)
    runs_in_process = False  # it waits on a server (see reward.judge)
    reads_choices = True  # logits mode answers batch_evaluate(choices=...) from top_logprobs (reward.judge)
    # How requests travel, not what they ask: each proven not to change an answer (tests/test_judge_identity.py).
    speed_params = frozenset({"base_url", "api_key_env", "max_concurrent", "timeout", "max_retries", "retry_backoff",
                              "cache_dir", "output_dir", "device", "show_progress", "batch_size",
                              "use_batch_inference"})

    def __init__(
        self,
        model: str,
        base_url: str | Sequence[str] = "https://api.openai.com/v1",
        api_key_env: str | None = None,
        max_concurrent: int = 4,
        timeout: float = 120.0,
        max_retries: int = 5,
        retry_backoff: float = 1.0,
        cache_dir: str | None = None,
        output_dir: str | None = None,
        max_new_tokens: int | None = 64,
        temperature: float | None = 0.0,
        seed: int | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        resize_factor: int = PATCH_FACTOR,
        image_area: int | None = None,
        image_format: str = "png",
        text_before_images: bool = False,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        user_prompt: str = DEFAULT_USER_PROMPT,
        compare_with_original: bool = False,
        score_mode: str = "generate",
        score_range: Sequence[float] = (0, 10),
        logits_prefix: str = '{"score": ',
        response_format: str = "none",
        extra_body: dict | None = None,
        batch_size: int = 16,
        device: str | None = None,
        show_progress: bool = False,
        use_batch_inference: bool = True,
    ) -> None:
        self._given = {k: v for k, v in locals().items() if k != "self"}  # for identity()
        self._identity: dict | None = None
        problems = self.setting_problems(dict(locals(), base_url=base_url))
        if problems:
            raise ValueError(f"invalid {type(self).__name__} settings: " + "; ".join(problems))
        self.model = model
        self.base_urls = [base_url] if isinstance(base_url, str) else list(base_url)
        self.api_key_env = api_key_env
        self.max_concurrent = max_concurrent
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.seed = seed
        self.min_pixels, self.max_pixels = min_pixels, max_pixels
        self.resize_factor = resize_factor
        self.image_area = image_area
        self.image_format = image_format
        self.text_before_images = text_before_images
        self.system_prompt, self.user_prompt = system_prompt, user_prompt
        self.compare_with_original = compare_with_original
        self.score_mode = score_mode
        self.score_range = (float(score_range[0]), float(score_range[1]))
        self.logits_prefix = logits_prefix
        self.response_format = response_format
        self.extra_body = dict(extra_body or {})
        self.batch_size = batch_size
        self.use_batch_inference = use_batch_inference
        self.stats = RemoteStats()
        if cache_dir is False or cache_dir == "":
            cache_dir = None  # no cache
        elif cache_dir is None and output_dir is not None:
            cache_dir = os.path.join(output_dir, "cache", "judge-responses")
        self.cache = ResponseCache(cache_dir)
        api_key = os.environ.get(api_key_env) if api_key_env else None
        self.client = ChatClient(self.base_urls, api_key=api_key, timeout=timeout, max_retries=max_retries,
                                 backoff=retry_backoff, alive=self._alive)
        self._stats_lock = threading.Lock()  # request threads add their usage to ``stats``

    # ------------------------------------------------------------------ config

    @classmethod
    def setting_problems(cls, values: dict) -> list[str]:
        problems = []
        is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
        is_num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731

        def check(key, ok, expected):
            if key in values and not ok(values[key]):
                problems.append(f"{key} must be {expected}, got {values[key]!r}")

        check("model", lambda v: isinstance(v, str) and v.strip(), "the served model's name")
        check("base_url", lambda v: (isinstance(v, str) and v.startswith(("http://", "https://"))) or (
            isinstance(v, list) and v and all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in v)),
            "an http(s) URL or a non-empty list of them")
        check("api_key_env", lambda v: v is None or (isinstance(v, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v)),
              "the NAME of an environment variable (never the key itself)")
        check("max_concurrent", lambda v: is_int(v) and v >= 1, "a positive integer")
        check("max_retries", lambda v: is_int(v) and v >= 0, "a non-negative integer")
        check("timeout", lambda v: is_num(v) and v > 0, "a positive number of seconds")
        check("retry_backoff", lambda v: is_num(v) and v >= 0, "a non-negative number of seconds")
        check("max_new_tokens", lambda v: v is None or (is_int(v) and v >= 1),
              "a positive integer, or null to send no max_tokens (the server's default, as ImgEdit's requests)")
        check("temperature", lambda v: v is None or (is_num(v) and v >= 0),
              "a non-negative number, or null to send none (the server's default)")
        check("seed", lambda v: v is None or is_int(v), "null or an integer")
        check("batch_size", lambda v: is_int(v) and v >= 1, "a positive integer (items per pipeline chunk)")
        for key in ("min_pixels", "max_pixels"):
            check(key, lambda v: v is None or (is_int(v) and v >= PATCH_FACTOR ** 2),
                  f"null or an integer >= {PATCH_FACTOR ** 2}")
        check("resize_factor", lambda v: is_int(v) and v >= 1,
              "a positive integer (the model's patch size x merge size: 32 for Qwen3-VL, 28 for Qwen2.5-VL)")
        check("image_area", lambda v: v is None or (is_int(v) and v >= 64),
              "null or a number of pixels >= 64 (e.g. 262144: 512 x 512)")
        check("image_format", lambda v: v in IMAGE_FORMATS, f"one of {sorted(IMAGE_FORMATS)}")
        check("score_mode", lambda v: v in SCORE_MODES, f"one of {list(SCORE_MODES)}")
        check("response_format", lambda v: v in RESPONSE_FORMATS, f"one of {list(RESPONSE_FORMATS)}")
        check("extra_body", lambda v: v is None or (isinstance(v, dict) and not {"model", "messages"} & set(v)),
              "null or a mapping of extra request fields (not model or messages)")
        check("cache_dir", lambda v: v is None or v is False or isinstance(v, str), "null, false or a folder")
        for key in ("compare_with_original", "show_progress", "use_batch_inference", "text_before_images"):
            check(key, lambda v: isinstance(v, bool), "true or false")
        if "score_range" in values:
            try:
                low, high = (float(v) for v in values["score_range"])
                if not low < high:
                    raise ValueError
                if values.get("score_mode") == "logits" and not (0 <= low and high <= 10 and low.is_integer()
                                                                 and high.is_integer()):
                    problems.append("score_mode 'logits' reads one digit (or '10'): score_range must be integers "
                                    f"in 0-10, got {values['score_range']!r}")
            except (TypeError, ValueError):
                problems.append(f"score_range must be [low, high] with low < high, got {values['score_range']!r}")
        return problems

    @classmethod
    def config_problems(cls, params: dict) -> list[str]:
        """What is wrong with a ``reward_model.params`` block, without any network call."""
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        problems = []
        unknown = sorted(set(params) - accepted)
        if unknown:
            problems.append(f"unknown keys {unknown} (accepted: {', '.join(sorted(accepted))})")
        if "model" in accepted and "model" not in params:
            problems.append("model: required, the model name the server serves (pin a dated snapshot, e.g. "
                            "gpt-4.1-2025-04-14)")
        problems.extend(cls.setting_problems({k: v for k, v in params.items() if k in accepted}))
        env = params.get("api_key_env")
        if isinstance(env, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env) and not os.environ.get(env):
            problems.append(f"api_key_env: the environment variable {env} is not set (or empty)")
        return problems

    @classmethod
    def resolved_settings(cls, params: dict, device) -> dict:
        """Nothing that only the device decides: the server computes the answers."""
        return {}

    @classmethod
    def defaults(cls) -> dict:
        """The constructor's defaults: a setting left out is judged with its default, which is part of the identity."""
        return signature_defaults(OpenAIRewardModel.__init__)

    @classmethod
    def identity_of(cls, params: dict) -> dict:
        """Everything that can change an answer (``reward.identity``): every setting but the speed-only ones,
        defaults filled in (the model's name, the prompts, how images are resized and encoded, the sampling
        fields of the request), and the version of Pillow, which resizes and encodes the images sent. The
        server's model is known here only by its name: pin a dated snapshot."""
        from .identity import answer_settings, backend_identity, installed_versions

        return backend_identity("openai", answer_settings(params, cls.speed_params, cls.defaults()),
                                libraries=installed_versions(("pillow",)))

    def identity(self) -> dict:
        return self.identity_of(self._given)

    @classmethod
    def from_config(cls, params: dict):
        """Build from ``reward_model.params`` and check the server (key, model, logits support) once."""
        problems = cls.config_problems(params)
        if problems:
            raise ValueError("invalid reward_model.params: " + "; ".join(problems))
        kwargs = dict(params)
        if "score_range" in kwargs:
            kwargs["score_range"] = tuple(kwargs["score_range"])
        model = cls(**kwargs)
        try:
            model.preflight()
        except BaseException:
            model.close()
            raise
        return model

    def preflight(self) -> None:
        """One cheap request before any scoring: a wrong key or model, or no logits support, is one clear error."""
        where = ", ".join(self.base_urls)
        try:
            listing = self.client.get("/models")
        except JudgeAuthError as exc:
            raise JudgeAuthError(f"the judge server refused the API key from ${self.api_key_env or '(none)'} "
                                 f"({exc}); fix the key before scoring") from None
        except RequestFailed as exc:
            logger.info("the server at %s does not list its models (%s); going on", where, exc.reason)
            listing = None
        served = [m.get("id") for m in (listing or {}).get("data", []) if isinstance(m, dict)]
        if served and self.model not in served:
            raise ValueError(f"model {self.model!r} is not served at {where}; it serves {served}")
        if self.score_mode == "logits":
            body = self._logits_body([{"role": "user", "content": "Answer with a digit."}], self.logits_prefix)
            try:
                self.client.post("/chat/completions", body)
            except RequestFailed as exc:
                raise ValueError(f"score_mode 'logits' needs a server that continues a prefilled assistant turn "
                                 f"(continue_final_message) and returns top_logprobs; {where} refused: {exc.reason}. "
                                 "Use score_mode: generate with this server") from None

    def close(self) -> None:
        """Nothing to release for a remote endpoint (the vLLM backend stops its servers here)."""

    def _alive(self) -> None:
        """Raise JudgeServerError when a server this object started has died (none here)."""

    # ------------------------------------------------------------------ public API (as Qwen3VLRewardModel)

    def score(self, edited_image, system_prompt=None, user_prompt=None, original_image=None) -> float:
        return self.batch_score([edited_image], system_prompts=system_prompt, user_prompts=user_prompt,
                                original_images=None if original_image is None else [original_image])[0]

    def batch_score(self, edited_images, system_prompts=None, user_prompts=None, batch_size=None,
                    use_batch_inference=None, original_images=None, instructions=None) -> list[float]:
        return [r.score for r in self.batch_evaluate(edited_images, system_prompts, user_prompts, batch_size,
                                                     use_batch_inference, original_images, instructions)]

    def batch_evaluate(self, edited_images, system_prompts=None, user_prompts=None, batch_size=None,
                       use_batch_inference=None, original_images=None, instructions=None,
                       parse=None, item_ids=None, choices=None) -> list[ScoreResult]:
        """One ScoreResult per image, in input order; requests run ``max_concurrent`` at a time.

        ``batch_size``, ``use_batch_inference`` and ``item_ids`` are accepted for the contract and
        ignored: the server batches, and requests are logged by their own key. ``parse`` (generate
        mode) replaces the score parser, as for the local judge. ``choices`` (logits mode): the choices'
        probabilities after their prefix, from the first token's ``top_logprobs`` (absent ones: 0).
        """
        if parse is not None and self.score_mode != "generate":
            raise ValueError("parse= needs score_mode 'generate' (logits mode reads one digit)")
        if choices is not None and self.score_mode != "logits":
            raise ValueError("choices= needs score_mode 'logits' (the next token's log-probabilities are read)")
        edited_images = list(edited_images)
        n = len(edited_images)
        systems = per_item(system_prompts, self.system_prompt, n, "system_prompts")
        users = per_item(user_prompts, self.user_prompt, n, "user_prompts")
        originals = per_item(original_images, None, n, "original_images")
        instr = per_item(instructions, None, n, "instructions")
        users = [fill_prompt(u, i) for u, i in zip(users, instr)]
        if self.compare_with_original and original_images is None:
            raise ValueError("compare_with_original is set: original_images must be given")
        started = time.perf_counter()
        before = (self.client.requests, self.client.retries)
        jobs = [(edited_images[i], originals[i], systems[i], users[i], parse, choices) for i in range(n)]
        if self.max_concurrent == 1 or n <= 1:
            results = [self._evaluate_one(*job) for job in jobs]
        else:
            pool = ThreadPoolExecutor(min(self.max_concurrent, n), thread_name_prefix="judge-request")
            try:
                results = list(pool.map(lambda job: self._evaluate_one(*job), jobs))
            finally:  # on Ctrl-C or a fatal error, requests not yet sent are not sent
                pool.shutdown(wait=True, cancel_futures=True)
        elapsed = time.perf_counter() - started
        failures = sum(not r.ok for r in results)
        self.stats.items += n
        self.stats.failures += failures
        self.stats.batches += 1
        self.stats.seconds += elapsed
        self.stats.requests += self.client.requests - before[0]
        self.stats.retries += self.client.retries - before[1]
        self.stats.batch_timings.append((n, elapsed))
        if n:
            logger.info("scored %d images in %.2fs (%.2f images/s): %d failed; so far %s", n, elapsed,
                        n / elapsed if elapsed > 0 else 0.0, failures, self.stats.usage())
        return results

    # ------------------------------------------------------------------ one item

    def _cache_identity(self) -> dict:
        """What, besides the request body, decides a response: ``identity()``, computed once."""
        if self._identity is None:
            self._identity = self.identity()
        return self._identity

    def _request(self, body: dict, hashes: list[str]) -> dict:
        """The response to ``body``, from the cache or the server (then cached); usage counted either way."""
        keyed = dict(body, messages=_without_images(body["messages"], hashes), identity=self._cache_identity())
        key = ResponseCache.key(keyed)
        response = self.cache.get(key)
        if response is not None:
            with self._stats_lock:
                self.stats.cache_hits += 1
        else:
            response = self.client.post("/chat/completions", body)
            if not response.get("choices"):
                raise RequestFailed(f"the response has no choices: {str(response)[:200]}")
            self.cache.put(key, response)
            usage = response.get("usage") or {}
            with self._stats_lock:
                self.stats.prompt_tokens += int(usage.get("prompt_tokens") or 0)
                self.stats.completion_tokens += int(usage.get("completion_tokens") or 0)
            served = response.get("model")
            if served and served != self.model and not served.startswith(self.model + "-"):
                logger.warning("asked for model %r, the server answered as %r", self.model, served)
        return response

    def _evaluate_one(self, edited, original, system_prompt, user_prompt, parse, choices=None) -> ScoreResult:
        try:
            messages, hashes = self._messages(edited, original, system_prompt, user_prompt)
        except ImageLoadError as exc:
            return ScoreResult.failure(str(exc))
        try:
            if choices is not None:
                from .logits import choice_result_from_logprobs  # torch: only when asked

                return choice_result_from_logprobs(self._digit_logprobs(messages, hashes, choices.prefix), choices)
            if self.score_mode == "logits":
                return self._evaluate_logits(messages, hashes)
            response = self._request(self._generate_body(messages, user_prompt, parse), hashes)
        except RequestFailed as exc:
            return ScoreResult.failure(f"judge request failed: {exc.reason}")
        choice = response["choices"][0]
        text = (choice.get("message") or {}).get("content") or ""
        try:
            if parse is not None:
                return ScoreResult(score=float(parse(text)), raw_output=text)
            return ScoreResult(score=parse_score(text, *self.score_range), raw_output=text)
        except ScoreParseError as exc:
            reason = " (cut at max_new_tokens)" if choice.get("finish_reason") == "length" else ""
            return ScoreResult.failure(f"unparseable judge answer{reason}: {exc}", raw_output=text)

    def _digit_logprobs(self, messages, hashes, prefill: str) -> dict[str, float]:
        response = self._request(self._logits_body(messages, prefill), hashes)
        content = ((response["choices"][0].get("logprobs") or {}).get("content") or [])
        if not content:
            raise RequestFailed("the server returned no logprobs (score_mode 'logits' needs them)")
        return {entry["token"]: float(entry["logprob"]) for entry in content[0].get("top_logprobs") or []}

    def _evaluate_logits(self, messages, hashes) -> ScoreResult:
        """The expected score from the digits' probabilities after the prefill (and P("0" | "1") for 10)."""
        import torch

        from .logits import expected_scores

        low, high = int(self.score_range[0]), int(self.score_range[1])
        prefills = [self.logits_prefix] + ([self.logits_prefix + "1"] if high == 10 else [])
        # Log-probabilities of the ten digits, of "10" (a token of its own in some tokenizers: then its
        # probability counts for 10 too), and one more entry for the rest of the vocabulary, so that a
        # softmax over these twelve gives back the server's probabilities.
        rows = []
        for position, prefill in enumerate(prefills):
            top = self._digit_logprobs(messages, hashes, prefill)
            digits = [top.get(str(d), -math.inf) for d in range(10)]
            ten = top.get("10", -math.inf) if position == 0 else -math.inf
            rest = 1.0 - sum(math.exp(v) for v in digits + [ten])
            rows.append(digits + [ten, math.log(rest) if rest > 1e-12 else -math.inf])
        logits = torch.tensor([rows], dtype=torch.float64)
        return expected_scores(logits, list(range(10)), low, high, ten_id=10)[0]
