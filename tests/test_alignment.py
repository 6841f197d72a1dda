import numpy as np

from spatia.engine.alignment import fit_scale_shift


def test_recovers_scale_and_shift_despite_outliers(rng):
    reference = rng.uniform(1, 8, size=(60, 80))
    estimate = (reference - 0.3) / 1.7  # reference = 1.7 * estimate + 0.3
    corrupted = estimate.copy()
    corrupted[:10] = rng.uniform(0.1, 20, size=(10, 80))  # a moved object: 1/6 of pixels wrong
    fit = fit_scale_shift(corrupted, reference, np.ones_like(reference, dtype=bool))
    assert fit.fitted
    assert abs(fit.scale - 1.7) < 1e-6 and abs(fit.shift - 0.3) < 1e-6
    np.testing.assert_allclose(fit.apply(estimate), reference, rtol=1e-6)
    assert fit.inliers <= 50 * 80


def test_too_little_overlap_keeps_identity():
    ref = np.zeros((100, 100))
    ref[0, :5] = 2.0
    fit = fit_scale_shift(np.ones((100, 100)), ref, np.ones((100, 100), dtype=bool))
    assert not fit.fitted and (fit.scale, fit.shift) == (1.0, 0.0)


def test_invalid_pixels_are_ignored_and_stay_zero(rng):
    reference = rng.uniform(1, 3, size=(40, 40))
    estimate = reference / 2.0
    valid = np.ones_like(reference, dtype=bool)
    valid[:, :20] = False
    estimate_with_garbage = estimate.copy()
    estimate_with_garbage[:, :20] = 100.0
    fit = fit_scale_shift(estimate_with_garbage, reference, valid, with_shift=False)
    assert abs(fit.scale - 2.0) < 1e-9 and fit.shift == 0.0
    out = fit.apply(np.where(valid, estimate, 0.0))
    assert (out[:, :20] == 0).all()
