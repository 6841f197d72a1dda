"""`wan-vace`: Wan2.1-VACE (1.3B / 14B) through diffusers' `WanVACEPipeline`.

How a request maps onto VACE's inputs:
- `video`: the memory projection, with the history frames (the previous clip's last frames)
  written over the first frames; `mask`: white where VACE must generate (the memory's holes),
  black where the pixels are known (memory and every history frame) and should be kept.
- round 0: the first image is the known first frame (mask black) in the same way.
- retrieved reference frames, then remembered objects' crops on white, go in as `reference_images`
  when `use_references` is on.
- F frames of any count: padded to 4k+1 by repeating the last frame, cropped afterwards.
VACE treats known pixels as strong conditioning, not as a hard constraint; with
`pin_known_frames` (default) the returned history / first frame pixels are the caller's own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import (
    CancelFn,
    Cancelled,
    GenerationRequest,
    GenerationResult,
    ModelInputError,
    ModelRequirements,
    ModelUnavailable,
    PreviewFn,
    ProgressFn,
    preview_every,
    report,
)
from .gpu import DiffusersGenerator, RuntimeOptions, out_of_memory_as_unavailable
from .loading import require_modules
from .registry import get_preset, require_weights

DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 5.0
_DENOISE_START, _DENOISE_END = 0.05, 0.95


def padded_frame_count(frames: int, temporal_factor: int = 4) -> int:
    return ((max(frames, 1) - 1 + temporal_factor - 1) // temporal_factor) * temporal_factor + 1


def vace_inputs(request: GenerationRequest, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(video uint8 [frames,H,W,3], mask uint8 [frames,H,W,3] with 255 = generate) for a request,
    padded to `frames` by repeating the last frame."""
    video = request.projection.copy()
    generate = request.hole_mask.copy()
    if request.history is not None and len(request.history):
        video[: len(request.history)] = request.history
        generate[: len(request.history)] = False
    elif request.first_frame is not None:
        video[0] = request.first_frame
        generate[0] = False
    if frames > len(video):
        extra = frames - len(video)
        video = np.concatenate([video, np.repeat(video[-1:], extra, axis=0)])
        generate = np.concatenate([generate, np.repeat(generate[-1:], extra, axis=0)])
    mask = np.repeat(np.where(generate, np.uint8(255), np.uint8(0))[..., None], 3, axis=-1)
    return video, mask


class WanVaceGenerator(DiffusersGenerator):
    """Weights load lazily from the preset's local folder; or pass a ready `pipeline`."""

    supports_preview = True

    def __init__(
        self,
        preset: str = "wan-vace-1.3b",
        *,
        pipeline=None,
        model_dir: str | Path | None = None,
        runtime: RuntimeOptions | None = None,
        steps: int = DEFAULT_STEPS,
        guidance: float = DEFAULT_GUIDANCE,
        shift: float | None = None,
        conditioning_scale: float = 1.0,
        use_references: bool = True,
        pin_known_frames: bool = True,
    ):
        self.preset = get_preset(preset)
        self.name = self.preset.name
        self.model_dir = Path(model_dir) if model_dir else None
        self._setup_pipeline(pipeline, runtime)
        self.steps, self.guidance, self.shift = steps, guidance, shift
        self.conditioning_scale = conditioning_scale
        self.use_references = use_references
        self.pin_known_frames = pin_known_frames

    @property
    def requirements(self) -> ModelRequirements:
        weights = (str(self.model_dir),) if self.model_dir else self.preset.repo_ids
        return ModelRequirements(needs_gpu=True, weights=weights, min_vram_gb=self.preset.vram_gb)

    def check_available(self) -> None:
        if self._pipe is not None:
            return
        require_modules(self.name, ("diffusers", "transformers", "accelerate"))
        self._require_gpu(f"{self.name} needs a CUDA GPU; none is available here. Use the 'preview' generator.")
        if self.model_dir is None:
            require_weights(self.preset)
        elif not (self.model_dir / "model_index.json").is_file():
            raise ModelUnavailable(f"{self.model_dir} holds no model_index.json; point model_dir at a WanVACEPipeline folder")

    def _load(self):
        import torch
        from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanVACEPipeline

        folder = self.model_dir or require_weights(self.preset)[0]
        dtype = self.runtime.resolved_dtype()
        vae = AutoencoderKLWan.from_pretrained(folder, subfolder="vae", torch_dtype=torch.float32)
        pipe = WanVACEPipeline.from_pretrained(folder, vae=vae, torch_dtype=dtype)
        if self.shift is not None:
            pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config, flow_shift=self.shift)
        return pipe

    def generate(
        self,
        request: GenerationRequest,
        progress: ProgressFn | None = None,
        should_cancel: CancelFn | None = None,
        preview: PreviewFn | None = None,
    ) -> GenerationResult:
        """`preview`: live RGB previews of the latent while it denoises (see `latent_preview`); the
        projection is fitted on one VAE encoding of the clip's first conditioning frame."""
        import torch
        from PIL import Image

        self.check_available()
        report(progress, 0.0, "loading model")
        pipe = self._pipeline()
        frames, height, width = request.num_frames, *request.size
        multiple = pipe.vae_scale_factor_spatial * int(pipe.transformer.config.patch_size[1])
        if height % multiple or width % multiple:
            raise ModelInputError(f"the clip is {width}x{height}; width and height must be multiples of {multiple}")
        padded = padded_frame_count(frames, pipe.vae_scale_factor_temporal)
        video, mask = vace_inputs(request, padded)
        references = None
        if self.use_references:
            # retrieved frames, then remembered objects' crops on white (VACE's subject references)
            images = [*(request.references if request.references is not None else ()),
                      *(request.object_references if request.object_references is not None else ())]
            references = [Image.fromarray(r) for r in images] or None
        steps = request.steps if request.steps is not None else self.steps
        guidance = request.guidance if request.guidance is not None else self.guidance

        schedule = None
        if preview is not None:
            from .latent_preview import PreviewSchedule

            schedule = PreviewSchedule(preview, _preview_projection(pipe, video[:1]), preview_every(preview))
        skip = 0 if references is None else len(references)  # reference latents lead the clip's

        def on_step_end(pipeline, index, timestep, tensors):
            report(progress, _DENOISE_START + (_DENOISE_END - _DENOISE_START) * (index + 1) / steps,
                   f"denoising step {index + 1}/{steps}")
            if should_cancel is not None and should_cancel():
                raise Cancelled("generation cancelled")
            if schedule is not None and "latents" in tensors:
                schedule(index + 1, steps, tensors["latents"][0, :, skip:])
            return {}

        if should_cancel is not None and should_cancel():
            raise Cancelled("generation cancelled")
        report(progress, 0.01, "encoding prompt and conditions")
        with out_of_memory_as_unavailable(self.runtime, "generation"):
            out = pipe(
                prompt=request.prompt,
                negative_prompt=request.negative_prompt or None,
                video=[Image.fromarray(f) for f in video],
                mask=[Image.fromarray(m) for m in mask],
                reference_images=references,
                conditioning_scale=self.conditioning_scale,
                height=height,
                width=width,
                num_frames=padded,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=torch.Generator("cpu").manual_seed(int(request.seed)),
                output_type="np",
                callback_on_step_end=on_step_end,
            )
        result = np.asarray(out.frames[0])[:frames]
        result = (np.clip(result, 0.0, 1.0) * 255.0).round().astype(np.uint8)
        if self.pin_known_frames:
            if request.history is not None and len(request.history):
                result[: len(request.history)] = request.history
            elif request.first_frame is not None:
                result[0] = request.first_frame
        report(progress, 1.0, "done")
        return GenerationResult(
            frames=np.ascontiguousarray(result),
            info={"generator": self.name, "steps": steps, "guidance": guidance, "seed": request.seed,
                  "padded_frames": padded, "reference_images": 0 if references is None else len(references)},
        )


def _preview_projection(pipe, frames: np.ndarray):
    """The latent-to-RGB projection of this pipeline's VAE, fitted on one encoded frame (uint8
    [1,H,W,3]) in the normalised latent space the pipeline denoises in."""
    import torch

    from .latent_preview import fit_projection, pooled_colours

    device = pipe._execution_device
    x = torch.from_numpy(np.ascontiguousarray(frames)).float().div(127.5).sub(1.0).permute(3, 0, 1, 2)[None]
    with torch.no_grad():
        z = pipe.vae.encode(x.to(device=device, dtype=pipe.vae.dtype)).latent_dist.mode().float()
    cfg = pipe.vae.config
    mean = torch.tensor(cfg.latents_mean, device=z.device).view(1, cfg.z_dim, 1, 1, 1)
    std = torch.tensor(cfg.latents_std, device=z.device).view(1, cfg.z_dim, 1, 1, 1)
    z = (z - mean) / std
    colours = pooled_colours(frames, z.shape[2], pipe.vae_scale_factor_temporal, pipe.vae_scale_factor_spatial)
    return fit_projection([(z[0], colours)])


# --- tiny random-weight pipeline for tests and benchmarks ---------------------------------------------
def tiny_wan_vace_pipeline(seed: int = 0):
    """A WanVACEPipeline of tiny random components: Wan2.1-style VAE (8x spatial, z 4), a
    4-layer VACE transformer with control at layers 0 and 2, a word-level tokenizer, UniPC."""
    from diffusers import AutoencoderKLWan, WanVACEPipeline, WanVACETransformer3DModel

    from .spatia.tiny import flow_unipc_scheduler, tiny_text_encoder, tiny_tokenizer
    from .tiny import _seeded

    z_dim = 4
    tokenizer = tiny_tokenizer()
    with _seeded(seed):
        vae = AutoencoderKLWan(base_dim=8, z_dim=z_dim, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                               temperal_downsample=[False, True, True], latents_mean=[0.0] * z_dim,
                               latents_std=[1.0] * z_dim).eval()
        transformer = WanVACETransformer3DModel(
            num_attention_heads=2, attention_head_dim=12, in_channels=z_dim, out_channels=z_dim, text_dim=16,
            freq_dim=16, ffn_dim=32, num_layers=4, rope_max_seq_len=64, vace_layers=[0, 2],
            vace_in_channels=2 * z_dim + 64,  # inactive + reactive latents + the 8x8-folded mask
        ).eval()
    return WanVACEPipeline(tokenizer=tokenizer, text_encoder=tiny_text_encoder(len(tokenizer), seed), vae=vae,
                           transformer=transformer, scheduler=flow_unipc_scheduler(3.0))


__all__ = ["WanVaceGenerator", "tiny_wan_vace_pipeline", "vace_inputs"]
