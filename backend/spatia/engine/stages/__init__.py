"""A round as a pipeline of stages, each a function with typed inputs and outputs:

    condition  the memory rendered along the round's cameras, moving objects drawn in   (condition.py)
    retrieve   past frames that saw the same space                                    (retrieve.py)
    generate   the clip from the conditioning, history, references and prompt          (generate.py)
    observe    the keyframes' moving things and depth                                  (observe.py)
    update     the memory and the objects after the clip; their new versions          (update.py)
    index      the new frames enter the view index                                     (index.py)
    commit     the round to disk, behind the next round; loop closure measured there   (commit.py, measure.py)

pipeline.run_round runs them in order for the world (engine/world.py), which owns the state
and the versions; records.py writes the round record.
"""
