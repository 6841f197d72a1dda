import json

import pytest

from spatia.engine.models import ModelUnavailable, get_depth_estimator, get_generator, get_segmenter, register_generator
from spatia.engine.models.registry import PRESETS, find_weights, get_preset, is_present, presets_for, require_weights


def _fake_hf_snapshot(cache, repo_id, files, commit="0123456789abcdef0123456789abcdef01234567"):
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in files:
        (snapshot / name).write_text(json.dumps({}))
    return snapshot


def test_default_presets_cover_every_role():
    depth = {"depth-pro", "depth-anything-v2-metric-indoor", "depth-anything-v2-metric-outdoor", "map-anything"}
    assert {p.name for p in presets_for("depth")} == depth
    assert {p.name for p in presets_for("segmenter")} == {"sam2", "sam3"}
    assert {p.name for p in presets_for("generator")} == {"spatia-5b", "wan-vace-1.3b", "wan-vace-14b", "preview"}
    assert get_preset("spatia-5b").repo_ids == ("Wan-AI/Wan2.2-TI2V-5B-Diffusers", "Jinjing713/Spatia")
    assert get_preset("depth-pro").repo_ids == ("apple/DepthPro-hf",)
    assert get_preset("preview").sources == ()
    with pytest.raises(KeyError, match="known"):
        get_preset("nope")


def test_missing_preset_is_absent_and_the_error_names_the_download_command():
    assert not is_present("depth-pro")
    with pytest.raises(ModelUnavailable, match="run: spatia models download depth-pro"):
        require_weights("depth-pro")
    with pytest.raises(ModelUnavailable, match="gated"):
        require_weights("sam3")


def test_preview_needs_no_weights():
    assert is_present("preview") and find_weights("preview") == []


def test_hf_cache_snapshot_with_all_files_is_present(offline_empty_model_cache):
    source = PRESETS["depth-pro"].sources[0]
    snapshot = _fake_hf_snapshot(offline_empty_model_cache, source.repo_id, source.files[:-1])
    assert not is_present("depth-pro")  # one listed file missing
    (snapshot / source.files[-1]).write_text("{}")
    assert is_present("depth-pro") and find_weights("depth-pro") == [snapshot]


def test_repo_without_file_list_is_present_when_its_snapshot_exists(offline_empty_model_cache):
    _fake_hf_snapshot(offline_empty_model_cache, "Wan-AI/Wan2.2-TI2V-5B-Diffusers", ["model_index.json"])
    assert not is_present("spatia-5b")
    _fake_hf_snapshot(offline_empty_model_cache, "Jinjing713/Spatia", ["lora.safetensors"])
    assert is_present("spatia-5b")


def test_user_models_dir_by_preset_name_or_repo_id(tmp_path, monkeypatch):
    monkeypatch.setenv("SPATIA_MODELS_DIR", str(tmp_path))
    folder = tmp_path / "sam2"
    folder.mkdir()
    for name in PRESETS["sam2"].sources[0].files:
        (folder / name).write_text("{}")
    assert find_weights("sam2") == [folder]
    by_repo = tmp_path / "facebook" / "sam3"
    by_repo.mkdir(parents=True)
    for name in PRESETS["sam3"].sources[0].files:
        (by_repo / name).write_text("{}")
    assert find_weights("sam3") == [by_repo]


def test_factories_and_generator_plug_in(monkeypatch):
    from spatia.engine import models

    assert get_depth_estimator("depth-anything-v2-metric-outdoor").name == "depth-anything-v2-metric-outdoor"
    assert get_segmenter("sam2").name == "sam2"
    monkeypatch.delitem(models._GENERATORS, "wan-vace-1.3b")
    with pytest.raises(ModelUnavailable, match="no implementation"):
        get_generator("wan-vace-1.3b")
    with pytest.raises(KeyError, match="unknown generator"):
        get_generator("sora")
    sentinel = object()
    register_generator("wan-vace-1.3b", lambda: sentinel)
    assert get_generator("wan-vace-1.3b") is sentinel
    with pytest.raises(ValueError, match="not a generator"):
        register_generator("sam2", lambda: sentinel)
