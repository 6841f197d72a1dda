"""The dashboard button and the live denoising preview in Blender, against the fake backend."""

from __future__ import annotations

import numpy as np
import pytest

from spatia_blender import payloads

from ext_fake_backend import FakeBackend
from test_ext_artist import encoded, shot_scene, snapshot, succeeding_job

pytestmark = pytest.mark.bpy


@pytest.fixture
def backend(addon):
    fake = FakeBackend({1: encoded(snapshot(200, seed=3), 1)}, voxel_size=0.1, token="s3cret")
    prefs = addon.context.preferences.addons["spatia_blender"].preferences
    prefs.backend_url, prefs.token = fake.url, "s3cret"
    yield fake
    fake.close()


def test_open_dashboard_opens_a_single_use_link_not_the_token(addon, backend, monkeypatch):
    bpy = addon
    from spatia_blender.operators import dashboard

    opened = []
    monkeypatch.setattr(dashboard, "open_in_browser", opened.append)
    assert bpy.ops.spatia.open_dashboard() == {"FINISHED"}
    assert opened == [backend.url + "/login#code=c0de"]
    assert "s3cret" not in opened[0]
    (headers,) = [h for method, path, h in backend.headers if path == "/v1/session/links"]
    assert headers["Authorization"] == "Bearer s3cret"  # the token went to the backend only


def test_open_dashboard_without_a_backend_says_so(addon, monkeypatch):
    bpy = addon
    from spatia_blender.operators import dashboard

    prefs = bpy.context.preferences.addons["spatia_blender"].preferences
    prefs.backend_url = "http://127.0.0.1:9"  # nothing listens there
    monkeypatch.setattr(dashboard, "open_in_browser", lambda url: pytest.fail("opened a browser"))
    with pytest.raises(RuntimeError, match="cannot reach"):
        bpy.ops.spatia.open_dashboard()


def test_previews_show_behind_the_camera_while_the_clip_denoises(addon, backend):
    bpy = addon
    succeeding_job(backend)
    backend.job_states = [("running", 0.3, "round 1/1: denoising step 2/8"),
                          ("running", 0.6, "round 1/1: denoising step 4/8"), ("succeeded", 1.0, "done")]
    early, late = np.zeros((6, 10, 3), np.uint8), np.zeros((6, 10, 3), np.uint8)
    early[..., 0], late[..., 2] = 200, 200
    backend.previews = [payloads.encode_png(early), payloads.encode_png(late)]
    scene, settings = shot_scene(bpy)
    assert bpy.ops.spatia.generate() == {"FINISHED"}, settings.status
    image = bpy.data.images["Spatia Preview"]
    pixels = np.array(image.pixels[:]).reshape(6, 10, 4)
    assert pixels[..., 2].min() > 0.7 and pixels[..., 0].max() < 0.1  # the newest preview, not the first
    backgrounds = [b for b in scene.camera.data.background_images if b.image == image]
    assert len(backgrounds) == 1  # one entry, reused from preview to preview
    assert not backgrounds[0].show_background_image  # the clip arrived: the preview steps aside
    assert settings.preview_note == ""
    assert backend.preview_polls == 2
