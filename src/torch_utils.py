"""The torch facts every backend shares: dtype names and the ``auto`` dtype, and out-of-memory errors.

torch is imported inside the functions, so that checking a configuration does not load it.
"""

from __future__ import annotations

DTYPE_NAMES = ("auto", "bfloat16", "float16", "float32")


def resolve_dtype(name: str, device) -> "torch.dtype":  # noqa: F821
    """``auto``: bfloat16 on a GPU that has it, else float16 on a GPU, float32 elsewhere."""
    import torch

    if name not in DTYPE_NAMES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPE_NAMES)}, got {name!r}")
    if name == "auto":
        if torch.device(device).type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return getattr(torch, name)


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's out-of-memory error, or a RuntimeError that says out of memory (some kernels raise those)."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
