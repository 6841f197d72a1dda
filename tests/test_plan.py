import pytest

from spatia.engine.plan import PlanError, plan_rounds


def test_paper_plan_121_then_81_with_9_overlap():
    rounds = plan_rounds(121 + 72 * 2, ["a", "b", "c"])
    assert [(r.start, r.end, r.overlap) for r in rounds] == [(0, 121, 0), (112, 193, 9), (184, 265, 9)]
    assert [r.prompt for r in rounds] == ["a", "b", "c"]
    assert sum(r.frames - r.overlap for r in rounds) == 265


def test_short_trajectory_is_one_round_and_last_round_may_be_short():
    assert [(r.start, r.end) for r in plan_rounds(50, ["x"])] == [(0, 50)]
    rounds = plan_rounds(130, ["x"])
    assert [(r.start, r.end, r.overlap) for r in rounds] == [(0, 121, 0), (112, 130, 9)]
    assert all(r.prompt == "x" for r in rounds)


def test_continuation_starts_with_overlap_on_existing_frames():
    rounds = plan_rounds(200, ["x"], start_frame=121)
    assert (rounds[0].start, rounds[0].overlap, rounds[0].new_start) == (112, 9, 121)


def test_fewer_prompts_than_rounds_is_an_error():
    with pytest.raises(PlanError, match="fewer prompts than rounds: 2 prompts for 3 rounds"):
        plan_rounds(265, ["a", "b"])
    with pytest.raises(PlanError, match="non-empty"):
        plan_rounds(10, ["  "])
    with pytest.raises(PlanError, match="nothing to generate"):
        plan_rounds(10, ["a"], start_frame=10)


def test_rounds_know_their_full_length_and_a_short_last_round_pads_to_it():
    rounds = plan_rounds(130, ["x"])
    assert [(r.target, r.padding) for r in rounds] == [(121, 0), (81, 81 - 18)]
    last = rounds[-1]
    indices = last.padded_indices()
    # the reference: frames 112..129, then the last camera (129) repeated up to 81 frames
    assert len(indices) == 81 and indices[:18] == list(range(112, 130)) and indices[18:] == [129] * 63
    one = plan_rounds(50, ["x"])[0]
    assert one.target == 121 and len(one.padded_indices()) == 121  # a short first round pads to 121
    assert plan_rounds(200, ["x"], start_frame=121)[0].target == 81
    assert plan_rounds(121, ["x"])[0].padded_indices() == list(range(121))


def test_fewer_prompts_can_repeat_the_last_one_as_the_reference_script():
    rounds = plan_rounds(265, ["a", "b"], repeat_last_prompt=True)
    assert [r.prompt for r in rounds] == ["a", "b", "b"]
