"""``stats.describe`` and ``stats.regression``: summary statistics and polynomial least squares.

Pure standard library; `mean` and `sample_stddev` are numeric.py's, shared with csv.profile.
Every sum goes through math.fsum, and values are rescaled by powers of two
(exact) where squares could overflow. stats.regression keeps its vectors as arrays of
doubles and does its per-point arithmetic in map() over them: a list of floats costs 32
bytes a value where an array costs 8, and a Python loop costs several times what map() does.
"""

import math
from array import array
from bisect import bisect_left
from itertools import repeat
from operator import add, mul, sub, truediv

from pyfleet import TaskError, task
from pyfleet_tasks.numeric import mean, sample_stddev

DEFAULT_BINS = 10
MAX_BINS = 1000
MAX_DEGREE = 5
PERCENTS = (1, 5, 25, 50, 75, 95, 99)
_EPSILON = 2.0**-52


def _number_array(description):
    return {"type": "array", "items": {"type": "number"}, "description": description}


DESCRIBE_SCHEMA = {
    "type": "object",
    # What OpenAPI shows a client (Swagger UI's "Try it out"); checked against this schema at start.
    "examples": [{"values": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "bins": 5}],
    "additionalProperties": False,
    "required": ["values"],
    "properties": {
        "values": {**_number_array("the sample; finite numbers"), "minItems": 1},
        "bins": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_BINS,
            "default": DEFAULT_BINS,
            "description": "histogram bins of equal width between min and max",
        },
    },
}

REGRESSION_SCHEMA = {
    "type": "object",
    # What OpenAPI shows a client (Swagger UI's "Try it out"); checked against this schema at start.
    "examples": [{"x": [0, 1, 2, 3, 4], "y": [1, 3, 5, 7, 9]}],
    "additionalProperties": False,
    "required": ["x", "y"],
    "properties": {
        "x": _number_array("the predictor; finite numbers, as many as y"),
        "y": _number_array("the response; finite numbers, as many as x"),
        "degree": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_DEGREE,
            "default": 1,
            "description": "degree of the fitted polynomial",
        },
    },
}


def _number(description, nullable=False, minimum=None):
    schema = {"type": ["number", "null"] if nullable else "number", "description": description}
    if minimum is not None:
        schema["minimum"] = minimum
    return schema


def _closed_object(properties, description=None, examples=None):
    """An object with exactly these properties, all required."""
    schema = {"type": "object", "additionalProperties": False, "required": list(properties), "properties": properties}
    if description is not None:
        schema["description"] = description
    if examples is not None:
        schema["examples"] = examples
    return schema


DESCRIBE_OUTPUT_SCHEMA = _closed_object(
    {
        "count": {"type": "integer", "minimum": 1, "description": "how many values"},
        "mean": _number("arithmetic mean"),
        "median": _number("the middle value, the mean of the middle two for an even count (quantiles.p50)"),
        "stddev": _number(
            "sample standard deviation (n - 1); null below two values or beyond the float range", nullable=True, minimum=0
        ),
        "min": _number("smallest value"),
        "max": _number("largest value"),
        "quantiles": _closed_object(
            {f"p{percent}": _number(f"{percent}th percentile") for percent in PERCENTS},
            "percentiles, interpolated linearly between order statistics (numpy's default)",
        ),
        "histogram": _closed_object(
            {
                "edges": {
                    **_number_array("bins + 1 edges from min to max, non-decreasing; [v, v] when every value is v"),
                    "minItems": 2,
                    "maxItems": MAX_BINS + 1,
                },
                "counts": {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 0},
                    "minItems": 1,
                    "maxItems": MAX_BINS,
                    "description": "values per bin, [left edge, right edge) and the last bin closed",
                },
            },
            "bins of equal width between min and max",
        ),
    },
    # What the input example above returns (a test calls each example and compares).
    examples=[
        {
            "count": 10,
            "mean": 5.5,
            "median": 5.5,
            "stddev": 3.0276503540974917,
            "min": 1,
            "max": 10,
            "quantiles": {"p1": 1.09, "p5": 1.45, "p25": 3.25, "p50": 5.5, "p75": 7.75, "p95": 9.55, "p99": 9.91},
            "histogram": {"edges": [1, 2.8, 4.6, 6.4, 8.2, 10], "counts": [2, 2, 2, 2, 2]},
        }
    ],
)

REGRESSION_OUTPUT_SCHEMA = _closed_object(
    {
        "degree": {"type": "integer", "minimum": 1, "maximum": MAX_DEGREE, "description": "degree of the fitted polynomial"},
        "coefficients": {
            **_number_array("the degree + 1 coefficients, constant term first"),
            "minItems": 2,
            "maxItems": MAX_DEGREE + 1,
        },
        "r2": {"type": "number", "maximum": 1, "description": "coefficient of determination, 1 - SSres/SStot; 1 when y is constant"},
        "residualStandardError": _number(
            "sqrt(SSres / (n - degree - 1)); null for an exact fit of degree + 1 points, or beyond the float range",
            nullable=True,
            minimum=0,
        ),
    },
    # What the input example above returns, to floating point's rounding (1.0000000000000004...).
    examples=[{"degree": 1, "coefficients": [1, 2], "r2": 1, "residualStandardError": 0}],
)


@task("stats.describe", schema=DESCRIBE_SCHEMA, output_schema=DESCRIBE_OUTPUT_SCHEMA, timeout_ms=10000)
def describe(input):
    """Summary statistics of a sample: count, mean, median, sample stddev, min, max, percentiles and a histogram.

    Percentiles interpolate linearly between order statistics, as numpy's
    default (index ``(n - 1) * p``). ``stddev`` is null below two values (or
    beyond the float range). The histogram has ``bins`` bins of equal width,
    each closed on the left and the last also on the right, as numpy's; when
    all values are equal it is one bin ``[v, v]`` holding them all.
    """
    # A list, sorted in place: a float of the input stays the same object in it, where an array would copy each.
    values = _finite([float(v) for v in input["values"]], "values")
    values.sort()
    count = len(values)
    center = mean(values)
    quantiles = {f"p{percent}": _percentile(values, percent) for percent in PERCENTS}
    return {
        "count": count,
        "mean": center,
        "median": quantiles["p50"],
        "stddev": sample_stddev(values, center),
        "min": values[0],
        "max": values[-1],
        "quantiles": quantiles,
        "histogram": _histogram(values, input.get("bins", DEFAULT_BINS)),
    }


@task("stats.regression", schema=REGRESSION_SCHEMA, output_schema=REGRESSION_OUTPUT_SCHEMA, timeout_ms=30000)
def regression(input):
    """Polynomial least-squares fit of y on x: coefficients (constant term first), r2 and residual standard error.

    Solved by Householder QR on the Vandermonde matrix of x centred and scaled
    to [-1, 1], then converted back to powers of x; never by normal equations.
    ``r2`` is 1 - SSres/SStot, and 1 when y is constant;
    ``residualStandardError`` is sqrt(SSres / (n - degree - 1)), null for an
    exact fit of degree + 1 points (or beyond the float range). Refused as bad
    input: x and y of different lengths, fewer than degree + 1 distinct x
    values, x too close together to separate, coefficients beyond the float
    range.
    """
    x = _finite(array("d", map(float, input["x"])), "x")
    y = _finite(array("d", map(float, input["y"])), "y")
    degree = input.get("degree", 1)
    terms = degree + 1
    if len(x) != len(y):
        raise TaskError(f"x has {len(x)} values but y has {len(y)}: they must pair up", {"x": len(x), "y": len(y)})
    if len(x) < terms:
        raise TaskError(f"a degree-{degree} fit needs at least {terms} points, got {len(x)}")
    distinct = _distinct_count(x, terms)
    if distinct < terms:
        raise TaskError(f"x has {distinct} distinct value(s) but a degree-{degree} fit needs at least {terms}")

    # Map x onto [-1, 1] so the Vandermonde columns stay well conditioned.
    low, high = min(x), max(x)
    center, half_range = low / 2 + high / 2, high / 2 - low / 2
    if half_range == 0.0:  # distinct values so close that halving them underflows
        raise _singular(degree)
    t = array("d", map(truediv, map(sub, x, repeat(center)), repeat(half_range)))
    # Scale y by a power of two (exact) into (-1, 1): no square below can overflow.
    y_exponent = math.frexp(max(map(abs, y)))[1]
    y_scaled = array("d", map(math.ldexp, y, repeat(-y_exponent)))
    points = len(x)
    del x, y  # t and y_scaled stand for them: not held beside the columns

    # The columns are the callee's alone, freed as it returns.
    solution = _least_squares(_vandermonde(t, degree), y_scaled, degree)

    ss_residual = _sum_of_squares(array("d", map(sub, y_scaled, _horner(solution, t))))
    y_mean = math.fsum(y_scaled) / len(y_scaled)
    ss_total = _sum_of_squares(array("d", map(sub, y_scaled, repeat(y_mean))))
    dof = points - terms
    standard_error = None
    if dof:
        try:
            standard_error = math.ldexp(math.sqrt(ss_residual / dof), y_exponent)
        except OverflowError:  # y near the float range and a poor fit
            pass
    return {
        "degree": degree,
        "coefficients": _power_coefficients(solution, center, half_range, y_exponent),
        "r2": 1.0 if ss_total == 0.0 else 1.0 - ss_residual / ss_total,
        "residualStandardError": standard_error,
    }


def _finite(floats, name):
    """``floats``, refused as bad input if one is not finite (the first such named)."""
    if not all(map(math.isfinite, floats)):
        index, value = next((i, v) for i, v in enumerate(floats) if not math.isfinite(v))
        raise TaskError(f"{name}[{index}] is {value}, not a finite number", {"index": index})
    return floats


def _distinct_count(values, enough):
    """How many distinct values, counted only until there are ``enough``: a set of them all
    costs up to 60 bytes a value (its table, and a float object for each), only to learn that
    a fit has the few it needs. Read 4096 at a time, so that set.update does the looping."""
    seen = set()
    for start in range(0, len(values), 4096):
        seen.update(values[start : start + 4096])
        if len(seen) >= enough:
            break
    return len(seen)


def _percentile(ordered, percent):
    # Integer arithmetic for the index, so p25 of 5 values is exactly the 2nd, not one ulp off it.
    index, remainder = divmod(percent * (len(ordered) - 1), 100)
    if remainder == 0:
        return ordered[index]
    return _interpolate(ordered[index], ordered[index + 1], remainder / 100)


def _interpolate(a, b, fraction):
    """numpy's lerp: exact at both ends; falls back to a weighted sum when b - a overflows."""
    step = b - a
    if not math.isfinite(step):
        return a * (1 - fraction) + b * fraction
    return a + step * fraction if fraction < 0.5 else b - step * (1 - fraction)


def _histogram(ordered, bins):
    low, high = ordered[0], ordered[-1]
    if low == high:
        return {"edges": [low, high], "counts": [len(ordered)]}
    edges = [low]
    for i in range(1, bins):
        # max() keeps rounding from ever making an edge fall below the previous one
        edges.append(max(edges[-1], _interpolate(low, high, i / bins)))
    edges.append(high)
    # Bins are [edge, next edge), the last closed: count by bisecting the sorted values.
    starts = [bisect_left(ordered, edge) for edge in edges[:-1]] + [len(ordered)]
    return {"edges": edges, "counts": [starts[i + 1] - starts[i] for i in range(bins)]}


def _vandermonde(t, degree):
    """The columns 1, t, t**2, ... t**degree, as arrays."""
    columns = [array("d", [1.0]) * len(t)]
    for _ in range(degree):
        columns.append(array("d", map(mul, columns[-1], t)))
    return columns


def _least_squares(columns, target, degree):
    """Coefficients minimising |A c - target| for A given by its columns (arrays, overwritten), by Householder QR."""
    rows, width = len(target), len(columns)
    target = array("d", target)
    norms = [math.sqrt(_sum_of_squares(column)) for column in columns]
    diagonal = []
    for k in range(width):
        # Column k from row k becomes the reflector in place (a view, not a copy): R's diagonal
        # is kept apart, and the back substitution reads only rows above each column's own.
        reflector = memoryview(columns[k])[k:]
        alpha = -math.copysign(math.sqrt(_sum_of_squares(reflector)), reflector[0])
        # A column (almost) inside the span of the ones before it: numpy's rcond test on R's diagonal.
        if abs(alpha) <= max(rows, width) * _EPSILON * norms[k]:
            raise _singular(degree)
        reflector[0] -= alpha  # alpha has the opposite sign of reflector[0]: no cancellation
        scale = 2.0 / _sum_of_squares(reflector)
        for column in columns[k + 1 :] + [target]:
            tail = memoryview(column)[k:]
            factor = scale * math.fsum(map(mul, reflector, tail))
            # tail - factor * reflector, built whole before it is written back: one array of temporary.
            tail[:] = array("d", map(sub, tail, map(mul, repeat(factor), reflector)))
        diagonal.append(alpha)
    solution = [0.0] * width
    for k in reversed(range(width)):
        known = math.fsum(columns[j][k] * solution[j] for j in range(k + 1, width))
        solution[k] = (target[k] - known) / diagonal[k]
    return solution


def _horner(coefficients, points):
    """The polynomial at every point by Horner's rule, a step over all points at a time."""
    result = array("d", [0.0]) * len(points)
    for coefficient in reversed(coefficients):
        result = array("d", map(add, map(mul, result, points), repeat(coefficient)))
    return result


def _sum_of_squares(values):
    """fsum of v * v over a sequence (read twice)."""
    return math.fsum(map(mul, values, values))


def _power_coefficients(solution, center, half_range, y_exponent):
    """Turn p(t) = sum b_j t^j with t = (x - c) / s into powers of x: a_k = sum_j b_j C(j, k) (-c/s)^(j-k) / s^k."""
    ratio = -center / half_range
    try:
        coefficients = []
        for k in range(len(solution)):
            terms = (b * math.comb(j, k) * ratio ** (j - k) for j, b in enumerate(solution) if j >= k)
            coefficients.append(math.ldexp(math.fsum(terms) / half_range**k, y_exponent))
    except (OverflowError, ZeroDivisionError, ValueError):  # ValueError: fsum of inf and -inf
        coefficients = None
    if coefficients is None or not all(map(math.isfinite, coefficients)):
        raise TaskError("the fitted coefficients are beyond the range of a 64-bit float; rescale x or y")
    return coefficients


def _singular(degree):
    return TaskError(
        f"x values are too close together for a degree-{degree} fit (the design matrix is numerically singular)"
    )
