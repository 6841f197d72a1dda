import numpy as np
import pytest

from spatia.cameras import Cameras
from spatia.engine.models import BoxPrompt, GenerationRequest, ModelInputError, PointPrompt, parse_prompt


def _cameras(frames, width=16, height=12):
    eye = np.stack([np.linspace(0, 1, frames), np.full(frames, -5.0), np.zeros(frames)], axis=1)
    return Cameras.look_at(eye, [0, 0, 0], width=width, height=height)


def _request(frames=3, height=12, width=16, **overrides):
    args = dict(
        prompt="a room",
        projection=np.zeros((frames, height, width, 3), np.uint8),
        projection_depth=np.ones((frames, height, width), np.float32),
        hole_mask=np.zeros((frames, height, width), bool),
        cameras=_cameras(frames, width, height),
    )
    args.update(overrides)
    return GenerationRequest(**args)


def test_parse_prompt_text_point_negative_and_box():
    assert parse_prompt(" person ") == "person"
    assert parse_prompt("point: 10.5, 20@3#2") == PointPrompt(10.5, 20.0, frame=3, positive=True, object_id=2)
    assert parse_prompt("neg:1,2") == PointPrompt(1.0, 2.0, frame=0, positive=False, object_id=1)
    assert parse_prompt("box:0,1,30,40@1") == BoxPrompt(0.0, 1.0, 30.0, 40.0, frame=1)


@pytest.mark.parametrize("bad", ["box:1,2,3", "point:1,2,3", "box:5,5,1,1", "   "])
def test_parse_prompt_rejects_malformed(bad):
    with pytest.raises(ModelInputError):
        parse_prompt(bad)


def test_generation_request_accepts_consistent_input():
    req = _request(history=np.zeros((2, 12, 16, 3), np.uint8), first_frame=np.zeros((12, 16, 3), np.uint8))
    assert req.num_frames == 3 and req.size == (12, 16)


@pytest.mark.parametrize(
    "overrides, words",
    [
        (dict(projection=np.zeros((3, 12, 16, 3), np.float32)), "projection must be uint8"),
        (dict(projection_depth=np.ones((3, 12, 16), np.float64)), "projection_depth"),
        (dict(projection_depth=np.full((3, 12, 16), -1, np.float32)), "non-negative"),
        (dict(hole_mask=np.zeros((3, 12, 16), np.uint8)), "hole_mask"),
        (dict(cameras=_cameras(4)), "cameras"),
        (dict(history=np.zeros((4, 12, 16, 3), np.uint8)), "more than the clip"),
        (dict(references=np.zeros((2, 6, 8, 3), np.uint8)), "references frames are 8x6"),
        (dict(first_frame=np.zeros((6, 8, 3), np.uint8)), "first_frame"),
        (dict(steps=0), "steps"),
    ],
)
def test_generation_request_names_the_problem(overrides, words):
    with pytest.raises(ModelInputError, match=words):
        _request(**overrides)
