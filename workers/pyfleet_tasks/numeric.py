"""Mean and sample standard deviation as the built-in tasks compute them (stats.describe,
csv.profile): every sum through math.fsum, and values rescaled by powers of two (exact)
where a sum or a square could overflow. A module without tasks, so that importing it
registers none.
"""

import math


def mean(values):
    """Arithmetic mean of a non-empty sequence: correctly rounded sum, divided once."""
    try:
        return math.fsum(values) / len(values)
    except OverflowError:
        # The sum passes the float range although the mean cannot. Scaled down by a power of
        # two (exact, unlike dividing each value by n, whose roundings up can overflow again:
        # three times DBL_MAX / 3), summed, divided, scaled back.
        exponent = len(values).bit_length()
        return math.ldexp(math.fsum(math.ldexp(v, -exponent) for v in values) / len(values), exponent)


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
