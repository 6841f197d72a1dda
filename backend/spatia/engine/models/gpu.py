"""Running the diffusion pipelines on real GPUs: VRAM modes, precision, attention, compile, OOM.

VRAM modes, from fastest / most memory to slowest / least:
- "gpu":         every model on the GPU.
- "model":       diffusers model CPU offload: one whole model on the GPU at a time.
- "group":       the transformer streamed block by block (diffusers group offload, with CUDA
                 streams overlapping transfers); the other models offloaded whole.
- "sequential":  every layer moved to the GPU only while it runs (slowest, least VRAM).
VAE tiling (decode/encode in spatial tiles) is independent of the mode. fp8 layerwise storage
keeps the transformer's linear weights in float8 and casts each layer to the compute dtype as
it runs (diffusers `enable_layerwise_casting`), roughly halving its weight memory.

A CUDA out-of-memory error becomes `ModelUnavailable` naming the next mode to try.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .base import ModelUnavailable, VideoGenerator

VRAM_MODES = ("gpu", "model", "group", "sequential")


@dataclass(frozen=True)
class RuntimeOptions:
    """How to place and run a pipeline. device None: CUDA when available, else CPU.
    dtype None: bfloat16 on CUDA, float32 on CPU (bf16 matmuls are slow on most CPUs)."""

    device: str | None = None
    dtype: torch.dtype | None = None
    vram_mode: str = "gpu"
    vae_tiling: bool = False
    fp8_storage: bool = False
    attention_backend: str | None = None
    compile: bool = False

    def __post_init__(self):
        if self.vram_mode not in VRAM_MODES:
            raise ValueError(f"unknown VRAM mode {self.vram_mode!r}; choose one of {', '.join(VRAM_MODES)}")

    def resolved_device(self) -> torch.device:
        if self.device is not None:
            return torch.device(self.device)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def resolved_dtype(self) -> torch.dtype:
        if self.dtype is not None:
            return self.dtype
        return torch.bfloat16 if self.resolved_device().type == "cuda" else torch.float32


def next_vram_mode(mode: str) -> str | None:
    index = VRAM_MODES.index(mode)
    return VRAM_MODES[index + 1] if index + 1 < len(VRAM_MODES) else None


def oom_advice(options: RuntimeOptions) -> str:
    steps = []
    following = next_vram_mode(options.vram_mode)
    if following:
        steps.append(f"vram_mode={following!r}")
    if not options.vae_tiling:
        steps.append("vae_tiling=True")
    if not options.fp8_storage:
        steps.append("fp8_storage=True")
    if not steps:
        return "lower the resolution or the frame count"
    return "try " + ", then ".join(steps) + " (or lower the resolution or the frame count)"


@contextlib.contextmanager
def out_of_memory_as_unavailable(options: RuntimeOptions, what: str = "generation") -> Iterator[None]:
    """Turn a CUDA OOM into ModelUnavailable with the next setting to try; free the cache first."""
    try:
        yield
    except torch.OutOfMemoryError as exc:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise ModelUnavailable(
            f"CUDA ran out of memory during {what} in VRAM mode {options.vram_mode!r}; {oom_advice(options)}"
        ) from exc


def set_attention_backend(model, backend: str | None) -> None:
    """Select a diffusers attention-dispatcher backend ("native", "flash", "_flash_3", "sage", ...)."""
    if backend is None:
        return
    if not hasattr(model, "set_attention_backend"):
        raise ModelUnavailable("this diffusers version has no attention dispatcher; upgrade diffusers or leave attention_backend unset")
    try:
        model.set_attention_backend(backend)
    except (ValueError, RuntimeError, ImportError) as exc:
        raise ModelUnavailable(f"attention backend {backend!r} is not usable here: {exc}") from exc


def apply_runtime(pipe, options: RuntimeOptions, *, denoiser: str = "transformer") -> None:
    """Place a diffusers pipeline per `options`. Order matters: dtype, fp8 storage, attention,
    then offloading hooks, then compile (which must see the final modules)."""
    device = options.resolved_device()
    dtype = options.resolved_dtype()
    if device.type != "cuda" and options.vram_mode != "gpu":
        raise ModelUnavailable(f"VRAM mode {options.vram_mode!r} needs a CUDA device; on {device.type} use vram_mode='gpu'")
    model = getattr(pipe, denoiser)
    for name in ("text_encoder", denoiser):
        getattr(pipe, name).to(dtype=dtype)
    # The VAE stays float32 on CPU; on CUDA it runs in the compute dtype to bound memory.
    pipe.vae.to(dtype=dtype if device.type == "cuda" else torch.float32)
    if options.fp8_storage:
        if device.type != "cuda":
            raise ModelUnavailable("fp8 layerwise storage needs a CUDA device")
        model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
    set_attention_backend(model, options.attention_backend)
    if options.vae_tiling:
        pipe.vae.enable_tiling()

    if options.vram_mode == "gpu":
        pipe.to(device)
    elif options.vram_mode == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif options.vram_mode == "group":
        model.enable_group_offload(onload_device=device, offload_device=torch.device("cpu"),
                                   offload_type="block_level", num_blocks_per_group=1, use_stream=True)
        for name, component in pipe.components.items():
            if name != denoiser and isinstance(component, torch.nn.Module):
                component.to(device)
    else:
        pipe.enable_sequential_cpu_offload(device=device)

    if options.compile:
        if hasattr(model, "compile_repeated_blocks"):
            model.compile_repeated_blocks(fullgraph=False)
        else:
            setattr(pipe, denoiser, torch.compile(model))


def free_memory() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


__all__ = [
    "VRAM_MODES",
    "RuntimeOptions",
    "apply_runtime",
    "free_memory",
    "next_vram_mode",
    "oom_advice",
    "out_of_memory_as_unavailable",
    "set_attention_backend",
]


class DiffusersGenerator(VideoGenerator):
    """What the diffusers-based generators share: the pipeline loads lazily, once, from any
    thread, and is placed on the GPU as the runtime options say; subclasses provide _load()."""

    def _setup_pipeline(self, pipeline, runtime: RuntimeOptions | None) -> None:
        self.runtime = runtime or RuntimeOptions()
        self._pipe = pipeline
        self._placed = False
        self._lock = threading.Lock()

    def _load(self):
        raise NotImplementedError

    def _pipeline(self):
        with self._lock:
            if self._pipe is None:
                self._pipe = self._load()
            if not self._placed:
                with out_of_memory_as_unavailable(self.runtime, "loading"):
                    apply_runtime(self._pipe, self.runtime)
                self._placed = True
            return self._pipe

    def _require_gpu(self, message: str) -> None:
        """ModelUnavailable(message) unless a GPU is there or a device was chosen explicitly."""
        if self.runtime.resolved_device().type == "cpu" and self.runtime.device is None:
            raise ModelUnavailable(message)
