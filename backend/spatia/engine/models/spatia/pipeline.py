"""SpatiaPipeline: one clip from a prompt, the memory projection, history and reference frames.

Read top to bottom, `__call__` does what the reference implementation does per round:
1. pad the clip to 4k+1 frames (the VAE's temporal grid) by repeating the last frame;
2. encode the prompts with UMT5 (padded to 512 tokens with zeros, as Wan);
3. encode with the VAE: the control video (the memory's render, [-1, 1]) and the score video
   (1 in holes, 0 where the memory is known, in [0, 1], three equal channels), concatenated as
   control latents; both arrive as the uint8 frames the reference reads back from its videos;
   the known leading frames (round 0: the first image; later rounds: the history frames);
   each reference frame on its own, one latent frame each;
4. start from seeded Gaussian noise, write the known latents over it, prepend the references;
5. denoise with UniPC on the reference's grid (`sampling_schedule`) and classifier-free guidance,
   clean frames at timestep 0, re-imposing the clean latents after every step; progress per step,
   cancellation between steps;
6. drop the references, decode, crop to the requested frame count.
"""

from __future__ import annotations

import functools

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKLWan, DiffusionPipeline, UniPCMultistepScheduler
from diffusers.pipelines.wan.pipeline_wan import prompt_clean

from ..base import Cancelled, ModelInputError
from ..latent_preview import DEFAULT_PREVIEW_EVERY, PreviewFn, PreviewSchedule, fit_projection, pooled_colours
from .transformer import SpatiaTransformer3DModel

StepCallback = Callable[[int, int], None]


@dataclass
class SpatiaPipelineOutput:
    """frames uint8 [F,H,W,3]; latents [1, z, L, h, w] of the clip (references dropped)."""

    frames: np.ndarray | None
    latents: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)


def padded_frame_count(frames: int, temporal_factor: int = 4) -> int:
    """The smallest k * temporal_factor + 1 >= frames: the VAE encodes 1 + 4k frames."""
    return ((max(frames, 1) - 1 + temporal_factor - 1) // temporal_factor) * temporal_factor + 1


def sampling_schedule(steps: int, shift: float, num_train_timesteps: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's FlowUniPC grid: (timesteps float32 [steps], sigmas float32 [steps + 1]).

    sigma_i = linspace(1 - 1/T, 0, steps + 1)[i] for i < steps (T = num_train_timesteps), shifted
    as shift s / (1 + (shift - 1) s), then a final 0; timestep_i = int(T sigma_i) (truncated, as
    the reference's int64 cast), fed to the transformer as a float. The start 1 - 1/T is taken in
    float32 (the reference reads it from a float32 table), the rest in float64 until the end, so
    the grid equals the reference's bit for bit.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ModelInputError(f"steps must be an integer >= 1, got {steps}")
    if not (np.isfinite(shift) and shift > 0):
        raise ModelInputError(f"shift must be a positive number, got {shift}")
    sigma_max = float(np.float32(1.0 - 1.0 / num_train_timesteps))  # one train step below 1, as float32
    sigmas = np.linspace(sigma_max, 0.0, steps + 1)[:-1]
    sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    timesteps = torch.from_numpy(sigmas * num_train_timesteps).to(torch.int64).to(torch.float32)
    return timesteps, torch.from_numpy(np.concatenate([sigmas, [0.0]]).astype(np.float32))


def known_latent_frames(frames: int, temporal_factor: int = 4) -> int:
    """Latent frames fully determined by `frames` leading pixel frames (9 -> 3)."""
    return (frames - 1) // temporal_factor + 1 if frames > 0 else 0


class SpatiaPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->transformer->vae"

    def __init__(self, tokenizer, text_encoder, vae: AutoencoderKLWan, transformer: SpatiaTransformer3DModel,
                 scheduler: UniPCMultistepScheduler):
        super().__init__()
        self.register_modules(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                              scheduler=scheduler)

    # --- sizes ------------------------------------------------------------------------------------
    @property
    def temporal_factor(self) -> int:
        return int(getattr(self.vae.config, "scale_factor_temporal", None) or 4)

    @property
    def spatial_factor(self) -> int:
        return int(getattr(self.vae.config, "scale_factor_spatial", None) or 8)

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this (VAE factor x transformer patch)."""
        return self.spatial_factor * int(self.transformer.config.patch_size[1])

    # --- text -------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompt(self, prompt: str, max_sequence_length: int, device) -> torch.Tensor:
        """UMT5 states [1, max_len, D], zero beyond the prompt's tokens (as the Wan models were trained)."""
        inputs = self.tokenizer(
            [prompt_clean(prompt)], padding="max_length", max_length=max_sequence_length, truncation=True,
            add_special_tokens=True, return_attention_mask=True, return_tensors="pt",
        )
        ids, mask = inputs.input_ids.to(device), inputs.attention_mask.to(device)
        states = self.text_encoder(ids, mask).last_hidden_state
        length = int(mask.gt(0).sum())
        states[:, length:] = 0
        return states.to(self.transformer.dtype)

    # --- VAE --------------------------------------------------------------------------------------
    def _latent_stats(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.vae.config
        shape = (1, cfg.z_dim, 1, 1, 1)
        mean = torch.tensor(cfg.latents_mean, dtype=torch.float32, device=device).view(shape)
        std = torch.tensor(cfg.latents_std, dtype=torch.float32, device=device).view(shape)
        return mean, std

    @torch.no_grad()
    def encode_video(self, video: torch.Tensor, device) -> torch.Tensor:
        """[F,H,W,3] float in the VAE's range -> normalised latents [1, z, L, h, w] float32 (posterior mode)."""
        x = video.permute(3, 0, 1, 2).unsqueeze(0).to(device=device, dtype=self.vae.dtype)
        z = self.vae.encode(x).latent_dist.mode().float()
        mean, std = self._latent_stats(z.device)
        return (z - mean) / std

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        mean, std = self._latent_stats(latents.device)
        z = (latents.float() * std + mean).to(self.vae.dtype)
        video = self.vae.decode(z, return_dict=False)[0]  # [1, 3, F, H, W] in [-1, 1]
        video = ((video[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return video.permute(1, 2, 3, 0).cpu().numpy()

    @staticmethod
    def _signed(images: np.ndarray) -> torch.Tensor:
        """uint8 images -> float32 in [-1, 1]."""
        return torch.from_numpy(np.ascontiguousarray(images)).float() / 127.5 - 1.0

    def control_latents(self, control_video: np.ndarray, control_score: np.ndarray, device) -> torch.Tensor:
        """Control video latents ([-1, 1]) and score latents ([0, 1], three equal channels), channel-concatenated.

        control_score: uint8 [F,H,W] (255 = hole, the reference's score frames) or float [F,H,W]
        in [0, 1]; or a bool hole mask (True = hole), which also blacks out the control video there;
        or uint8 [F,H,W,3], score frames read back from a video (their channels may differ a little).
        """
        score = np.asarray(control_score)
        if score.ndim == 4:
            if score.dtype != np.uint8 or score.shape[-1] != 3:
                raise ModelInputError(f"colour control_score must be uint8 [F,H,W,3], got {score.dtype} {list(score.shape)}")
            score_video = torch.from_numpy(np.ascontiguousarray(score)).float() / 255.0
            return torch.cat([self.encode_video(self._signed(control_video), device),
                              self.encode_video(score_video, device)], dim=1)
        if score.dtype == np.bool_:
            control_video = np.where(score[..., None], np.uint8(0), control_video)
            values = score.astype(np.float32)
        elif score.dtype == np.uint8:
            values = score.astype(np.float32) / 255.0
        elif np.issubdtype(score.dtype, np.floating):
            if not (np.isfinite(score).all() and score.min(initial=0) >= 0 and score.max(initial=0) <= 1):
                raise ModelInputError("control_score must lie in [0, 1]")
            values = score.astype(np.float32)
        else:
            raise ModelInputError(f"control_score must be bool, uint8 or float, got {score.dtype}")
        score_video = torch.from_numpy(np.ascontiguousarray(np.repeat(values[..., None], 3, axis=-1)))
        return torch.cat([self.encode_video(self._signed(control_video), device),
                          self.encode_video(score_video, device)], dim=1)

    def _preview_projection(self, control, control_video, known, history, first_frame):
        """The latent-to-RGB projection fitted on the VAE encodings this call already made: the
        control video's latents (the first z channels of `control`) and the known leading frames'."""
        z, tf, sf = self.vae.config.z_dim, self.temporal_factor, self.spatial_factor
        device = control.device
        pairs = [(control[0, :z], pooled_colours(control_video, control.shape[2], tf, sf, device=device))]
        if known is not None:
            pixels = history if history is not None and len(history) else first_frame[None]
            pairs.append((known[0], pooled_colours(pixels, known.shape[2], tf, sf, device=device)))
        return fit_projection(pairs)

    # --- denoising --------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        prompt: str,
        control_video: np.ndarray,
        control_score: np.ndarray,
        *,
        negative_prompt: str = "",
        history: np.ndarray | None = None,
        references: np.ndarray | None = None,
        first_frame: np.ndarray | None = None,
        num_inference_steps: int = 40,
        guidance_scale: float = 3.5,
        shift: float = 5.0,
        control_scale: float = 1.0,
        seed: int = 0,
        max_sequence_length: int = 512,
        output_type: str = "np",
        callback: StepCallback | None = None,
        should_cancel: Callable[[], bool] | None = None,
        preview: PreviewFn | None = None,
        preview_every: int = DEFAULT_PREVIEW_EVERY,
    ) -> SpatiaPipelineOutput:
        """control_video uint8 [F,H,W,3] (the memory's render); control_score [F,H,W] (see
        `control_latents`: uint8 score frames, float scores, or a bool hole mask); history uint8
        [Hh,H,W,3] = this clip's first Hh frames; references uint8 [R,H,W,3]; first_frame uint8
        [H,W,3] (used only without history). Returns frames uint8 [F,H,W,3] (output_type "np").
        preview(step, steps, frames uint8 [L,h,w,3]): the clip's current latent as RGB after every
        `preview_every`-th step and the last, by a projection fitted on this call's own VAE
        encodings (see `latent_preview`)."""
        frames, height, width = self._check_clip(control_video, control_score)
        device, tf = self._execution_device, self.temporal_factor
        # 1. Pad to 4k+1 frames by repeating the last frame; cropped again after decoding.
        padded = padded_frame_count(frames, tf)
        if padded != frames:
            repeat = np.repeat(np.arange(frames), [1] * (frames - 1) + [padded - frames + 1])
            control_video, control_score = control_video[repeat], np.asarray(control_score)[repeat]
        # 2. Prompts.
        do_cfg = guidance_scale != 1.0
        context = self.encode_prompt(prompt, max_sequence_length, device)
        negative_context = self.encode_prompt(negative_prompt, max_sequence_length, device) if do_cfg else None
        # 3. Conditions through the VAE.
        control = self.control_latents(control_video, control_score, device).to(self.transformer.dtype)
        known, refs = self._known_latents(history, first_frame, references, device)
        schedule = None
        if preview is not None:
            schedule = PreviewSchedule(preview, self._preview_projection(control, control_video, known, history,
                                                                         first_frame), preview_every)
        # 4. Initial latents: noise drawn on the CPU (same numbers on every device), known frames over it.
        latents, clean = self._initial_latents(padded, height, width, seed, known, refs, device)
        num_refs = 0 if refs is None else refs.shape[2]
        num_known = 0 if known is None else known.shape[2]
        # 5. Denoising loop.
        step = functools.partial(self._guided_prediction, context=context, negative_context=negative_context,
                                 control=control, control_scale=control_scale, num_refs=num_refs,
                                 guidance_scale=guidance_scale if do_cfg else None)
        latents, steps = self._denoise(latents, clean, step, num_inference_steps, shift, num_refs + num_known,
                                       num_refs=num_refs, callback=callback, should_cancel=should_cancel,
                                       schedule=schedule)
        # 6. Drop the references, decode, crop.
        latents = latents[:, :, num_refs:]
        info = {"padded_frames": padded, "latent_frames": latents.shape[2], "reference_latents": num_refs,
                "known_latents": num_known, "steps": steps}
        if output_type == "latent":
            return SpatiaPipelineOutput(frames=None, latents=latents, info=info)
        video = self.decode_latents(latents)[:frames]
        return SpatiaPipelineOutput(frames=video, latents=latents, info=info)

    def _check_clip(self, control_video, control_score) -> tuple[int, int, int]:
        frames, height, width = control_video.shape[:3]
        if np.shape(control_score)[:3] != (frames, height, width) or np.ndim(control_score) not in (3, 4):
            raise ModelInputError(f"control_score must be [{frames}, {height}, {width}] to match control_video, "
                                  f"got {list(np.shape(control_score))}")
        multiple = self.size_multiple
        if height % multiple or width % multiple:
            raise ModelInputError(f"the clip is {width}x{height}; width and height must be multiples of {multiple}")
        return frames, height, width

    def _known_latents(self, history, first_frame, references, device):
        """The latents of the clip's known first frames (its history, else round 0's first frame)
        and of the reference frames, one latent frame each; None where there are none."""
        known = None
        if history is not None and len(history):
            count = known_latent_frames(len(history), self.temporal_factor)
            known = self.encode_video(self._signed(history[: (count - 1) * self.temporal_factor + 1]), device)
        elif first_frame is not None:
            known = self.encode_video(self._signed(first_frame[None]), device)
        refs = None
        if references is not None and len(references):
            refs = torch.cat([self.encode_video(self._signed(r[None]), device) for r in references], dim=2)
        return known, refs

    def _initial_latents(self, padded: int, height: int, width: int, seed: int, known, refs, device):
        """Noise for the clip's latent frames with the known ones over it, the references in front;
        and which latent frames are clean (never denoised)."""
        latent_frames = (padded - 1) // self.temporal_factor + 1
        shape = (1, self.vae.config.z_dim, latent_frames, height // self.spatial_factor, width // self.spatial_factor)
        generator = torch.Generator("cpu").manual_seed(int(seed))
        latents = torch.randn(shape, generator=generator, dtype=torch.float32).to(device)
        num_known = 0 if known is None else known.shape[2]
        num_refs = 0 if refs is None else refs.shape[2]
        if known is not None:
            latents[:, :, :num_known] = known
        if refs is not None:
            latents = torch.cat([refs, latents], dim=2)
        clean = torch.zeros(num_refs + latent_frames, dtype=torch.bool, device=device)
        clean[: num_refs + num_known] = True
        return latents, clean

    def _guided_prediction(self, model_input, per_frame_t, *, context, negative_context, control, control_scale,
                           num_refs, guidance_scale):
        """The transformer's flow prediction, with classifier-free guidance when a scale is given."""
        noise_pred = self.transformer(
            model_input, per_frame_t, context, control_latents=control, control_scale=control_scale,
            num_reference_frames=num_refs, return_dict=False,
        )[0].float()
        if guidance_scale is None:
            return noise_pred
        uncond = self.transformer(
            model_input, per_frame_t, negative_context, control_latents=control, control_scale=control_scale,
            num_reference_frames=num_refs, return_dict=False,
        )[0].float()
        return uncond + guidance_scale * (noise_pred - uncond)

    def _denoise(self, latents, clean, predict, num_inference_steps: int, shift: float, num_clean: int, *,
                 num_refs: int = 0, callback=None, should_cancel=None, schedule=None):
        """UniPC on the reference's grid; the clean latent frames (the first `num_clean`: references,
        then known frames) are put back after every step; previews leave the references out."""
        device = latents.device
        clean_latents = latents[:, :, :num_clean].clone()
        scheduler = self.scheduler.__class__.from_config(self.scheduler.config, flow_shift=float(shift))
        timesteps, sigmas = sampling_schedule(int(num_inference_steps), float(shift),
                                              int(scheduler.config.num_train_timesteps))
        scheduler.set_timesteps(num_inference_steps, device=device)  # resets the solver's state
        scheduler.timesteps = timesteps.to(device)  # the reference's grid, not the scheduler's own
        scheduler.sigmas = sigmas
        for i, t in enumerate(timesteps):
            if should_cancel is not None and should_cancel():
                raise Cancelled("generation cancelled")
            per_frame_t = torch.where(clean, torch.zeros((), device=device), t.to(device).float())[None]
            noise_pred = predict(latents.to(self.transformer.dtype), per_frame_t)
            latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]
            latents[:, :, :num_clean] = clean_latents
            if callback is not None:
                callback(i + 1, len(timesteps))
            if schedule is not None:
                schedule(i + 1, len(timesteps), latents[0, :, num_refs:])
        return latents, len(timesteps)


__all__ = ["SpatiaPipeline", "SpatiaPipelineOutput", "known_latent_frames", "padded_frame_count", "sampling_schedule"]
