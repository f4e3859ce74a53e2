"""Mean and sample standard deviation as the built-in tasks compute them (stats.describe,
csv.profile): every sum through math.fsum, and values rescaled by powers of two (exact)
where a sum or a square could overflow. A module without tasks, so that importing it
registers none.

A sample is a sequence of numbers, or a `Runs` (distinct values and their counts, as a
Counter gives them), which is never expanded: every sum sees the same values in the same
order either way, so the results are the same to the bit.
"""

import math
from array import array
from itertools import chain, repeat
from operator import mul, sub


class Runs:
    """A sample as its distinct values, each standing for ``counts[i]`` copies in a row.

    Iterating it yields the full sample without holding it: a csv.profile column of one
    value repeated 8 million times was a list of 8 million (64 MB, and 256 MB more for its
    deviations). ``counts`` may be a live view (a Counter's values()); it must not change.
    """

    def __init__(self, values, counts):
        self.values = values
        self.counts = counts
        self._length = sum(counts)

    def __len__(self):
        return self._length

    def __iter__(self):
        return chain.from_iterable(map(repeat, self.values, self.counts))


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
        scaled = _stored(_each(math.ldexp, values, -exponent))
        first = math.fsum(scaled) / count
        return _within(math.ldexp(first + _correction(scaled, first), exponent), values)


def _correction(values, first):
    """The mean of the residuals around ``first``; 0.0 where a residual passes the float range
    (values at both ends of it, whose mean is far from each: the correction is no use there)."""
    try:
        correction = math.fsum(_each(sub, values, first)) / len(values)
    except (OverflowError, ValueError):  # ValueError: inf - inf in fsum
        return 0.0
    return correction if math.isfinite(correction) else 0.0


def _within(center, values):
    """The mean can only be between the smallest and the largest value: what rounding leaves past them is put back."""
    return min(max(center, min(_distinct(values))), max(_distinct(values)))


def sample_stddev(values, center):
    """Sample standard deviation around ``center`` (the mean); None below two values or when it overflows."""
    count = len(values)
    if count < 2:
        return None
    exponent = math.frexp(max(map(abs, _distinct(values))))[1]
    scaled_center = math.ldexp(center, -exponent)
    # Kept for the two sums below as doubles (8 bytes each, where a list of floats takes 32).
    deviations = _stored(_each(sub, _each(math.ldexp, values, -exponent), scaled_center))
    # The second term corrects for rounding in the mean (the "corrected two-pass" formula).
    drift = math.fsum(deviations)
    variance = (math.fsum(map(mul, deviations, deviations)) - drift * drift / count) / (count - 1)
    try:
        return math.ldexp(math.sqrt(max(variance, 0.0)), exponent)
    except OverflowError:
        return None


def _each(operation, values, operand):
    """``operation(v, operand)`` for every value of the sample: lazily for a sequence, once per
    distinct value for Runs (as Runs)."""
    if isinstance(values, Runs):
        return Runs([operation(v, operand) for v in values.values], values.counts)
    return map(operation, values, repeat(operand))


def _stored(values):
    """Floats from _each held to be read more than once: Runs already are, the others as an array of doubles."""
    return values if isinstance(values, Runs) else array("d", values)


def _distinct(values):
    """Enough of the sample for min and max: a repeat cannot change which value is found first."""
    return values.values if isinstance(values, Runs) else values
