"""The presets folder: every file validates, the extension reads the same names, camera paths
make sane keyframes, model presets match the registry, VRAM presets pick sensible modes."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from spatia.formats import presets as P

from spatia_blender import presets as ext

ROOT = Path(__file__).resolve().parents[1] / "presets"


@pytest.fixture(scope="module")
def loaded():
    return P.load_presets(ROOT)


def test_every_file_validates_and_is_plain_json(loaded):
    files = sorted(ROOT.rglob("*.json"))
    assert len(files) == len(loaded.cameras) + len(loaded.quality) + len(loaded.models) + 1  # + vram.json
    for path in files:
        json.loads(path.read_text(encoding="utf-8"))
    assert set(loaded.cameras) == {"orbit", "dolly_in", "dolly_out", "truck", "pedestal", "pan", "tilt",
                                   "walk_through", "look_away_and_back"}
    assert set(loaded.quality) == {"draft", "standard", "final"}
    assert set(loaded.models) == {"spatia-5b", "wan-vace-1.3b", "wan-vace-14b", "preview"}
    assert [name for name in loaded.vram] == ["auto", "8gb", "12gb", "16gb", "24gb", "48gb", "80gb"]


def test_built_in_ids_keep_the_extension_defaults(loaded):
    """Files override the extension's built-in paths by id: the same motion, more metadata."""
    for key, builtin in ext.BUILTIN_CAMERA_PATHS.items():
        preset = loaded.cameras[key].as_dict()
        assert {k: preset.get(k) for k in ("type", "degrees", "distance")} == \
            {k: builtin.get(k) for k in ("type", "degrees", "distance")}, key


def test_extension_reads_the_same_names(loaded):
    for kind, table in (("generator", loaded.models), ("quality", loaded.quality), ("vram", loaded.vram)):
        names = [item[0] for item in ext.preset_items(kind, ROOT)]
        assert sorted(names) == sorted(table), kind
    assert [item[0] for item in ext.preset_items("quality", ROOT)][0] == "standard"  # the shot spec's default first
    assert [item[0] for item in ext.preset_items("vram", ROOT)][0] == "auto"
    labels = {item[0]: item[1] for item in ext.preset_items("vram", ROOT)}
    assert labels["24gb"] == "24 GB"
    cameras = ext.camera_presets(ROOT)
    for key, preset in loaded.cameras.items():
        assert cameras[key] == json.loads((ROOT / "cameras" / f"{key}.json").read_text())
        assert cameras[key]["name"] == preset.name


def test_models_match_the_registry(loaded):
    from spatia.engine.models.registry import PRESETS

    for name, info in loaded.models.items():
        registry = PRESETS[name]
        assert registry.role == "generator"
        assert list(registry.repo_ids) == info.weights
        assert registry.vram_gb == info.vram_gb
        assert info.needs_gpu == bool(registry.sources)


def test_quality_final_is_the_spatia_reference(loaded):
    from spatia.engine.models.spatia import config

    final = P.quality("final", ROOT)
    assert (final.width, final.height) == (config.DEFAULT_WIDTH, config.DEFAULT_HEIGHT)
    assert final.steps == config.DEFAULT_STEPS and final.guidance == config.DEFAULT_GUIDANCE
    assert (final.first_round_frames, final.round_frames, final.overlap) == (
        config.FIRST_ROUND_FRAMES, config.ROUND_FRAMES, config.HISTORY_FRAMES)
    steps = [P.quality(name, ROOT).steps for name in ("draft", "standard", "final")]
    pixels = [P.quality(name, ROOT).width * P.quality(name, ROOT).height for name in ("draft", "standard", "final")]
    assert steps == sorted(steps) and pixels == sorted(pixels) and len(set(steps)) == 3
    for preset in loaded.quality.values():  # Wan's VAE packs 4 frames per latent: 4k + 1 frames
        assert preset.first_round_frames % 4 == 1 and preset.round_frames % 4 == 1


def _base():
    """A camera 1.5 m up at (1, -2), looking along +y (Blender: camera looks down its -z)."""
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2] = (1, 0, 0), (0, 0, 1), (0, -1, 0)
    m[:3, 3] = (1.0, -2.0, 1.5)
    return m


def _forward(m):
    return -m[:3, 2]


@pytest.mark.parametrize("key", ["orbit", "dolly_in", "dolly_out", "truck", "pedestal", "pan", "tilt",
                                 "walk_through", "look_away_and_back"])
def test_camera_paths_make_sane_keyframes(loaded, key):
    preset = ext.camera_presets(ROOT)[key]
    base = _base()
    frames = loaded.cameras[key].frames(24.0)
    assert frames == round(loaded.cameras[key].duration_s * 24)
    mats = ext.camera_path(preset, base, frames)
    assert len(mats) == frames
    np.testing.assert_allclose(mats[0], base, atol=1e-9)
    for m in mats:
        rot = m[:3, :3]
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(rot) == pytest.approx(1.0)
        np.testing.assert_allclose(m[3], [0, 0, 0, 1])
    centres = np.array([m[:3, 3] for m in mats])
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    angles = [math.degrees(math.acos(np.clip(_forward(a) @ _forward(b), -1, 1))) for a, b in zip(mats, mats[1:])]
    assert max(angles) < 10.0 and steps.max() < 0.5  # smooth: no jumps between frames
    moved = centres[-1] - centres[0]
    turned = math.degrees(math.atan2(np.cross(_forward(mats[0]), _forward(mats[-1]))[2], _forward(mats[0]) @ _forward(mats[-1])))
    up = _forward(mats[-1])[2]
    if key == "dolly_in":
        np.testing.assert_allclose(moved, [0, 2.0, 0], atol=1e-6)
    elif key == "dolly_out":
        np.testing.assert_allclose(moved, [0, -2.0, 0], atol=1e-6)
    elif key == "truck":
        np.testing.assert_allclose(moved, [1.5, 0, 0], atol=1e-6)
    elif key == "pedestal":
        np.testing.assert_allclose(moved, [0, 0, 1.0], atol=1e-6)
    elif key == "tilt":
        np.testing.assert_allclose(moved, 0, atol=1e-9)
        assert math.degrees(math.asin(up)) == pytest.approx(25.0, abs=1e-6)
    elif key == "pan":
        np.testing.assert_allclose(moved, 0, atol=1e-9)
        assert turned == pytest.approx(-60.0, abs=1e-6)  # to the right
    elif key == "walk_through":
        assert np.linalg.norm(moved) == pytest.approx(3.73, abs=0.02)  # 4 m along a path with a 45-degree bend
        assert turned == pytest.approx(45.0, abs=1e-6) and moved[0] < -1.0 and moved[1] > 3.0  # ahead, then left
        assert abs(moved[2]) < 1e-9  # along the ground
    elif key == "orbit":
        pivot = base[:3, 3] + _forward(base) * 3.0
        np.testing.assert_allclose(np.linalg.norm(centres - pivot, axis=1), 3.0, atol=1e-9)
        for m in mats:  # always looking at the pivot
            to_pivot = (pivot - m[:3, 3]) / 3.0
            np.testing.assert_allclose(_forward(m), to_pivot, atol=1e-9)
        assert sum(angles) == pytest.approx(360.0, abs=1e-6)  # the full circle, back where it began
        np.testing.assert_allclose(mats[-1], mats[0], atol=1e-9)
    elif key == "look_away_and_back":
        np.testing.assert_allclose(mats[-1], mats[0], atol=1e-9)
        assert loaded.cameras[key].closed_loop
        assert max(abs(math.degrees(math.atan2(np.cross(_forward(mats[0]), _forward(m))[2], _forward(mats[0]) @ _forward(m))))
                   for m in mats) == pytest.approx(70.0, abs=0.5)
    if loaded.cameras[key].closed_loop:
        np.testing.assert_allclose(mats[-1], mats[0], atol=1e-9)
    if loaded.cameras[key].parameters.get("easing") == "ease_in_out" and key != "tilt":
        assert steps[0] < 0.5 * steps[len(steps) // 2]  # starts gently


def test_camera_keys_follow_the_easing():
    linear = P.camera_keys("truck", distance=1.0, easing="linear", samples=5)
    assert [k["offset"][0] for k in linear] == [0.0, 0.25, 0.5, 0.75, 1.0]
    eased = P.camera_keys("truck", distance=1.0, easing="ease_in_out", samples=5)
    assert [k["offset"][0] for k in eased] == [0.0, 0.15625, 0.5, 0.84375, 1.0]
    assert P.camera_keys("pan", degrees=30, easing="ease_out", samples=3)[1]["yaw"] == 22.5
    with pytest.raises(ValueError, match="unknown easing 'bouncy'"):
        P.camera_keys("truck", distance=1.0, easing="bouncy")
    with pytest.raises(ValueError, match="unknown motion 'zoom'"):
        P.camera_keys("zoom")


def test_vram_modes_fit_the_card(loaded):
    from spatia.engine.models.gpu import VRAM_MODES, RuntimeOptions

    assert P.VRAM_MODES == VRAM_MODES
    assert P.vram_preset_for(23.99, ROOT).name == "24gb"  # a 24 GB card reports a little less
    assert P.vram_preset_for(79.1, ROOT).name == "80gb"
    assert P.vram_preset_for(139.8, ROOT).name == "80gb"
    assert P.vram_preset_for(4.0, ROOT).name == "8gb"
    assert P.vram_mode_for(8, "spatia-5b", ROOT).vram_mode == "sequential"
    assert P.vram_mode_for(80, "spatia-5b", ROOT).vram_mode == "gpu"
    assert P.vram_mode_for(48, "wan-vace-14b", ROOT).vram_mode == "model"
    for generator in ("spatia-5b", "wan-vace-1.3b", "wan-vace-14b"):
        order = [VRAM_MODES.index(P.vram_mode_for(gb, generator, ROOT).vram_mode) for gb in (8, 12, 16, 24, 48, 80)]
        assert order == sorted(order, reverse=True), generator  # more memory never means more offloading
        need = loaded.models[generator].vram_gb
        for gb in (8, 12, 16, 24, 48, 80):  # a model that does not fit with room to spare is offloaded
            if need > gb:
                assert P.vram_mode_for(gb, generator, ROOT).vram_mode != "gpu", (generator, gb)
    options = RuntimeOptions(**P.runtime_settings("12gb", "spatia-5b", root=ROOT).model_dump())
    assert isinstance(options, RuntimeOptions) and options.vram_mode == "group" and options.fp8_storage
    assert P.runtime_settings("auto", "wan-vace-1.3b", gpu_gb=24.0, root=ROOT).vram_mode == "gpu"
    assert P.runtime_settings("model", "spatia-5b", root=ROOT).vram_mode == "model"
    assert P.runtime_settings("24gb", "preview", root=ROOT) is None  # the preview runs on the CPU
    with pytest.raises(P.PresetError, match="unknown VRAM preset 'huge'; known: auto, 8gb"):
        P.runtime_settings("huge", "spatia-5b", root=ROOT)


def test_fit_resolution_keeps_the_aspect():
    standard = P.quality("standard", ROOT)
    assert P.fit_resolution(1920, 1080, standard) == (848, 480)
    assert P.fit_resolution(832, 480, standard) == (832, 480)
    w, h = P.fit_resolution(1080, 1920, standard)
    assert w % 16 == 0 and h % 16 == 0 and h > w


def _copy(tmp_path) -> Path:
    root = tmp_path / "presets"
    shutil.copytree(ROOT, root)
    return root


def test_bad_files_are_named(tmp_path):
    root = _copy(tmp_path)
    path = root / "cameras" / "truck.json"
    data = json.loads(path.read_text())
    data["parameters"]["distance"] = 3.0  # keys no longer match
    path.write_text(json.dumps(data))
    with pytest.raises(P.PresetError, match=r"truck\.json: invalid CameraPathPreset .*keys differ"):
        P.load_presets(root)

    root = _copy(tmp_path / "b")
    (root / "quality" / "draft.json").write_text('{"steps": 4, "guidance": 1, "width": 100, "height": 64, '
                                                 '"first_round_frames": 9, "round_frames": 9, "overlap": 2}')
    with pytest.raises(P.PresetError, match=r"draft\.json: .*multiples of 16"):
        P.load_presets(root)

    root = _copy(tmp_path / "c")
    (root / "models" / "preview.json").write_text('{"vram_gb": 0, "wieghts": []}')
    with pytest.raises(P.PresetError, match=r"preview\.json: .*wieghts: Extra inputs are not permitted"):
        P.load_presets(root)

    root = _copy(tmp_path / "d")
    (root / "cameras" / "orbit.json").write_text('{"name": "Orbit", "type": "orbit", "degrees": 90,')
    with pytest.raises(P.PresetError, match=r"orbit\.json:1:\d+: malformed JSON"):
        P.load_presets(root)


def test_spatia_quality_presets_keep_the_trained_size_and_rounds_and_vary_only_steps(loaded, tmp_path):
    from spatia.engine.models.spatia import config

    trained = (config.DEFAULT_WIDTH, config.DEFAULT_HEIGHT, config.FIRST_ROUND_FRAMES, config.ROUND_FRAMES,
               config.HISTORY_FRAMES, config.DEFAULT_GUIDANCE)
    assert tuple(P.TRAINED["spatia-5b"].values()) == trained
    steps = []
    for name in ("draft", "standard", "final"):
        preset = P.quality(name, ROOT, generator="spatia-5b")
        assert (preset.width, preset.height, preset.first_round_frames, preset.round_frames, preset.overlap,
                preset.guidance) == trained
        steps.append(preset.steps)
    # the default preset (standard) and final run the paper's 40 steps; draft fewer
    assert P.DEFAULT_QUALITY == "standard"
    assert steps[1] == steps[2] == config.DEFAULT_STEPS and steps[0] < config.DEFAULT_STEPS
    # other generators keep the general values
    assert P.quality("standard", ROOT, generator="preview") == P.quality("standard", ROOT)
    # a spatia-5b preset that leaves the trained size is refused, naming what it changes
    with pytest.raises(ValueError, match=r"spatia-5b presets keep what it was trained on .*'width': 832"):
        P.QualityPreset(name="x", steps=10, guidance=3.5, width=832, height=480, first_round_frames=81, round_frames=57,
                        overlap=9, generators={"spatia-5b": {"width": 832}})


def test_generator_settings_turn_a_preset_into_steps_guidance_and_the_model_seed():
    from spatia.engine.models.spatia import config
    from spatia.formats.reference_case import REFERENCE_SEED

    run = P.generator_settings("spatia-5b", root=ROOT)
    assert (run.quality, run.steps, run.guidance, run.seed) == ("standard", config.DEFAULT_STEPS,
                                                                config.DEFAULT_GUIDANCE, REFERENCE_SEED)
    draft = P.generator_settings("spatia-5b", "draft", root=ROOT)
    assert draft.steps == P.quality("draft", ROOT, generator="spatia-5b").steps < run.steps
    preview = P.generator_settings("preview", "draft", root=ROOT)
    assert (preview.steps, preview.guidance, preview.seed) == (12, 3.0, 0)  # the general values; no seed of its own
    own = P.generator_settings("spatia-5b", "final", steps=7, guidance=2.0, seed=0, root=ROOT)
    assert (own.steps, own.guidance, own.seed) == (7, 2.0, 0)  # the user's values win, seed 0 included
    assert P.generator_settings("a-model-without-a-preset", root=ROOT).seed == 0
    with pytest.raises(P.PresetError, match="unknown quality preset 'best'"):
        P.generator_settings("spatia-5b", "best", root=ROOT)
