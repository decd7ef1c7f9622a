"""What a result was computed with: the versions that change its numbers, and the GPU.

A run's summary block names them (train.py), so do final.json and the model card: a score is
reproducible bit for bit only with the same versions, threads and device (README)."""

from __future__ import annotations

import platform

import torch
import transformers

KEYS = ("torch_version", "transformers_version", "python_version", "gpu_name")


def environment(device: torch.device | None = None) -> dict[str, str]:
    """The versions, and the GPU's name when `device` is a CUDA device ("" otherwise)."""
    on_cuda = device is not None and device.type == "cuda"
    return {
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "python_version": platform.python_version(),
        "gpu_name": torch.cuda.get_device_name(device) if on_cuda else "",
    }


def of_summary(summary: dict) -> dict[str, str]:
    """The environment keys of a run's summary block."""
    return {k: summary[k] for k in KEYS if summary.get(k)}


def describe(env: dict) -> str:
    """`torch 2.13.0, transformers 5.1.0, Python 3.12.3, GPU NVIDIA H200`: what is known."""
    names = ("torch", "transformers", "Python", "GPU")
    return ", ".join(f"{name} {env[key]}" for name, key in zip(names, KEYS) if env.get(key))
