"""``editjudge serve``: flags, configuration, then uvicorn (see ``editjudge.serve`` for examples)."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import sys

from ..config import ConfigError, load_reward_model_config
from ..redaction import install_log_redaction, register_secret
from .settings import ServeSettings

logger = logging.getLogger(__name__)

AUTO_BATCH = 32  # items per judge call when reward_model.params.batch_size is auto (the judge splits further)


def build_parser() -> argparse.ArgumentParser:
    defaults = ServeSettings()
    parser = argparse.ArgumentParser(prog="editjudge serve", description="Serve the config's judge over HTTP for RL "
                                     "training: POST /v1/score, GET /health, GET /metrics.")
    parser.add_argument("--config", required=True,
                        help="YAML file with a reward_model section (the job's config works)")
    parser.add_argument("--host", default=defaults.host,
                        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=defaults.port, help="default 8000")
    parser.add_argument("--batch-size", type=int,
                        help="items per judge batch, merged across requests; 1 turns dynamic batching off "
                             f"(default: reward_model.params.batch_size, {AUTO_BATCH} when that is auto)")
    parser.add_argument("--max-wait-ms", type=float, default=defaults.max_wait_ms,
                        help="how long the oldest waiting item waits for its batch to fill (default %(default)s)")
    parser.add_argument("--max-queue", type=int, default=defaults.max_queue,
                        help="items waiting at most; a request that does not fit gets 429 (default %(default)s)")
    parser.add_argument("--max-items", type=int, default=defaults.max_items,
                        help="items per request at most (default %(default)s)")
    parser.add_argument("--max-body-mb", type=float, default=defaults.max_body_bytes / 2**20,
                        help="request body limit in MiB, checked before reading it (default %(default)s)")
    parser.add_argument("--max-image-pixels", type=int, default=defaults.max_image_pixels,
                        help="per-image pixel limit, checked from the header before decoding (default %(default)s)")
    parser.add_argument("--max-queue-pixels", type=int, default=defaults.max_queue_pixels,
                        help="decoded pixels the waiting items may hold (their memory: 3 bytes each); a request "
                             "that does not fit gets 429, one larger than this 413 (default %(default)s)")
    parser.add_argument("--max-instruction-chars", type=int, default=defaults.max_instruction_chars,
                        help="a longer instruction is cut to this many characters, as the job cuts it "
                             "(benchmark.max_instruction_chars); the item's result then carries "
                             "instruction_truncated_from (default %(default)s)")
    parser.add_argument("--header-timeout", type=float, default=defaults.header_timeout,
                        help="seconds a client has from opening a connection (or starting a request on a kept-alive "
                             "one) to the end of its headers; then the connection is closed. Also closes connections "
                             "that send nothing (default %(default)s)")
    parser.add_argument("--body-timeout", type=float, default=defaults.body_timeout,
                        help="seconds a client has from the end of its headers to the end of its body; then it gets "
                             "408 and the connection is closed (default %(default)s)")
    parser.add_argument("--keep-alive-timeout", type=float, default=defaults.keep_alive_timeout,
                        help="seconds an idle kept-alive connection stays open between requests (uvicorn's "
                             "timeout_keep_alive; default %(default)s)")
    parser.add_argument("--max-bodies", type=int, default=defaults.max_bodies,
                        help="request bodies read and decoded at once; a request beyond it gets 503 with Retry-After "
                             "before its body is read (default %(default)s)")
    parser.add_argument("--max-bodies-mb", type=float, default=defaults.max_bodies_bytes / 2**20,
                        help="the declared sizes of the bodies read and decoded at once, in MiB; beyond it, 503 as "
                             "for --max-bodies (default %(default)s)")
    parser.add_argument("--group-wait-s", type=float, default=defaults.group_wait_s,
                        help="wire version 2: seconds a group (items naming it and its full group_size) waits for "
                             "all its members, from the first request that names it; an incomplete group then "
                             "answers advantage null (default %(default)s)")
    parser.add_argument("--max-open-groups", type=int, default=defaults.max_open_groups,
                        help="wire version 2: groups waiting for members at once; more get 429 (default %(default)s)")
    parser.add_argument("--token-env", default=defaults.token_env,
                        help="environment variable holding the bearer token; when it is set, requests without "
                             "the token get 401 (default %(default)s)")
    parser.add_argument("--devices", help="comma-separated devices, one judge replica each (overrides "
                                          "reward_model.devices)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a config key, e.g. --set reward_model.params.score_mode=logits (repeatable)")
    parser.add_argument("--replica-processes", default="auto", choices=["auto", "always", "never"],
                        help="each judge replica in a process of its own: auto (default) does so for more than one "
                             "replica of a judge that computes in the server's process (the transformers judge; "
                             "vLLM and API judges wait on servers, their replicas stay threads)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()
    overrides = list(args.set)
    if args.batch_size is not None:
        overrides.append(f"reward_model.params.batch_size={args.batch_size}")
    if args.devices:
        devices = [d.strip() for d in args.devices.split(",") if d.strip()]
        overrides.append(f"reward_model.devices={json.dumps(devices)}")
    try:
        reward_model = load_reward_model_config(args.config, overrides)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if reward_model.params.get("protocol") is not None:
        print("reward_model.params.protocol: a benchmark's own scoring protocol runs in the job (python main.py "
              "--stage score), not in the reward server, which scores with a rubric; remove it here", file=sys.stderr)
        return 2
    configured = reward_model.params.get("batch_size", 4)  # Qwen3VLRewardModel's default
    batch_size = args.batch_size or (configured if isinstance(configured, int) else AUTO_BATCH)
    settings = ServeSettings(host=args.host, port=args.port, batch_size=batch_size, max_wait_ms=args.max_wait_ms,
                             max_queue=args.max_queue, max_items=args.max_items,
                             max_body_bytes=int(args.max_body_mb * 2**20), max_image_pixels=args.max_image_pixels,
                             max_queue_pixels=args.max_queue_pixels, token_env=args.token_env,
                             max_instruction_chars=args.max_instruction_chars, header_timeout=args.header_timeout,
                             body_timeout=args.body_timeout, keep_alive_timeout=args.keep_alive_timeout,
                             group_wait_s=args.group_wait_s, max_open_groups=args.max_open_groups,
                             max_bodies=args.max_bodies, max_bodies_bytes=int(args.max_bodies_mb * 2**20))
    problems = settings.problems()
    if problems:
        print("invalid serve flags:\n" + "\n".join(f"  - {p}" for p in problems), file=sys.stderr)
        return 2

    from ..models.reward.judge import build_judge, judge_class, judge_devices, judge_rubric
    from ..parallel import device_label
    from .replica import ReplicaProcess

    if "--enable-sleep-mode" in (reward_model.params.get("server_args") or []):
        # vLLM serves /sleep and /wake_up only in its development mode (POST /v1/sleep uses them).
        os.environ.setdefault("VLLM_SERVER_DEV_MODE", "1")

    # The job's builder: the same rubric (viescore_prompts_dir too), params and devices as the score
    # stage; no progress bars (a bar per batch is noise in a server's log).
    rubric = judge_rubric(reward_model.params)

    devices = judge_devices(reward_model)
    in_processes = args.replica_processes == "always" or (
        args.replica_processes == "auto" and len(devices) > 1 and judge_class(reward_model).runs_in_process)

    def build_model(device):
        if in_processes:  # its own interpreter (and lock); loads while the next one starts
            return ReplicaProcess(reward_model, device, name=device_label(device))
        return build_judge(reward_model, device, quiet=True)[0]

    token = os.environ.get(settings.token_env) or None
    register_secret(token)  # never in a log line or an answer, whatever echoes it
    logger.info("%d judge replica(s) %s", len(devices), "each in a process of its own" if in_processes
                else "as threads of the server's process")
    return run(settings, build_model, rubric, devices, token)


def run(settings: ServeSettings, build_model, rubric, devices: list, token: str | None) -> int:
    """Serve until stopped (Ctrl-C, SIGTERM); 1 when the judge failed to load. ``devices``: one entry
    per judge replica, a device or a group of devices."""
    from ..parallel import device_label
    try:
        import uvicorn

        from .app import build_app
        from .timeouts import timed_protocol
    except ModuleNotFoundError as exc:
        print(f"error: editjudge serve needs the server extra ({exc.name} is missing): "
              "pip install 'editjudge[server]'", file=sys.stderr)
        return 2

    app = build_app(settings, build_model, rubric, devices, token)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None,
                                           access_log=False, timeout_graceful_shutdown=30,
                                           http=timed_protocol(settings.header_timeout, settings.body_timeout),
                                           timeout_keep_alive=settings.keep_alive_timeout))
    app.state.on_load_failure = lambda: setattr(server, "should_exit", True)
    where = f"http://{settings.host}:{settings.port}"
    if _is_loopback(settings.host):
        logger.info("reward server on %s: loopback only, other machines cannot connect (--host 0.0.0.0 to allow "
                    "them)", where)
    else:
        logger.warning("reward server on %s: NOT loopback, reachable from other machines", where)
    if token:
        logger.info("bearer token required (from $%s)", settings.token_env)
    else:
        logger.warning("no bearer token ($%s is not set): anyone who can connect can use the judge",
                       settings.token_env)
    logger.info("judge loading on %s (rubric %r); GET /health answers 200 once it is ready",
                ", ".join(device_label(d) for d in devices), rubric.name)
    server.run()
    return 1 if app.state.judges.state == "failed" else 0
