"""The round record (rounds/NNNN/round.json): what the round was given, what it chose and did."""

from __future__ import annotations

import numpy as np

from spatia.cameras import Cameras
from spatia.engine.objects import in_view
from spatia.engine.plan import Round


def object_records(objects, paths, learned, cams: Cameras, rnd: Round) -> list[dict]:
    """Per object: where it was predicted over the round and, once generated, observed."""
    if objects is None:
        return []
    after = learned.objects if learned else objects
    out = []
    for o in after.objects:
        path = paths.get(o.id)
        observed = learned.observed.get(o.id) if learned else None
        track = objects.get(o.id) if o.id in paths else o
        visible = in_view(track, path, cams, objects.up) if path is not None else np.zeros(0, bool)
        out.append({
            "id": o.id, "label": o.label, "source": path.source if path is not None else "new",
            "condition": bool(track.condition), "reference": bool(track.reference),
            "predicted": path.as_dict() if path is not None else None,
            "observed": observed.as_dict() if observed is not None else None,
            "visible_frames": (rnd.start + np.flatnonzero(visible)).tolist(),
        })
    return out


def round_record(index: int, rnd: Round, generator, clip, shown, found, changed, memory_in: int,
                 objects_in: int | None, cams: Cameras) -> dict:
    """The record of round `index` (loop closure and timings are added when it is committed)."""
    hole = shown.hole
    learned = changed.learned
    return {
        "round": index,
        "prompt": rnd.prompt,
        "start": rnd.start,
        "end": rnd.end,
        "overlap": rnd.overlap,
        "memory_version_in": memory_in,
        "memory_version_out": changed.memory_version,
        "references": found.indices,
        "reference_scores": found.scores,
        "retrieval": found.scoring,
        "coverage": float((~hole).mean()),
        "coverage_per_frame": (~hole).mean(axis=(1, 2)).round(4).tolist(),
        "keyframes": changed.seen.keys.tolist(),
        "seed": clip.request.seed,
        "steps": clip.request.steps,
        "guidance": clip.request.guidance,
        "generator": getattr(generator, "name", type(generator).__name__),
        "generator_info": {k: v for k, v in clip.result.info.items() if not isinstance(v, np.ndarray)},
        "update": changed.stats.as_dict() if changed.stats else None,
        "objects_version_in": objects_in,
        "objects_version_out": changed.objects_version,
        "objects": object_records(shown.objects, shown.paths, learned, cams, rnd),
        "instances": {str(k): v for k, v in (learned.instances if learned else {}).items()},
    }
