"""The run configuration's dataclasses, which the editors and judges take: they import nothing of
editjudge's but the benchmark's default, so ``config`` (which reads and checks them) and the model
backends (which read them) both stand above this module and never import each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .benchmark.items import MAX_INSTRUCTION_CHARS


@dataclass
class BenchmarkConfig:
    path: str
    format: str = "native"
    categories: list[str] | None = None
    limit: int | None = None
    language: str | None = None
    image_cache: str | None = None
    max_instruction_chars: int = MAX_INSTRUCTION_CHARS


@dataclass
class EditorConfig:
    name: str
    type: str
    model_path: str | None = None
    image_dir: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 1
    dtype: str = "auto"
    trust_remote_code: bool = False
    max_area: int | None = None
    # diffusers: where the weights live (none | model | sequential) and VAE decoding in tiles / one image at a time.
    offload: str = "none"
    vae_tiling: bool = False
    vae_slicing: bool = False


@dataclass
class EditingConfig:
    devices: str | list[str | list[str]] = "auto"  # a group (nested list) is refused with its reason
    editors: list[EditorConfig] = field(default_factory=list)


@dataclass
class RewardModelConfig:
    type: str = "qwen3_vl"
    # A list entry may be a group of GPUs one replica spans: [[cuda:0, cuda:1], [cuda:2, cuda:3]].
    devices: str | list[str | list[str]] = "auto"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Config:
    benchmark: BenchmarkConfig
    reward_model: RewardModelConfig
    editing: EditingConfig = field(default_factory=EditingConfig)
    output_dir: str = "outputs/run"
    seed: int = 0
