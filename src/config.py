"""The run configuration: YAML in, validated dataclasses out, every problem reported at once.

Precedence: ``--set a.b=c`` on the command line > the YAML file > the defaults below.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .config_reward import (judge_device_spec, judge_group_problems, reward_model_problems, vllm_layout_problems,
                            vllm_servers)
from .config_types import BenchmarkConfig, Config, EditingConfig, EditorConfig, RewardModelConfig
from .suggest import unknown_key

if TYPE_CHECKING:
    from .progress import Steps


class ConfigError(ValueError):
    """A configuration that cannot run; the message lists every problem found."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"invalid configuration {source}:\n" + "\n".join(f"  - {p}" for p in problems))


# The dataclasses live in config_types, below both this module and the editors that read them (no
# import cycle); ``from editjudge.config import EditorConfig`` keeps working. The reward_model section's
# checks live in config_reward; ``from editjudge.config import vllm_servers`` keeps working too.
REEXPORTED = (BenchmarkConfig, EditorConfig, judge_device_spec, vllm_servers)

EDITOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _type_ok(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is Any:
        return True
    if origin is list:
        (item,) = typing.get_args(annotation)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _build(cls, data: Any, where: str, problems: list[str]):
    if not isinstance(data, dict):
        problems.append(f"{where or 'top level'}: expected a mapping, got {type(data).__name__}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            problems.append(f"{where + '.' if where else ''}{key}: {unknown_key(key, fields)}")
    kwargs = {}
    for name, f in fields.items():
        path = f"{where}.{name}" if where else name
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if name not in data:
            if required:
                problems.append(f"{path}: required")
            continue
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation):
            kwargs[name] = _build(annotation, data[name], path, problems)
        elif typing.get_origin(annotation) is list and dataclasses.is_dataclass(typing.get_args(annotation)[0]):
            if not isinstance(data[name], list):
                problems.append(f"{path}: expected a list, got {type(data[name]).__name__}")
                continue
            (item_cls,) = typing.get_args(annotation)
            kwargs[name] = [_build(item_cls, v, f"{path}[{i}]", problems) for i, v in enumerate(data[name])]
        elif not _type_ok(data[name], annotation):
            problems.append(f"{path}: expected {_type_name(annotation)}, got {type(data[name]).__name__} {data[name]!r}")
        else:
            kwargs[name] = data[name]
    try:
        return cls(**kwargs)
    except TypeError:
        return None  # already reported as a missing required key


def _check_offload(editing: EditingConfig, problems: list[str]) -> None:
    """``offload: sequential`` streams weights onto a GPU: it cannot run on a CPU worker."""
    from .parallel import device_problems, resolve_devices

    sequential = [i for i, e in enumerate(editing.editors) if e is not None and e.offload == "sequential"]
    if not sequential or device_problems(editing.devices, "", groups=False):
        return
    on_cpu = [d for d in resolve_devices(editing.devices) if isinstance(d, str) and d.startswith("cpu")]
    for i in sequential if on_cpu else []:
        problems.append(f"editing.editors[{i}].offload: 'sequential' needs a GPU, and editing.devices "
                        f"{editing.devices!r} runs editors on the CPU (use offload: none or model there)")


def _check_editing(editing: EditingConfig, problems: list[str]) -> None:
    from .models.editing import editor_problems
    from .parallel import device_problems

    problems.extend(device_problems(editing.devices, "editing.devices", groups=False, present=False))
    _check_offload(editing, problems)
    seen = set()
    for i, editor in enumerate(editing.editors):
        where = f"editing.editors[{i}]"
        if editor is None:
            continue  # its problems are already listed
        if not EDITOR_NAME.fullmatch(editor.name):
            problems.append(f"{where}.name: {editor.name!r} must be letters, digits, '.', '_' or '-' (it names a folder)")
        elif editor.name in seen:
            problems.append(f"{where}.name: {editor.name!r} is used by another editor")
        seen.add(editor.name)
        problems.extend(editor_problems(editor, where, "light"))


def _check_values(config: Config, problems: list[str]) -> None:
    from .benchmark import BENCHMARK_FORMATS, benchmark_file_problem
    from .parallel import device_problems

    if config.editing is not None:
        _check_editing(config.editing, problems)
    problems.extend(device_problems(config.reward_model.devices, "reward_model.devices", present=False))
    problems.extend(judge_group_problems(config.reward_model))
    problems.extend(vllm_layout_problems(config.reward_model))
    if config.benchmark.format not in BENCHMARK_FORMATS:
        problems.append(f"benchmark.format: {config.benchmark.format!r} is not one of {list(BENCHMARK_FORMATS)}")
    if config.benchmark.limit is not None and config.benchmark.limit < 1:
        problems.append(f"benchmark.limit: must be at least 1, got {config.benchmark.limit}")
    if config.benchmark.max_instruction_chars < 1:
        problems.append(f"benchmark.max_instruction_chars: must be at least 1, got {config.benchmark.max_instruction_chars}")
    if not Path(config.benchmark.path).exists():
        problems.append(f"benchmark.path: {config.benchmark.path} does not exist")
    elif config.benchmark.format in BENCHMARK_FORMATS:
        missing = benchmark_file_problem(config.benchmark.path, config.benchmark.format)
        problems.extend([f"benchmark.path: {missing}"] if missing else [])
    problems.extend(reward_model_problems(config.reward_model))


def model_problems(config: Config, steps: "Steps | None" = None) -> list[str]:
    """The checks that may import torch or diffusers or ask the hub: each editor's settings and files
    (diffusers pipelines' signatures), the judge's files, and whether this machine has the named
    devices. ``load_config`` runs them unless ``models=False``. ``steps``: where each check is
    counted as it runs (``editjudge.progress.Steps``: the first import of diffusers takes seconds)."""
    from .models.editing import editor_problems
    from .parallel import device_problems

    def devices(where: str, spec, groups: bool) -> list[str]:
        if device_problems(spec, where, groups=groups, present=False):  # a malformed one is reported already
            return []
        return device_problems(spec, where, groups=groups)

    def vllm_layout() -> list[str]:
        if vllm_layout_problems(config.reward_model):  # reported already, without the GPU count
            return []
        import torch

        return vllm_layout_problems(config.reward_model, torch.cuda.device_count())

    def judge() -> list[str]:
        from .models.reward import REWARD_MODELS, reward_file_problems

        if config.reward_model.type not in REWARD_MODELS:
            return []
        # the judge's files: folder, HF cache or hub (probed once)
        return [f"reward_model.params.{p}" for p in
                reward_file_problems(config.reward_model.type, dict(config.reward_model.params))]

    checks = [("editing.devices", lambda: devices("editing.devices", config.editing.devices, False)),
              ("reward_model.devices", lambda: devices("reward_model.devices", config.reward_model.devices, True))]
    checks += [(f"editor {editor.name}", lambda i=i, editor=editor: editor_problems(editor, f"editing.editors[{i}]",
                                                                                   "heavy"))
               for i, editor in enumerate(config.editing.editors)]
    if config.reward_model.type == "vllm":  # once, with this machine's GPUs
        checks.append(("vLLM server placement", vllm_layout))
    checks.append((f"judge {config.reward_model.type}", judge))
    problems: list[str] = []
    if steps is not None:
        steps.add(len(checks))
    for what, check in checks:
        with steps.step(what) if steps is not None else contextlib.nullcontext():
            problems.extend(check())
    return problems


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=c`` -> (["a", "b"], yaml value of c)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError("--set", [f"{text!r}: expected key.path=value"])
    try:
        return key.strip().split("."), safe_load_yaml(value)
    except yaml.YAMLError as exc:
        raise ConfigError("--set", [f"{text!r}: not a valid YAML value ({exc})"]) from None


def _list_index(node: list, key: str, text: str, where: str) -> int:
    """A list entry by position (``editors.0``) or by its ``name`` (``editors.my-editor``)."""
    if key.isdigit():
        if int(key) >= len(node):
            raise ConfigError("--set", [f"{text!r}: {where} has {len(node)} entries, no entry {key}"])
        return int(key)
    names = [entry.get("name") if isinstance(entry, dict) else None for entry in node]
    if key not in names:
        known = ", ".join(str(n) for n in names if n is not None) or "none"
        raise ConfigError("--set", [f"{text!r}: {where} has no entry named {key!r} (an index 0-{len(node) - 1} "
                                    f"or a name: {known})"])
    return names.index(key)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b=c`` overrides; a list is indexed by position or by its entries' ``name``."""
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for depth, key in enumerate(keys):
            where = ".".join(keys[:depth]) or "the top level"
            if isinstance(node, list):
                key = _list_index(node, key, text, where)
            elif not isinstance(node, dict):
                raise ConfigError("--set", [f"{text!r}: {where} is neither a mapping nor a list"])
            if depth == len(keys) - 1:
                node[key] = value
            else:
                if isinstance(node, dict) and key not in node:
                    node[key] = {}
                node = node[key]
    return data


# Keys that name files or folders. A relative value in a config file is relative to that file's folder
# (so a config works from any directory); values given with --set are relative to where the command runs.
# Model keys may also hold a hub id: their relative value is taken as a path only where that path exists.
PATH_KEYS = (("benchmark", "path"), ("benchmark", "image_cache"), ("output_dir",))
EDITOR_PATH_KEYS = ("image_dir",)
MODEL_PATH_KEYS = {"editor": ("model_path",), "reward_model.params": ("model_path", "adapter_path")}
# reward_model.params that name files or folders: the official VIEScore prompts, the response cache,
# vLLM's interpreter (resolved like PATH_KEYS).
REWARD_PATH_KEYS = ("viescore_prompts_dir", "cache_dir", "python")


def resolve_relative_paths(data: dict, folder: Path) -> dict:
    """Make the relative paths in a config file's ``data`` relative to its ``folder`` (see PATH_KEYS)."""
    def resolved(value, must_exist: bool = False):
        if not isinstance(value, str) or not value or Path(value).is_absolute() or value.startswith("~"):
            return value
        candidate = folder / value
        if must_exist and not candidate.exists():
            return value  # a hub id such as Qwen/Qwen3-VL-8B-Instruct
        return os.path.normpath(candidate)  # no "configs/../" in every path a run prints

    if not isinstance(data, dict):
        return data
    for keys in PATH_KEYS:
        node = data
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and keys[-1] in node:
            node[keys[-1]] = resolved(node[keys[-1]])
    editing = data.get("editing")
    editors = editing.get("editors") if isinstance(editing, dict) else None
    for editor in editors if isinstance(editors, list) else []:
        if isinstance(editor, dict):
            for key in EDITOR_PATH_KEYS:
                if key in editor:
                    editor[key] = resolved(editor[key])
            for key in MODEL_PATH_KEYS["editor"]:
                if key in editor:
                    editor[key] = resolved(editor[key], must_exist=True)
    reward = data.get("reward_model")
    params = reward.get("params") if isinstance(reward, dict) else None
    if isinstance(params, dict):
        for key in MODEL_PATH_KEYS["reward_model.params"]:
            if key in params:
                params[key] = resolved(params[key], must_exist=True)
        for key in REWARD_PATH_KEYS:
            if key in params:
                params[key] = resolved(params[key])
        if isinstance(params.get("protocol"), dict) and "dir" in params["protocol"]:  # the benchmark's checkout
            params["protocol"]["dir"] = resolved(params["protocol"]["dir"])
    return data


# Nodes a YAML document may expand to, aliases counted at their full size: far above any real config
# (configs/*.yaml hold a few hundred), far below an alias bomb (a 500-byte file expanding 10^6 times).
MAX_YAML_NODES = 100_000


class YAMLTooLarge(yaml.YAMLError):
    """A document whose aliases expand past ``MAX_YAML_NODES`` nodes."""


class _BoundedSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that counts each node at its expanded size (an alias at the size of what it
    names) and refuses the document once that passes ``max_nodes``, before anything is constructed."""

    max_nodes = MAX_YAML_NODES

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent, index):
        node = super().compose_node(parent, index)
        size = self._sizes.get(id(node))
        if size is None:
            if isinstance(node, yaml.MappingNode):
                size = 1 + sum(self._sizes.get(id(k), 1) + self._sizes.get(id(v), 1) for k, v in node.value)
            elif isinstance(node, yaml.SequenceNode):
                size = 1 + sum(self._sizes.get(id(v), 1) for v in node.value)
            else:
                size = 1
            self._sizes[id(node)] = size
        if size > self.max_nodes:
            mark = node.start_mark
            raise YAMLTooLarge(f"line {mark.line + 1}: this node expands to over {self.max_nodes:,} values through "
                               "YAML aliases (*name); refused (an alias bomb?)")
        return node


def safe_load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with a bound on how far aliases may expand (``MAX_YAML_NODES``)."""
    loader = _BoundedSafeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _read_yaml(path: Path) -> Any:
    try:
        return safe_load_yaml(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    except YAMLTooLarge as exc:
        raise ConfigError(str(path), [f"YAML aliases expand too far: {exc}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [f"not valid YAML: {exc}"]) from None


def read_config(path: str | Path, overrides: list[str] | None = None) -> tuple[Config | None, list[str]]:
    """Read, resolve relative paths, override, and run every check that needs neither torch nor
    diffusers nor the hub (well under a second). Returns the config, or None where it could not be
    built (a missing section, a wrong type), and the problems found."""
    path = Path(path)
    data = resolve_relative_paths(_read_yaml(path), path.resolve().parent)
    data = apply_overrides(data, overrides or [])
    problems: list[str] = []
    config = _build(Config, data, "", problems)
    if config is None or config.benchmark is None or config.reward_model is None:
        return None, problems
    _check_values(config, problems)
    if config.editing is None or None in config.editing.editors:
        return None, problems
    return config, problems


def load_config(path: str | Path, overrides: list[str] | None = None, models: bool = True) -> Config:
    """Read, resolve relative paths, override and validate; raise ConfigError listing every problem.

    ``models=False`` leaves out ``model_problems`` (the checks that import torch or diffusers);
    the CLI runs them after printing the plan, and only once the other checks pass."""
    config, problems = read_config(path, overrides)
    if models and config is not None:  # every problem at once, the slow ones included
        problems.extend(model_problems(config))
    if problems:
        raise ConfigError(str(path), problems)
    return config


def load_reward_model_config(path: str | Path, overrides: list[str] | None = None) -> RewardModelConfig:
    """Only the ``reward_model`` section, validated (what ``editjudge serve`` needs); raise ConfigError.

    The other sections may be there (the job's own config file serves as is) and are not checked,
    but an unknown top-level key is still an error.
    """
    from .parallel import device_problems

    path = Path(path)
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(str(path), [f"top level: expected a mapping, got {type(data).__name__}"])
    data = resolve_relative_paths(data, path.resolve().parent)
    data = apply_overrides(data, overrides or [])
    known = [f.name for f in dataclasses.fields(Config)]
    problems = [f"{key}: {unknown_key(key, known)}" for key in data if key not in known]
    if "reward_model" not in data:
        problems.append("reward_model: required")
        raise ConfigError(str(path), problems)
    reward_model = _build(RewardModelConfig, data["reward_model"], "reward_model", problems)
    if reward_model is not None:
        problems.extend(device_problems(reward_model.devices, "reward_model.devices"))
        problems.extend(reward_model_problems(reward_model))
    if problems:
        raise ConfigError(str(path), problems)
    return reward_model


def config_from_dict(data: dict) -> Config:
    """Rebuild a configuration that was already validated (a worker receiving its parent's)."""
    problems: list[str] = []
    config = _build(Config, data, "", problems)
    if problems:
        raise ConfigError("(from dict)", problems)
    return config


def config_to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)
