"""What a generation run is asked to do: GenerateSettings, and the settings a shot spec asks for."""

from __future__ import annotations

from dataclasses import dataclass, field

from spatia.engine.objects import Direction
from spatia.engine.update import UpdateSettings

HISTORY_FRAMES = 9  # the last frames of the previous clip, as in the paper
REFERENCE_FRAMES = 7
INDEX_FPS = 6.0  # frames enter the view index (and can be retrieved) at this rate, as the paper samples them
UPDATE_MODES = ("incremental", "mapanything-rebuild")


@dataclass
class GenerateSettings:
    seed: int = 0
    seed_per_round: bool = False  # False: every round uses `seed` (the reference); True: seed + round
    steps: int | None = None
    guidance: float | None = None
    negative_prompt: str = ""
    first_round_frames: int = 121
    round_frames: int = 81
    overlap: int = HISTORY_FRAMES
    references: int = REFERENCE_FRAMES
    update_fps: float = 4.0
    dynamic_prompts: list[str] = field(default_factory=list)
    full_rebuild: bool = False
    update: UpdateSettings = field(default_factory=UpdateSettings)
    retrieval: str | None = None  # "reference" or "iou"; None: the generator's preference, else "iou"
    update_mode: str = "incremental"  # or "mapanything-rebuild", the paper's (see stages.update.posed_rebuild)
    object_memory: bool = True  # remember moving things and draw them where they are predicted
    object_directions: tuple[Direction, ...] = ()  # the artist's paths and switches (video frame indices)
    forget_objects: tuple[int, ...] = ()  # objects removed before the first round


def shot_settings(spec, generator: str | None = None, **overrides) -> GenerateSettings:
    """The settings a shot spec (spatia.formats.shot.ShotSpec) asks for, its quality preset as
    `generator` (default: the shot's) runs it. Its objects' path frames are Blender frame numbers;
    the world counts video frames from the shot's first listed frame."""
    first = int(spec.frames[0].frame)
    directions = tuple(Direction.keyed(o.id, o.path, frame_offset=first, condition=o.condition,
                                       reference=o.reference, copy_of=o.copy_of) for o in spec.objects)
    plan = spec.rounds
    run = spec.generation(generator)
    fields = dict(seed=run.seed, steps=run.steps, guidance=run.guidance, negative_prompt=spec.negative_prompt,
                  dynamic_prompts=list(spec.dynamic_prompts), first_round_frames=plan.first_round_frames,
                  round_frames=plan.round_frames, overlap=plan.overlap, object_memory=spec.object_memory,
                  object_directions=directions, forget_objects=tuple(spec.forget_objects))
    fields.update(overrides)
    return GenerateSettings(**fields)


def check_run(settings: GenerateSettings, cameras, size: tuple[int, int], done, depth_estimator=None,
              memory_version: int | None = 0) -> None:
    """WorldError naming what a run cannot use: the world needs a memory (`memory_version`);
    `cameras` (the whole path) must be of the world's `size` (width, height) and begin with `done`
    (the cameras of the frames generated so far)."""
    from spatia.engine.errors import WorldError
    from spatia.engine.retrieval import SCORINGS

    if memory_version is None:
        raise WorldError("the world has no memory yet; initialise it first")
    if (cameras.width, cameras.height) != tuple(size):
        raise WorldError(f"trajectory is {cameras.width}x{cameras.height} but the world is {size[0]}x{size[1]}")
    if done is not None and not done.equals(cameras[: len(done)], atol=1e-6):
        raise WorldError("the trajectory's first frames differ from the frames this world already generated")
    if settings.retrieval is not None and settings.retrieval not in SCORINGS:
        raise WorldError(f"retrieval must be one of {', '.join(SCORINGS)}, got {settings.retrieval!r}")
    if settings.update_mode not in UPDATE_MODES:
        raise WorldError(f"update_mode must be one of {', '.join(UPDATE_MODES)}, got {settings.update_mode!r}")
    if settings.update_mode == "mapanything-rebuild" and not getattr(depth_estimator, "takes_poses", False):
        raise WorldError("update mode mapanything-rebuild needs a depth model that takes known poses "
                         "(map-anything: spatia models download map-anything, and the mapanything package)")
