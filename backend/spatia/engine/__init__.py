"""The engine: the spatial memory, moving objects, models, rendering, retrieval and the round's stages.

Layering, bottom up (imports point down only; tests/test_architecture.py checks it):
    spatia_geometry, spatia.cameras   camera math and camera types (numpy)
    spatia.formats                    files: atomic writes, video, shots, presets, camera formats
    engine.memory, engine.render*, engine.retrieval, engine.view_index, engine.objects
    engine.models                     depth, masks, generators behind small interfaces
    engine.stages                     one round as named stages with typed inputs and outputs
    engine.world                      state, versions and the loop on disk
Apps (spatia.cli, spatia.demo, spatia.service, spatia.batch, spatia.eval) sit on top.
"""
