"""Mean and sample standard deviation as the built-in tasks compute them (stats.describe,
csv.profile): every sum through math.fsum, and values rescaled by powers of two (exact)
where a sum or a square could overflow. A module without tasks, so that importing it
registers none.
"""

import math


def mean(values):
    """Arithmetic mean of a non-empty sequence: correctly rounded sum, divided, then corrected
    by the mean of the residuals, and kept within [min, max].

    The sum and the division each round: the mean of three 0.1s came out 0.10000000000000002,
    past both min and max (found by the property-based tests). The residuals of values near the
    mean are exact (Sterbenz), so one correction makes a constant sample's mean the constant.
    """
    count = len(values)
    try:
        first = math.fsum(values) / count
        return _within(first + _correction(values, first), values)
    except OverflowError:
        # The sum passes the float range although the mean cannot. Scaled down by a power of
        # two (exact, unlike dividing each value by n, whose roundings up can overflow again:
        # three times DBL_MAX / 3), summed, divided, corrected, scaled back.
        exponent = count.bit_length()
        scaled = [math.ldexp(v, -exponent) for v in values]
        first = math.fsum(scaled) / count
        return _within(math.ldexp(first + _correction(scaled, first), exponent), values)


def _correction(values, first):
    """The mean of the residuals around ``first``; 0.0 where a residual passes the float range
    (values at both ends of it, whose mean is far from each: the correction is no use there)."""
    try:
        correction = math.fsum(v - first for v in values) / len(values)
    except (OverflowError, ValueError):  # ValueError: inf - inf in fsum
        return 0.0
    return correction if math.isfinite(correction) else 0.0


def _within(center, values):
    """The mean can only be between the smallest and the largest value: what rounding leaves past them is put back."""
    return min(max(center, min(values)), max(values))


def sample_stddev(values, center):
    """Sample standard deviation around ``center`` (the mean); None below two values or when it overflows."""
    count = len(values)
    if count < 2:
        return None
    exponent = math.frexp(max(map(abs, values)))[1]
    scaled_center = math.ldexp(center, -exponent)
    deviations = [math.ldexp(v, -exponent) - scaled_center for v in values]
    # The second term corrects for rounding in the mean (the "corrected two-pass" formula).
    drift = math.fsum(deviations)
    variance = (math.fsum(d * d for d in deviations) - drift * drift / count) / (count - 1)
    try:
        return math.ldexp(math.sqrt(max(variance, 0.0)), exponent)
    except OverflowError:
        return None
