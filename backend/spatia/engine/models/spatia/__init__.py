"""The native Spatia model: Wan2.2-TI2V-5B with the Spatia control branch and LoRA, on diffusers.

    transformer.py  SpatiaTransformer3DModel (DiT + control branch, reference-frame positions)
    convert.py      DiffSynth / original Wan checkpoint keys -> ours, strict loading
    lora.py         the switchable DiT LoRA (off in round 0, on afterwards)
    pipeline.py     SpatiaPipeline: conditions -> denoising loop -> frames
    loading.py      build the pipeline from local weight folders
    generator.py    SpatiaGenerator, the VideoGenerator
    tiny.py         tiny random-weight components for tests and benchmarks

Importing this package imports neither diffusers nor transformers; the submodules that need
them import them.
"""

from .generator import SpatiaGenerator

__all__ = ["SpatiaGenerator"]
