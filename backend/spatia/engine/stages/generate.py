"""Generate: one clip from the conditioning, the history, the references and the prompt."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from spatia.cameras import Cameras
from spatia.engine.errors import WorldError
from spatia.engine.memory import SpatialMemory
from spatia.engine.memory_map import map_points
from spatia.engine.models.base import GenerationRequest, GenerationResult, VideoGenerator
from spatia.engine.objects import frame_points, in_view
from spatia.engine.plan import Round

from .condition import Conditioning


@dataclass(frozen=True, eq=False)
class Generated:
    """The clip's frames (uint8 [F,H,W,3], cropped to the round), the generator's result (its
    depth cropped too) and the request it was given."""

    frames: np.ndarray
    result: GenerationResult
    request: GenerationRequest


def padding(rnd: Round, generator: VideoGenerator) -> np.ndarray:
    """Frame indices of the request: a model trained on full rounds gets a short last round
    padded with its last camera (the reference); the frames past the round are cropped after."""
    pad = rnd.padding if getattr(generator, "pads_short_rounds", False) else 0
    return np.concatenate([np.arange(rnd.frames), np.full(pad, rnd.frames - 1)]).astype(np.int64)


def make_request(rnd: Round, cameras: Cameras, conditioning: Conditioning, memory: SpatialMemory, *,
                 frame_index: np.ndarray, prompt: str, negative_prompt: str, history: np.ndarray | None,
                 references: np.ndarray | None, first_frame: np.ndarray | None, fps: float, seed: int,
                 steps: int | None, guidance: float | None, round_index: int) -> GenerationRequest:
    """The generator's request: the conditioning along `frame_index` (the round, padded), the
    memory's points (averaged per 1 cm, as the reference's map build) for generators that render
    their own control video, the objects' points
    per frame and the crops of the objects offered as references."""
    pick = (lambda a: a[frame_index]) if len(frame_index) != rnd.frames else (lambda a: a)
    frame_xyz = frame_rgb = object_references = None
    objects, paths = conditioning.objects, conditioning.paths
    if conditioning.conditioned:
        frame_xyz, frame_rgb = frame_points(conditioning.conditioned, paths, cameras, objects.up)
        frame_xyz, frame_rgb = [frame_xyz[i] for i in frame_index], [frame_rgb[i] for i in frame_index]
    if objects is not None:
        crops = [o.best_crop().on_white() for o in objects.objects
                 if o.reference and o.crops and in_view(o, paths[o.id], cameras, objects.up).any()]
        object_references = np.stack(crops) if crops else None
    map_xyz, map_rgb = map_points(memory)  # the memory as the reference's map build leaves it
    return GenerationRequest(
        prompt=prompt, negative_prompt=negative_prompt, projection=pick(conditioning.rgb),
        projection_depth=pick(conditioning.depth), hole_mask=pick(conditioning.hole), history=history,
        references=references, first_frame=first_frame, cameras=pick(cameras), fps=fps, seed=seed,
        steps=steps, guidance=guidance, points_xyz=map_xyz, points_rgb=map_rgb, round_index=round_index,
        frame_points_xyz=frame_xyz,
        frame_points_rgb=frame_rgb, object_references=object_references, start_frame=rnd.start,
    )


def generate(generator: VideoGenerator, request: GenerationRequest, rnd: Round, size: tuple[int, int], *,
             progress=None, should_cancel=None) -> Generated:
    """Run the generator; check the clip's shape (size = (height, width)) and crop the padding."""
    result = generator.generate(request, progress=progress, should_cancel=should_cancel)
    frames = result.frames
    expected = (request.num_frames, *size, 3)
    if frames.shape != expected:
        raise WorldError(f"generator returned frames of shape {list(frames.shape)}, expected {list(expected)}")
    if len(frames) > rnd.frames:
        frames = frames[: rnd.frames]
        if result.depth is not None:
            result = replace(result, depth=result.depth[: rnd.frames])
    return Generated(frames, result, request)
