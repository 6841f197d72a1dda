"""`spatia` behind the VideoGenerator interface: Wan2.2-TI2V-5B + the Spatia control branch + LoRA.

Per request:
- round 0 (no history): image-to-video from `first_frame` (its latent held clean, TI2V style),
  LoRA off; later rounds: the history frames' latents held clean, LoRA on (scale 1, as the
  reference); retrieved reference frames prepended as clean latent frames.
- the control video is the one the control branch was trained on: the memory's points (the
  request's `points_xyz` / `points_rgb`) voxel-downsampled at 0.01 + 0.005 x round index and
  rendered as the authors' soft disks (`spatia.engine.render.render_control`); its score video is the
  soft coverage. Frames go through uint8 and, with `video_round_trip` (default, the reference's
  faithful input), through the same lossy H.264 mp4 write and read as the reference's videos
  (libx264, yuv420p, CRF 25); the model was trained on those. A request without points
  falls back to the z-buffer projection and its binary hole mask (recorded in the info: not
  the trained input).
- F frames of any count: padded to 4k+1 by repeating the last frame, cropped after decoding
  (the world pads a short round to the full round length first, as the reference).
- Steps and guidance come from the request when it sets them, else Spatia's 40 and 3.5; the
  sampler runs the reference's timestep grid (`pipeline.sampling_schedule`).

What comes back for known frames: the history latents are exactly the encoded history in the
output latents; their decoded pixels are a VAE round trip of the history. With
`pin_known_frames` (default) the returned frames are overwritten with the caller's own history
frames (or the first image in round 0), so they come back bit-identical; the world keeps the
previous clip's frames for the overlap in any case.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..base import (
    CancelFn,
    GenerationRequest,
    GenerationResult,
    ModelRequirements,
    PreviewFn,
    ProgressFn,
    preview_every,
    report,
)
from ..gpu import DiffusersGenerator, RuntimeOptions, out_of_memory_as_unavailable
from ..imaging import reference_canvases
from ..loading import require_modules
from ..registry import get_preset, require_weights
from .config import (
    DEFAULT_CONTROL_SCALE,
    DEFAULT_GUIDANCE,
    DEFAULT_LORA_SCALE,
    DEFAULT_SHIFT,
    DEFAULT_HEIGHT,
    DEFAULT_STEPS,
    DEFAULT_WIDTH,
    FIRST_ROUND_FRAMES,
    NEGATIVE_PROMPT,
    PROMPT_SUFFIX,
    ROUND_FRAMES,
)

# Progress fractions: conditioning encode, denoising steps, decode.
_DENOISE_START, _DENOISE_END = 0.05, 0.95


def out_of_distribution(request: GenerationRequest, continuation: bool) -> list[str]:
    """How a request leaves what spatia-5b was trained on (size, round length); empty when it does not."""
    reasons = []
    height, width = request.size
    if (width, height) != (DEFAULT_WIDTH, DEFAULT_HEIGHT):
        reasons.append(f"size {width}x{height} (trained at {DEFAULT_WIDTH}x{DEFAULT_HEIGHT})")
    trained_frames = ROUND_FRAMES if continuation else FIRST_ROUND_FRAMES
    if request.num_frames != trained_frames:
        kind = "continuation" if continuation else "first"
        reasons.append(f"{request.num_frames} frames in a {kind} round (trained: {trained_frames})")
    return reasons


def video_round_trip(video: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The control video and score after the reference's H.264 round trip (`h264_round_trip`):
    the score is written as the reference renders it (white where points cover, black in holes)
    and inverted after reading, so it comes back as uint8 [F,H,W,3] with 255 = hole."""
    from spatia.formats.video import h264_round_trip

    covered = np.repeat((255 - np.asarray(score, dtype=np.uint8))[..., None], 3, axis=-1)
    return h264_round_trip(video), 255 - h264_round_trip(covered)


def control_inputs(request: GenerationRequest, device=None, *, round_trip: bool = False) -> tuple[np.ndarray, np.ndarray, dict]:
    """(control video uint8 [F,H,W,3], score uint8 [F,H,W] or hole mask bool [F,H,W], info) for a request.
    round_trip: both videos go through the reference's lossy H.264 round trip (the score then
    comes back as uint8 [F,H,W,3]), as the model was trained on them."""
    if request.points_xyz is None:
        return request.projection, request.hole_mask, {"control": "z-buffer projection (not the trained input)"}
    from spatia.engine.render_control import control_voxel_size, render_control, voxel_downsample

    voxel = control_voxel_size(request.round_index)
    xyz, rgb = request.points_xyz, request.points_rgb
    if len(xyz):
        xyz, rgb = voxel_downsample(xyz, rgb, voxel)
    rendered = render_control(xyz, rgb, request.cameras, device=device)
    video, score = rendered.to_uint8()
    # remembered moving objects at their predicted poses join the memory's points in their frames
    with_objects = [i for i, p in enumerate(request.frame_points_xyz or ()) if len(p)]
    if with_objects:
        import torch

        base_xyz = torch.as_tensor(xyz, dtype=torch.float32).cpu()
        base_rgb = rgb.float().cpu() if isinstance(rgb, torch.Tensor) else torch.as_tensor(rgb).float() / 255
    for i in with_objects:
        both = render_control(torch.cat([base_xyz, torch.as_tensor(request.frame_points_xyz[i])]),
                              torch.cat([base_rgb, torch.as_tensor(request.frame_points_rgb[i]).float() / 255]),
                              request.cameras[i:i + 1], device=device)
        video[i], score[i] = (a[0] for a in both.to_uint8())
    if round_trip:
        video, score = video_round_trip(video, score)
    return video, score, {"control": "render_control", "control_voxel_size": voxel, "control_points": int(len(xyz)),
                          "control_object_frames": len(with_objects), "control_round_trip": bool(round_trip)}


MAX_REFERENCES = 7  # reference frames per clip, as trained


def with_object_references(request: GenerationRequest) -> np.ndarray | None:
    """The retrieved frames, then remembered objects' crops (centred on white frames) in the
    reference slots still free."""
    refs = request.references
    crops = request.object_references
    free = MAX_REFERENCES - (0 if refs is None else len(refs))
    if crops is None or not len(crops) or free <= 0:
        return refs
    height, width = request.size
    canvases = reference_canvases(crops[:free], height, width)
    return canvases if refs is None else np.concatenate([refs, canvases])


class SpatiaGenerator(DiffusersGenerator):
    """The paper's model. Weights load lazily on first use from local folders (`spatia models
    download spatia-5b`), or pass a ready `pipeline` (and its `lora`) as the tests do."""

    name = "spatia-5b"
    supports_preview = True
    pads_short_rounds = True  # trained on full rounds: the world pads a short last round (reference)
    retrieval_scoring = "reference"  # its reference frames are chosen as in training (see spatia.engine.retrieval)

    def __init__(
        self,
        preset: str = "spatia-5b",
        *,
        pipeline=None,
        lora=None,
        base_dir: str | Path | None = None,
        spatia_dir: str | Path | None = None,
        control_path: str | Path | None = None,
        lora_path: str | Path | None = None,
        runtime: RuntimeOptions | None = None,
        steps: int = DEFAULT_STEPS,
        guidance: float = DEFAULT_GUIDANCE,
        shift: float = DEFAULT_SHIFT,
        control_scale: float = DEFAULT_CONTROL_SCALE,
        lora_scale: float = DEFAULT_LORA_SCALE,
        prompt_suffix: str = PROMPT_SUFFIX,
        negative_prompt: str = NEGATIVE_PROMPT,
        pin_known_frames: bool = True,
        video_round_trip: bool = True,
    ):
        self.preset = get_preset(preset)
        self.name = self.preset.name
        self._setup_pipeline(pipeline, runtime)
        self.base_dir = Path(base_dir) if base_dir else None
        self.spatia_dir = Path(spatia_dir) if spatia_dir else None
        self.control_path = Path(control_path) if control_path else None
        self.lora_path = Path(lora_path) if lora_path else None
        self.steps, self.guidance, self.shift = steps, guidance, shift
        self.control_scale, self.lora_scale = control_scale, lora_scale
        self.prompt_suffix, self.negative_prompt = prompt_suffix, negative_prompt
        self.pin_known_frames = pin_known_frames
        self.video_round_trip = video_round_trip  # the reference's H.264 round trip of the control videos
        self._lora = lora

    @property
    def requirements(self) -> ModelRequirements:
        return ModelRequirements(needs_gpu=True, weights=self.preset.repo_ids, min_vram_gb=self.preset.vram_gb)

    def check_available(self) -> None:
        if self._pipe is not None:
            return
        require_modules(self.name, ("diffusers", "transformers", "accelerate", "safetensors"))
        self._require_gpu(
            f"{self.name} needs a CUDA GPU with about {self.preset.vram_gb:.0f} GB (or lower with "
            "vram_mode='model'/'group'); none is available here. Use the 'preview' generator on this machine."
        )
        if self.base_dir is None or (self.spatia_dir is None and self.control_path is None):
            require_weights(self.preset)

    def _load(self):
        from .loading import load_spatia_pipeline

        base_dir, spatia_dir = self.base_dir, self.spatia_dir
        if base_dir is None or (spatia_dir is None and self.control_path is None):
            base_dir, spatia_dir = require_weights(self.preset)
        pipe, self._lora = load_spatia_pipeline(
            base_dir, spatia_dir, control_path=self.control_path, lora_path=self.lora_path,
            lora_scale=self.lora_scale, dtype=self.runtime.resolved_dtype(),
        )
        return pipe

    def generate(
        self,
        request: GenerationRequest,
        progress: ProgressFn | None = None,
        should_cancel: CancelFn | None = None,
        preview: PreviewFn | None = None,
    ) -> GenerationResult:
        """`preview`: live RGB previews of the latent while it denoises (see `latent_preview`)."""
        self.check_available()
        report(progress, 0.0, "loading model")
        pipe = self._pipeline()
        continuation = request.history is not None and len(request.history) > 0
        if self._lora is not None:
            self._lora.enabled = continuation
            self._lora.scale = self.lora_scale
        steps = request.steps if request.steps is not None else self.steps
        guidance = request.guidance if request.guidance is not None else self.guidance

        def on_step(done: int, total: int) -> None:
            report(progress, _DENOISE_START + (_DENOISE_END - _DENOISE_START) * done / total, f"denoising step {done}/{total}")

        report(progress, 0.01, "rendering the control video")
        render_device = self.runtime.resolved_device() if self.runtime.resolved_device().type == "cuda" else None
        control_video, control_score, control_info = control_inputs(request, render_device,
                                                                    round_trip=self.video_round_trip)
        report(progress, 0.03, "encoding prompt and conditions")
        with out_of_memory_as_unavailable(self.runtime, "generation"):
            output = pipe(
                request.prompt + self.prompt_suffix,
                control_video,
                control_score,
                negative_prompt=request.negative_prompt or self.negative_prompt,
                history=request.history if continuation else None,
                references=with_object_references(request),
                first_frame=None if continuation else request.first_frame,
                num_inference_steps=steps,
                guidance_scale=guidance,
                shift=self.shift,
                control_scale=self.control_scale,
                seed=request.seed,
                callback=on_step,
                should_cancel=should_cancel,
                preview=preview,
                preview_every=preview_every(preview),
            )
        frames = output.frames
        if self.pin_known_frames:
            frames = frames.copy()
            if continuation:
                frames[: len(request.history)] = request.history
            elif request.first_frame is not None:
                frames[0] = request.first_frame
        report(progress, 1.0, "done")
        return GenerationResult(
            frames=np.ascontiguousarray(frames),
            info={
                "generator": self.name,
                "steps": steps,
                "guidance": guidance,
                "shift": self.shift,
                "seed": request.seed,
                "lora": bool(self._lora is not None and continuation),
                "mode": "continuation" if continuation else "image-to-video",
                **control_info,
                "out_of_distribution": out_of_distribution(request, continuation),
                **output.info,
            },
        )


__all__ = ["SpatiaGenerator", "control_inputs", "video_round_trip"]
