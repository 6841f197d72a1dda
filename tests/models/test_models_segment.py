import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from spatia.engine.models import (
    BoxPrompt,
    ModelInputError,
    ModelUnavailable,
    PointPrompt,
    Sam2VideoSegmenter,
    Sam3VideoSegmenter,
    UserMasks,
    get_segmenter,
)
from spatia.engine.models.tiny import tiny_sam2_video

FRAMES = np.random.default_rng(0).integers(0, 256, (4, 40, 48, 3), dtype=np.uint8)


def _png(path, mask):
    Image.fromarray((mask * 255).astype(np.uint8)).save(path)
    return path


# --- user masks -------------------------------------------------------------------------------
def test_user_mask_single_png_marks_frame_zero(tmp_path):
    mask = np.zeros((40, 48), bool)
    mask[5:15, 10:20] = True
    out = UserMasks(_png(tmp_path / "mask.png", mask)).segment(FRAMES, [])
    assert out.shape == (4, 40, 48) and out.dtype == bool
    np.testing.assert_array_equal(out[0], mask)
    assert not out[1:].any()
    static = UserMasks(tmp_path / "mask.png", static=True).segment(FRAMES, [])
    assert all(np.array_equal(m, mask) for m in static)


def test_user_masks_png_per_frame_from_folder_and_list(tmp_path):
    masks = np.zeros((4, 40, 48), bool)
    for i in range(4):
        masks[i, i : i + 3, :5] = True
        _png(tmp_path / f"{i:04d}.png", masks[i])
    np.testing.assert_array_equal(UserMasks(tmp_path).segment(FRAMES, []), masks)
    files = [tmp_path / f"{i:04d}.png" for i in range(4)]
    np.testing.assert_array_equal(UserMasks(files).segment(FRAMES, []), masks)


def test_user_masks_npy_any_nonzero_is_dynamic(tmp_path):
    stack = np.zeros((4, 40, 48), np.uint8)
    stack[2, 3, 4] = 7
    np.save(tmp_path / "masks.npy", stack)
    out = UserMasks(tmp_path / "masks.npy").segment(FRAMES, [])
    assert out.sum() == 1 and out[2, 3, 4]


def test_user_masks_size_and_count_mismatch_are_clear(tmp_path):
    with pytest.raises(ModelInputError, match="masks are 30x20 but the frames are 48x40"):
        UserMasks(np.zeros((1, 20, 30), bool)).segment(FRAMES, [])
    with pytest.raises(ModelInputError, match="3 masks for 4 frames"):
        UserMasks(np.zeros((3, 40, 48), bool)).segment(FRAMES, [])
    with pytest.raises(ModelInputError, match="does not exist"):
        UserMasks(tmp_path / "missing.png")
    with pytest.raises(ModelInputError, match="no .png"):
        UserMasks(tmp_path)


# --- SAM2 video -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sam2():
    return Sam2VideoSegmenter(model=tiny_sam2_video(), device="cpu")


def test_sam2_tracks_every_frame_both_ways_from_the_prompted_frame(sam2):
    visited = []
    original = sam2.model.propagate_in_video_iterator

    def recording(*args, **kwargs):
        for output in original(*args, **kwargs):
            visited.append(output.frame_idx)
            yield output

    sam2.model.propagate_in_video_iterator = recording
    try:
        out = sam2.segment(FRAMES, ["point:10,20@2", BoxPrompt(5, 5, 30, 30, frame=2, object_id=2)])
    finally:
        del sam2.model.propagate_in_video_iterator
    assert out.shape == (4, 40, 48) and out.dtype == bool
    assert sorted(set(visited)) == [0, 1, 2, 3]


def test_sam2_is_deterministic(sam2):
    prompts = [PointPrompt(24, 20), PointPrompt(5, 5, positive=False)]
    np.testing.assert_array_equal(sam2.segment(FRAMES, prompts), sam2.segment(FRAMES, prompts))


def test_sam2_prompt_grouping_puts_box_corners_first():
    grouped = Sam2VideoSegmenter._group_prompts(
        [PointPrompt(3, 4, frame=1), BoxPrompt(1, 2, 10, 20, frame=1), PointPrompt(7, 8, frame=1, object_id=2, positive=False)],
        count=2, width=48, height=40,
    )
    assert grouped[(1, 1)] == ([[1, 2], [10, 20], [3, 4]], [2, 3, 1])
    assert grouped[(1, 2)] == ([[7, 8]], [0])


@pytest.mark.parametrize(
    "prompts, words",
    [(["person"], "not text prompts"), ([], "at least one"), ([PointPrompt(1, 1, frame=9)], "outside the 4 frames"),
     ([PointPrompt(100, 1)], "outside the 48x40 frame")],
)
def test_sam2_rejects_bad_prompts(sam2, prompts, words):
    with pytest.raises(ModelInputError, match=words):
        sam2.segment(FRAMES, prompts)


# --- SAM3 video -------------------------------------------------------------------------------
class _FakeSam3Processor:
    """Stands in for Sam3VideoProcessor: object 1 is a 'person' on even frames."""

    def init_video_session(self, video, **kwargs):
        return SimpleNamespace(frames=len(video), height=video.shape[1], width=video.shape[2], texts=[])

    def add_text_prompt(self, inference_session, text):
        inference_session.texts.extend(text)
        return inference_session

    def postprocess_outputs(self, session, output):
        masks = torch.zeros(2, session.height, session.width, dtype=torch.bool)
        if output.frame_idx % 2 == 0:
            masks[0, :5, :5] = True
            masks[1, -5:, -5:] = True
        return {"masks": masks if output.frame_idx % 2 == 0 else masks[:0]}


class _FakeSam3Model(torch.nn.Module):
    def propagate_in_video_iterator(self, inference_session, max_frame_num_to_track):
        assert inference_session.texts == ["person", "car"]
        for i in range(min(inference_session.frames, max_frame_num_to_track)):
            yield SimpleNamespace(frame_idx=i)


def test_sam3_unions_all_instances_of_all_text_prompts():
    segmenter = Sam3VideoSegmenter(model=_FakeSam3Model(), processor=_FakeSam3Processor(), device="cpu")
    out = segmenter.segment(FRAMES, ["person", "car", "person"])
    assert out.shape == (4, 40, 48) and out.dtype == bool
    assert out[0, :5, :5].all() and out[0, -5:, -5:].all() and out[0].sum() == 50
    assert not out[1].any() and out[2].sum() == 50


def test_sam3_rejects_visual_prompts_and_empty_prompts():
    segmenter = Sam3VideoSegmenter(model=_FakeSam3Model(), processor=_FakeSam3Processor(), device="cpu")
    with pytest.raises(ModelInputError, match="use the sam2 segmenter"):
        segmenter.segment(FRAMES, ["box:1,1,5,5"])
    with pytest.raises(ModelInputError, match="at least one text prompt"):
        segmenter.segment(FRAMES, [])


def test_sam3_availability_names_the_fix():
    segmenter = get_segmenter("sam3")
    assert segmenter.requirements.weights == ("facebook/sam3",)
    expected = "torchvision" if importlib.util.find_spec("torchvision") is None else "spatia models download sam3"
    with pytest.raises(ModelUnavailable, match=expected):
        segmenter.check_available()


class _LabelledSam3Processor(_FakeSam3Processor):
    """Two tracked instances: SAM3 object 0 is a person, object 4 a car (ids as SAM3 gives them)."""

    def postprocess_outputs(self, session, output):
        masks = torch.zeros(2, session.height, session.width, dtype=torch.bool)
        masks[0, :5, :5] = True
        masks[1, -5:, -5:] = True
        return {"masks": masks, "object_ids": torch.tensor([0, 4]),
                "prompt_to_obj_ids": {"person": [0], "car": [4]}}


def test_sam3_instances_keep_their_tracked_ids_and_concepts():
    segmenter = Sam3VideoSegmenter(model=_FakeSam3Model(), processor=_LabelledSam3Processor(), device="cpu")
    ids, labels = segmenter.segment_instances(FRAMES, ["person", "car"])
    assert ids.dtype == np.int32 and ids.shape == (4, 40, 48)
    assert (ids[:, :5, :5] == 1).all() and (ids[:, -5:, -5:] == 5).all() and ids[:, 10:30, 10:30].max() == 0
    assert labels == {1: "person", 5: "car"}


def test_sam2_instances_are_the_prompted_object_ids(sam2):
    prompts = ["box:2,2,20,18@0#3", "box:26,20,46,38@0#7"]
    ids, labels = sam2.segment_instances(FRAMES, prompts)
    assert ids.dtype == np.int32 and set(np.unique(ids)) <= {0, 3, 7} and labels == {}
    np.testing.assert_array_equal(ids > 0, sam2.segment(FRAMES, prompts))
