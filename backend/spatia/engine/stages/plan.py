"""Plan: the rounds a camera path is split into, and the artist's directions for the objects
(forgets, copies, switches), applied once before the first round."""

from __future__ import annotations

from spatia.engine.errors import WorldError
from spatia.engine.objects import ObjectDirectionError, ObjectSet, apply_directions
from spatia.engine.plan import Round, plan_rounds
from spatia.engine.settings import GenerateSettings


def plan(frames: int, prompts: list[str], settings: GenerateSettings, start_frame: int) -> list[Round]:
    return plan_rounds(frames, prompts, first_round_frames=settings.first_round_frames,
                       round_frames=settings.round_frames, overlap=settings.overlap, start_frame=start_frame)


def direct(objects: ObjectSet, settings: GenerateSettings) -> ObjectSet:
    """The objects with the artist's forgets, copies and switches applied; WorldError names an
    object the world does not have, or a copy's id that is taken."""
    try:
        return apply_directions(objects, settings.object_directions, settings.forget_objects)
    except ObjectDirectionError as err:
        raise WorldError(str(err)) from None


def direction_message(settings: GenerateSettings) -> str | None:
    """The objects version's message for the artist's directions, or None when there are none."""
    if not (settings.object_directions or settings.forget_objects):
        return None
    copied = [d.id for d in settings.object_directions if d.copy_of is not None]
    return ", ".join(filter(None, [f"forgot {list(settings.forget_objects)}" if settings.forget_objects else "",
                                   f"copied to {copied}" if copied else "", "directed"]))
