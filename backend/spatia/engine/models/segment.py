"""Dynamic-entity masks: user-supplied files, SAM2 video (clicks/boxes), SAM3 video (text).

Every segmenter returns bool [F,H,W], True where a pixel shows something that moves (people,
cars, animals) and so must never be fused into the static spatial memory; `segment_instances`
also says which entity each such pixel belongs to (int32 ids stable through the clip, labels),
which the object memory tracks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .base import (
    BoxPrompt,
    ModelInputError,
    ModelRequirements,
    PointPrompt,
    Prompt,
    Segmenter,
    check_images,
    parse_prompt,
)
from .imaging import IMAGENET_MEAN, IMAGENET_STD, images_to_tensor, normalize, resize
from .loading import PretrainedAdapter

TORCHVISION_INSTALL = "pip install torchvision (the build that matches your torch)"


def _typed(prompts: Sequence[Prompt]) -> list[Prompt]:
    return [parse_prompt(p) if isinstance(p, str) else p for p in prompts]


# --- user masks -------------------------------------------------------------------------------
def _read_png_mask(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("L")) != 0


def load_mask_stack(source: str | Path | Sequence[str | Path] | np.ndarray) -> np.ndarray:
    """Masks from an array, a .npy [N,H,W] or [H,W], one PNG, a folder of PNGs (sorted by
    name) or a list of PNGs -> bool [N,H,W]; any non-zero value marks a dynamic pixel."""
    if isinstance(source, np.ndarray):
        stack = source
    elif isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if path.is_dir():
            files = sorted(path.glob("*.png"))
            if not files:
                raise ModelInputError(f"mask folder {path} holds no .png files")
            stack = np.stack([_read_png_mask(f) for f in files])
        elif not path.is_file():
            raise ModelInputError(f"mask file {path} does not exist")
        elif path.suffix.lower() == ".npy":
            stack = np.load(path, allow_pickle=False)
        elif path.suffix.lower() == ".png":
            stack = _read_png_mask(path)
        else:
            raise ModelInputError(f"mask file {path} must be .png or .npy")
    else:
        masks = [_read_png_mask(Path(p).expanduser()) for p in source]
        shapes = {m.shape for m in masks}
        if len(shapes) > 1:
            raise ModelInputError(f"mask PNGs have different sizes: {sorted(shapes)}")
        stack = np.stack(masks)
    stack = np.asarray(stack)
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3 or len(stack) == 0:
        raise ModelInputError(f"masks must be [N, H, W] or [H, W], got shape {list(stack.shape)}")
    return stack != 0


def instance_ids(stack: np.ndarray) -> np.ndarray | None:
    """An integer mask stack read as instance ids (int32, 0 = static), or None for a plain
    on/off mask (bool, or values 0 and 255 / 0 and 1 only)."""
    stack = np.asarray(stack)
    if not np.issubdtype(stack.dtype, np.integer) or np.setdiff1d(np.unique(stack), [0, 1, 255]).size == 0:
        return None
    if stack.min() < 0 or stack.max() > np.iinfo(np.int32).max:
        raise ModelInputError(f"instance masks must hold ids in 0..{np.iinfo(np.int32).max}")
    return stack.astype(np.int32)


class UserMasks(Segmenter):
    """Masks the user drew, in the reference test-case format (mask.png or .npy [N,H,W]).

    N == F gives one mask per frame. A single mask belongs to frame 0 (the first frame of round
    0, as the reference's mask.png), unless `static=True`, which applies it to every frame.
    Prompts are ignored: the masks are the prompt.
    """

    name = "user-masks"

    def __init__(self, source: str | Path | Sequence[str | Path] | np.ndarray, *, static: bool = False):
        is_npy = isinstance(source, (str, Path)) and str(source).lower().endswith(".npy") and Path(source).expanduser().is_file()
        raw = np.load(Path(source).expanduser(), allow_pickle=False) if is_npy else source  # read once
        self.masks = load_mask_stack(raw)
        self.instances = instance_ids(raw.reshape(self.masks.shape)) if isinstance(raw, np.ndarray) else None
        self.static = static

    @property
    def requirements(self) -> ModelRequirements:
        return ModelRequirements()

    def check_available(self) -> None:
        return None

    def segment(self, frames: np.ndarray, prompts: Sequence[Prompt] = ()) -> np.ndarray:
        return self._per_frame(self.masks, frames)

    def segment_instances(self, frames: np.ndarray, prompts: Sequence[Prompt] = ()) -> tuple[np.ndarray, dict[int, str]]:
        """An integer .npy labels instances itself; an on/off mask is split into components."""
        if self.instances is None:
            return super().segment_instances(frames, prompts)
        return self._per_frame(self.instances, frames), {}

    def _per_frame(self, masks: np.ndarray, frames: np.ndarray) -> np.ndarray:
        frames = check_images(frames, "frames")
        count, height, width = frames.shape[:3]
        n, mh, mw = masks.shape
        if (mh, mw) != (height, width):
            raise ModelInputError(f"masks are {mw}x{mh} but the frames are {width}x{height}; they must match")
        if n == count:
            return masks.copy()
        if n == 1:
            out = np.zeros((count, height, width), dtype=masks.dtype)
            if self.static:
                out[:] = masks[0]
            else:
                out[0] = masks[0]
            return out
        raise ModelInputError(f"{n} masks for {count} frames: give one mask per frame, or a single mask")


# --- SAM2 video -------------------------------------------------------------------------------
class Sam2VideoSegmenter(PretrainedAdapter, Segmenter):
    """SAM2 video (transformers Sam2VideoModel) tracking objects marked by clicks and boxes.

    Prompts: PointPrompt / BoxPrompt, or their string forms ("point:x,y@frame#object",
    "neg:x,y@frame", "box:x0,y0,x1,y1@frame#object"), in continuous pixels of the frames.
    Frames are preprocessed as Sam2VideoVideoProcessor does (square resize, ImageNet
    normalisation), batched in torch; tracking runs forward from the first prompted frame and
    backward to frame 0 when prompts start later.
    """

    default_preset = "sam2"

    def _load(self, folder: Path):
        from transformers import Sam2VideoModel

        return Sam2VideoModel.from_pretrained(folder, local_files_only=True)

    def segment(self, frames: np.ndarray, prompts: Sequence[Prompt]) -> np.ndarray:
        return self.segment_instances(frames, prompts)[0] > 0

    @torch.inference_mode()
    def segment_instances(self, frames: np.ndarray, prompts: Sequence[Prompt]) -> tuple[np.ndarray, dict[int, str]]:
        """Each prompted object id is one instance (the id itself); a pixel claimed by two goes to
        the more confident."""
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

        frames = check_images(frames, "frames")
        count, height, width = frames.shape[:3]
        inputs = self._group_prompts(_typed(prompts), count, width, height)
        model = self.model
        size = int(model.config.image_size)
        pixels = resize(images_to_tensor(frames, self.device, self.dtype), (size, size))
        pixels = normalize(pixels, IMAGENET_MEAN, IMAGENET_STD)
        session = Sam2VideoInferenceSession(
            video=pixels, video_height=height, video_width=width, inference_device=self.device,
            inference_state_device=self.device, video_storage_device=self.device, dtype=self.dtype,
        )
        scale = torch.tensor([size / width, size / height], dtype=torch.float32)
        for (frame, object_id), (coords, labels) in inputs.items():
            # SAM's prompt encoder adds half a pixel: it expects pixel indices, not continuous coordinates.
            points = (torch.tensor(coords, dtype=torch.float32) * scale - 0.5)[None, None]
            session.add_point_inputs(
                session.obj_id_to_idx(object_id), frame,
                {"point_coords": points.to(self.device), "point_labels": torch.tensor([[labels]], dtype=torch.int32, device=self.device)},
            )
        session.obj_with_new_inputs = sorted({obj for _, obj in inputs})
        instances = np.zeros((count, height, width), dtype=np.int32)
        start = min(frame for frame, _ in inputs)
        for reverse in (False, True):
            if reverse and start == 0:
                break
            for output in model.propagate_in_video_iterator(session, start_frame_idx=start, reverse=reverse):
                logits = resize(output.pred_masks.float(), (height, width)).amax(dim=1)  # [objects, H, W]
                ids = torch.as_tensor(list(output.object_ids or session.obj_ids), dtype=torch.int32)
                best, which = logits.max(dim=0)
                instances[output.frame_idx] = torch.where(best > 0, ids[which], 0).cpu().numpy()
        return instances, {}

    @staticmethod
    def _group_prompts(prompts: list[Prompt], count: int, width: int, height: int) -> dict[tuple[int, int], tuple[list, list]]:
        """(frame, object) -> (coords, labels) with a box first as SAM's two corner labels 2 and 3."""
        text = [p for p in prompts if isinstance(p, str)]
        if text:
            raise ModelInputError(f"SAM2 takes clicks and boxes, not text prompts ({text}); use the sam3 segmenter for text")
        if not prompts:
            raise ModelInputError("SAM2 needs at least one click or box prompt")
        grouped: dict[tuple[int, int], tuple[list, list]] = defaultdict(lambda: ([], []))
        for p in sorted(prompts, key=lambda p: not isinstance(p, BoxPrompt)):
            if not 0 <= p.frame < count:
                raise ModelInputError(f"prompt {p} is on frame {p.frame}, outside the {count} frames")
            coords, labels = grouped[(p.frame, p.object_id)]
            if isinstance(p, BoxPrompt):
                if labels and 2 in labels:
                    raise ModelInputError(f"object {p.object_id} has two boxes on frame {p.frame}; give one")
                coords += [[p.x0, p.y0], [p.x1, p.y1]]
                labels += [2, 3]
            elif isinstance(p, PointPrompt):
                if not (0 <= p.x <= width and 0 <= p.y <= height):
                    raise ModelInputError(f"click {p} is outside the {width}x{height} frame")
                coords.append([p.x, p.y])
                labels.append(1 if p.positive else 0)
        return dict(grouped)


# --- SAM3 video -------------------------------------------------------------------------------
class Sam3VideoSegmenter(PretrainedAdapter, Segmenter):
    """SAM3 video (transformers Sam3VideoModel + Sam3VideoProcessor): every instance of each
    text concept ("person", "car", "dog"), tracked through the clip; the union is dynamic.

    transformers' SAM3 model and processor need torchvision.
    """

    default_preset = "sam3"
    required_modules = ("transformers", "torchvision")
    install_hint = TORCHVISION_INSTALL

    def __init__(self, preset: str | None = None, *, processor=None, **kwargs):
        super().__init__(preset, **kwargs)
        self._processor = processor

    def _load(self, folder: Path):
        from transformers import Sam3VideoModel, Sam3VideoProcessor

        if self._processor is None:
            self._processor = Sam3VideoProcessor.from_pretrained(folder, local_files_only=True)
        return Sam3VideoModel.from_pretrained(folder, local_files_only=True)

    @property
    def processor(self):
        self.model  # loads the processor with the model
        if self._processor is None:
            raise ModelInputError("a SAM3 model was given without its Sam3VideoProcessor")
        return self._processor

    def segment(self, frames: np.ndarray, prompts: Sequence[Prompt]) -> np.ndarray:
        return self.segment_instances(frames, prompts)[0] > 0

    @torch.inference_mode()
    def segment_instances(self, frames: np.ndarray, prompts: Sequence[Prompt]) -> tuple[np.ndarray, dict[int, str]]:
        """Every tracked instance of every concept, with its concept as label (SAM3 keeps an
        instance's id through the clip)."""
        frames = check_images(frames, "frames")
        texts = self._text_prompts(_typed(prompts))
        count, height, width = frames.shape[:3]
        model, processor = self.model, self.processor
        session = processor.init_video_session(
            video=frames, inference_device=self.device, processing_device=self.device,
            video_storage_device=self.device, dtype=self.dtype,
        )
        processor.add_text_prompt(inference_session=session, text=texts)
        instances = np.zeros((count, height, width), dtype=np.int32)
        labels: dict[int, str] = {}
        for output in model.propagate_in_video_iterator(inference_session=session, max_frame_num_to_track=count):
            post = processor.postprocess_outputs(session, output)
            found = torch.as_tensor(post["masks"]).bool().cpu()
            ids = [int(i) + 1 for i in post.get("object_ids", range(len(found)))]  # 0 is static
            for prompt, members in (post.get("prompt_to_obj_ids") or {}).items():
                labels.update({int(i) + 1: str(prompt) for i in members})
            frame = instances[output.frame_idx]
            for k, mask in zip(ids, found.numpy()):
                frame[mask & (frame == 0)] = k
        return instances, labels

    @staticmethod
    def _text_prompts(prompts: list[Prompt]) -> list[str]:
        visual = [p for p in prompts if not isinstance(p, str)]
        if visual:
            raise ModelInputError(f"SAM3 video here takes text prompts; use the sam2 segmenter for clicks and boxes ({visual})")
        if not prompts:
            raise ModelInputError("SAM3 needs at least one text prompt, e.g. \"person\"")
        return list(dict.fromkeys(prompts))  # de-duplicated, order kept
