"""Which benchmark protocols exist, and building one from ``reward_model.params.protocol``.

    reward_model:
      params:
        protocol: {name: imgedit, dir: /data/ImgEdit}     # plus any options the protocol takes

``PROTOCOLS`` maps a name to its class, imported lazily; adding a protocol is one line here. The
``protocol`` key is read by the pipeline around the judge (``reward.settings.PIPELINE_PARAMS``), never
passed to the judge backend. ``protocol_problems`` is what the configuration check reports (exit 2
before any work): an unknown name, a missing ``dir``, a checkout without the upstream files.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from .base import BenchmarkProtocol, ProtocolError

PROTOCOLS = {
    "imgedit": "editjudge.protocols.imgedit:ImgEditBasic",
    "kris": "editjudge.protocols.kris:KrisProtocol",
    "rise": "editjudge.protocols.rise:RiseProtocol",
}


def protocol_class(name: str):
    """The class registered under ``name``; an unknown name lists the known ones (``ProtocolError``)."""
    if name not in PROTOCOLS:
        raise ProtocolError(f"unknown protocol {name!r}; known: {sorted(PROTOCOLS)}")
    module, _, attr = PROTOCOLS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def _spec_fields(spec: Any) -> tuple[str, Path, dict]:
    if not isinstance(spec, dict):
        raise ProtocolError(f"expected a mapping {{name: ..., dir: ...}}, got {type(spec).__name__} {spec!r}")
    name, folder = spec.get("name"), spec.get("dir")
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"name: required, one of {sorted(PROTOCOLS)}")
    protocol_class(name)
    if not isinstance(folder, str) or not folder:
        raise ProtocolError(f"dir: required, the local checkout of the {name!r} benchmark's repository")
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ProtocolError(f"dir: {path} is not a folder (a local checkout of the {name!r} benchmark's repository)")
    return name, path, {k: v for k, v in spec.items() if k not in ("name", "dir")}


def load_protocol(spec: Any) -> BenchmarkProtocol:
    """The protocol ``spec`` (the config's ``protocol`` mapping) names, read from its checkout now (cheap:
    a few files read and hashed, so an edited upstream file is seen by the next run).

    Raises ``ProtocolError`` for an unknown name, a missing folder, missing upstream files or unknown
    options.
    """
    name, folder, options = _spec_fields(spec)
    cls = protocol_class(name)
    try:
        return cls(folder, **options)
    except TypeError as exc:  # an option the class does not take
        raise ProtocolError(f"{name}: {exc}") from None
    except OSError as exc:
        raise ProtocolError(f"{name}: cannot read {folder}: {exc}") from None


def configured_protocol(params: dict) -> BenchmarkProtocol | None:
    """The protocol of a ``reward_model.params`` block, or None when it names none."""
    spec = params.get("protocol")
    return None if spec is None else load_protocol(spec)


def protocol_problems(params: dict) -> list[str]:
    """What is wrong with ``reward_model.params``' ``protocol`` (and its neighbours), as config problems."""
    spec = params.get("protocol")
    if spec is None:
        return []
    problems = []
    try:
        load_protocol(spec)
    except ProtocolError as exc:
        problems.append(f"reward_model.params.protocol: {exc}")
    if params.get("rubric", "simple") != "simple" or params.get("viescore_prompts_dir") is not None:
        problems.append("reward_model.params.protocol: a benchmark protocol brings its own prompts; remove "
                        "rubric and viescore_prompts_dir")
    if params.get("score_mode", "generate") != "generate":
        problems.append("reward_model.params.protocol: a benchmark protocol reads the judge's answer text; "
                        "use score_mode: generate")
    if params.get("sampling") is not None:
        problems.append("reward_model.params.protocol: a benchmark protocol reads one answer per request; "
                        "remove sampling")
    return problems


def protocol_note(protocol: BenchmarkProtocol, folder: str | Path) -> str:
    """Which protocol scored, for summary.json and the reports: name, version and the files' digests."""
    identity = protocol.identity()
    files = ", ".join(f"{path} (sha256 {digest[:12]})" for path, digest in identity["files"].items())
    return (f"{identity['protocol']} protocol, version {identity['version']}, upstream files read from "
            f"{Path(folder).expanduser()}: {files}")
