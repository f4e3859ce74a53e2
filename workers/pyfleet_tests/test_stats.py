"""Tests of stats.describe and stats.regression against the statistics module, hand-worked and exact results."""

import math
import sys
import random
import statistics
import unittest
from fractions import Fraction

from pyfleet_tests.builtin_tasks_schema import assert_strict_output_schema, assert_strict_schema, checked_output
from pyfleet import TaskError
from pyfleet_tasks import stats


def describe(input):
    """stats.describe's result, checked against its output schema as the server does with VALIDATE_RESULTS=1."""
    return checked_output(stats.DESCRIBE_OUTPUT_SCHEMA, stats.describe(input))


def regression(input):
    """stats.regression's result, checked against its output schema as the server does with VALIDATE_RESULTS=1."""
    return checked_output(stats.REGRESSION_OUTPUT_SCHEMA, stats.regression(input))


# Anscombe's quartet, data set I (Anscombe 1973): y ≈ 3.00 + 0.500 x, r² ≈ 0.667, s ≈ 1.237
ANSCOMBE_X = [10, 8, 13, 9, 11, 14, 6, 4, 12, 7, 5]
ANSCOMBE_Y = [8.04, 6.95, 7.58, 8.81, 8.33, 9.96, 7.24, 4.26, 10.84, 4.82, 5.68]


def exact_fit(x, y, degree):
    """Least squares in exact rational arithmetic (normal equations are safe without rounding)."""
    xs, ys = [Fraction(v) for v in x], [Fraction(v) for v in y]
    size = degree + 1
    rows = [
        [sum(v ** (i + j) for v in xs) for j in range(size)] + [sum(w * v**i for v, w in zip(xs, ys))]
        for i in range(size)
    ]
    for k in range(size):
        pivot = next(r for r in range(k, size) if rows[r][k] != 0)
        rows[k], rows[pivot] = rows[pivot], rows[k]
        for r in range(size):
            if r != k:
                factor = rows[r][k] / rows[k][k]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[k])]
    coefficients = [rows[k][size] / rows[k][k] for k in range(size)]
    residuals = [w - sum(c * v**j for j, c in enumerate(coefficients)) for v, w in zip(xs, ys)]
    mean_y = sum(ys) / len(ys)
    ss_residual = sum(r * r for r in residuals)
    ss_total = sum((w - mean_y) ** 2 for w in ys)
    return {
        "coefficients": [float(c) for c in coefficients],
        "r2": float(1 - ss_residual / ss_total),
        "residualStandardError": math.sqrt(ss_residual / (len(xs) - size)),
    }


class DescribesSamples(unittest.TestCase):
    def test_agrees_with_the_statistics_module(self):
        rng = random.Random(7)
        values = [rng.lognormvariate(0, 2) for _ in range(1001)] + [-3.5, 0.0]
        result = describe({"values": values})
        self.assertEqual(result["count"], 1003)
        self.assertAlmostEqual(result["mean"], statistics.mean(values), delta=1e-13 * abs(statistics.mean(values)))
        self.assertEqual(result["median"], statistics.median(values))
        self.assertAlmostEqual(result["stddev"], statistics.stdev(values), delta=1e-13 * statistics.stdev(values))
        self.assertEqual((result["min"], result["max"]), (min(values), max(values)))
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        for percent in stats.PERCENTS:
            with self.subTest(percent=percent):
                expected = cuts[percent - 1]
                self.assertAlmostEqual(result["quantiles"][f"p{percent}"], expected, delta=1e-12 * abs(expected))

    def test_interpolates_percentiles_as_numpy_does(self):
        result = describe({"values": [4, 1, 3, 2]})
        # numpy.percentile([1, 2, 3, 4], [1, 5, 25, 50, 75, 95, 99])
        expected = {"p1": 1.03, "p5": 1.15, "p25": 1.75, "p50": 2.5, "p75": 3.25, "p95": 3.85, "p99": 3.97}
        for name, value in expected.items():
            self.assertAlmostEqual(result["quantiles"][name], value, places=12)
        self.assertEqual((result["mean"], result["median"]), (2.5, 2.5))
        self.assertAlmostEqual(result["stddev"], math.sqrt(5 / 3), places=15)

    def test_bins_a_histogram_with_the_last_bin_closed(self):
        histogram = describe({"values": [1, 2, 2, 3, 10], "bins": 3})["histogram"]
        self.assertEqual(histogram, {"edges": [1.0, 4.0, 7.0, 10.0], "counts": [4, 0, 1]})
        # a value on an inner edge belongs to the bin on its right
        self.assertEqual(describe({"values": [0, 1, 2], "bins": 2})["histogram"]["counts"], [1, 2])
        self.assertEqual(describe({"values": [0, 5], "bins": 1})["histogram"], {"edges": [0.0, 5.0], "counts": [2]})

    def test_uses_ten_bins_by_default_and_counts_every_value(self):
        rng = random.Random(3)
        values = [rng.gauss(0, 1) for _ in range(500)]
        histogram = describe({"values": values})["histogram"]
        self.assertEqual((len(histogram["edges"]), len(histogram["counts"])), (11, 10))
        self.assertEqual(sum(histogram["counts"]), 500)
        self.assertEqual(histogram["edges"], sorted(histogram["edges"]))

    def test_makes_one_bin_when_all_values_are_equal(self):
        result = describe({"values": [5, 5, 5], "bins": 20})
        self.assertEqual(result["histogram"], {"edges": [5.0, 5.0], "counts": [3]})
        self.assertEqual((result["stddev"], result["quantiles"]["p1"]), (0.0, 5.0))

    def test_gives_a_mean_between_min_and_max_and_a_constant_samples_mean_exactly(self):
        # The sum and the division each round: three 0.1s averaged 0.10000000000000002 (found by
        # test/e2e/fuzz-tasks.test.ts), 13 copies of 2^53 - 3 came out 2^53 - 2.
        for values in ([0.1] * 3, [9007199254740989] * 13, [1.7976931348623123e308] * 3, [1e-320] * 3, [0.1, 0.2, 0.3] * 7):
            result = describe({"values": values})
            self.assertTrue(result["min"] <= result["mean"] <= result["max"], (values[:3], result["mean"]))
            if len(set(values)) == 1:
                self.assertEqual(result["mean"], values[0], values[:2])
        exact = float(sum(map(Fraction, [0.1, 0.2, 0.3] * 7)) / 21)
        self.assertEqual(describe({"values": [0.1, 0.2, 0.3] * 7})["mean"], exact, "correctly rounded here")

    def test_gives_no_stddev_for_a_single_value(self):
        result = describe({"values": [7]})
        self.assertEqual((result["count"], result["mean"], result["median"], result["stddev"]), (1, 7.0, 7.0, None))

    def test_does_not_overflow_near_the_float_range(self):
        result = describe({"values": [1e308, 1e308, 1e308]})
        self.assertEqual((result["mean"], result["stddev"]), (1e308, 0.0))
        result = describe({"values": [-1e308, 1e308, 1e308]})
        self.assertAlmostEqual(result["mean"], 1e308 / 3, delta=1e293)
        self.assertAlmostEqual(result["stddev"], 2 / math.sqrt(3) * 1e308, delta=1e294)
        self.assertTrue(all(map(math.isfinite, result["histogram"]["edges"])))
        # a stddev beyond the float range is reported as null, not inf
        self.assertIsNone(describe({"values": [-1.7e308, 1.7e308]})["stddev"])

    def test_gives_the_mean_of_values_at_the_largest_float(self):
        # Each divided by 3 rounds up, and the thirds overflow again when added.
        top = sys.float_info.max
        for values in ([top] * 3, [-top] * 3, [top] * 9, [top, top, top / 2], [top] * 7 + [-top]):
            result = describe({"values": values})
            self.assertEqual(result["mean"], float(sum(map(Fraction, values)) / len(values)), values[:2])  # the exact mean, rounded once
            self.assertTrue(math.isfinite(result["mean"]))

    def test_refuses_non_finite_values(self):
        with self.assertRaises(TaskError) as caught:
            describe({"values": [1.0, math.nan]})
        self.assertEqual(caught.exception.details, {"index": 1})

    def test_describes_its_input_with_a_strict_schema(self):
        assert_strict_schema(self, stats.DESCRIBE_SCHEMA)
        assert_strict_schema(self, stats.REGRESSION_SCHEMA)

    def test_describes_its_outputs_with_strict_schemas_that_null_figures_match(self):
        assert_strict_output_schema(self, stats.DESCRIBE_OUTPUT_SCHEMA)
        assert_strict_output_schema(self, stats.REGRESSION_OUTPUT_SCHEMA)
        # describe() and regression() check every result; these are the ones with nulls or edges.
        self.assertIsNone(describe({"values": [3]})["stddev"])
        self.assertEqual(describe({"values": [2, 2], "bins": stats.MAX_BINS})["stddev"], 0)
        self.assertEqual(len(describe({"values": [0, 1], "bins": stats.MAX_BINS})["histogram"]["edges"]), stats.MAX_BINS + 1)
        self.assertIsNone(regression({"x": [1, 2, 3], "y": [1, 4, 9], "degree": 2})["residualStandardError"])
        self.assertEqual(len(regression({"x": list(range(9)), "y": list(range(9)), "degree": 5})["coefficients"]), 6)
        wrong = describe({"values": [1, 2]})
        del wrong["quantiles"]["p99"]
        with self.assertRaisesRegex(AssertionError, "p99"):
            checked_output(stats.DESCRIBE_OUTPUT_SCHEMA, wrong)


class FitsPolynomials(unittest.TestCase):
    def assertCoefficients(self, actual, expected, tolerance=1e-9):
        self.assertEqual(len(actual), len(expected))
        for got, want in zip(actual, expected):
            self.assertAlmostEqual(got, want, delta=tolerance * max(1.0, abs(want)))

    def test_recovers_exact_polynomials(self):
        xs = [x / 2 for x in range(-10, 11)]
        cases = [
            (1, [2.0, -3.0]),
            (2, [3.0, -2.0, 0.5]),
            (3, [1.0, 1.0, -2.0, 0.25]),
            (5, [0.5, -1.0, 0.0, 2.0, -0.125, 0.01]),
        ]
        for degree, coefficients in cases:
            with self.subTest(degree=degree):
                ys = [sum(c * x**j for j, c in enumerate(coefficients)) for x in xs]
                result = regression({"x": xs, "y": ys, "degree": degree})
                self.assertEqual(result["degree"], degree)
                self.assertCoefficients(result["coefficients"], coefficients)
                self.assertAlmostEqual(result["r2"], 1.0, places=12)
                self.assertLess(result["residualStandardError"], 1e-9)

    def test_recovers_a_line_far_from_the_origin(self):
        xs = [1000.0 + i for i in range(10)]
        result = regression({"x": xs, "y": [2 + 3 * x for x in xs]})
        self.assertCoefficients(result["coefficients"], [2.0, 3.0])

    def test_matches_textbook_values_for_anscombes_first_data_set(self):
        result = regression({"x": ANSCOMBE_X, "y": ANSCOMBE_Y})
        self.assertCoefficients(result["coefficients"], [3.0001, 0.5001], tolerance=1e-4)
        self.assertAlmostEqual(result["r2"], 0.6665, places=4)
        self.assertAlmostEqual(result["residualStandardError"], 1.2366, places=4)

    def test_matches_exact_rational_least_squares_on_noisy_data(self):
        rng = random.Random(11)
        xs = [round(rng.uniform(-4, 9), 3) for _ in range(40)]
        ys = [round(1.5 - 0.7 * x + 0.2 * x * x - 0.01 * x**3 + rng.gauss(0, 0.5), 3) for x in xs]
        for degree in (1, 2, 3, 4):
            with self.subTest(degree=degree):
                result = regression({"x": xs, "y": ys, "degree": degree})
                expected = exact_fit(xs, ys, degree)
                self.assertCoefficients(result["coefficients"], expected["coefficients"])
                self.assertAlmostEqual(result["r2"], expected["r2"], places=12)
                self.assertAlmostEqual(result["residualStandardError"], expected["residualStandardError"], places=12)
        anscombe = exact_fit(ANSCOMBE_X, ANSCOMBE_Y, 1)
        result = regression({"x": ANSCOMBE_X, "y": ANSCOMBE_Y})
        self.assertCoefficients(result["coefficients"], anscombe["coefficients"], tolerance=1e-12)

    def test_fits_degree_plus_one_points_exactly_without_a_standard_error(self):
        result = regression({"x": [0, 1, 3], "y": [1, 0, 4], "degree": 2})
        self.assertCoefficients(result["coefficients"], [1.0, -2.0, 1.0])
        self.assertIsNone(result["residualStandardError"])

    def test_reports_r2_of_one_for_a_constant_response(self):
        result = regression({"x": [1, 2, 3, 4], "y": [2.5, 2.5, 2.5, 2.5]})
        self.assertEqual(result["r2"], 1.0)
        self.assertCoefficients(result["coefficients"], [2.5, 0.0], tolerance=1e-12)

    def test_refuses_unpaired_values(self):
        with self.assertRaisesRegex(TaskError, "x has 3 values but y has 2"):
            regression({"x": [1, 2, 3], "y": [1, 2]})

    def test_refuses_fewer_points_than_coefficients(self):
        with self.assertRaisesRegex(TaskError, "degree-2 fit needs at least 3 points, got 2"):
            regression({"x": [1, 2], "y": [1, 2], "degree": 2})
        with self.assertRaisesRegex(TaskError, "needs at least 2 points, got 0"):
            regression({"x": [], "y": []})

    def test_refuses_a_singular_design(self):
        with self.assertRaisesRegex(TaskError, "1 distinct value"):
            regression({"x": [2, 2, 2], "y": [1, 2, 3]})
        with self.assertRaisesRegex(TaskError, "2 distinct value"):
            regression({"x": [1, 1, 2, 2], "y": [1, 2, 3, 4], "degree": 2})
        with self.assertRaisesRegex(TaskError, "numerically singular"):
            regression({"x": [0.0, 5e-324], "y": [1, 2]})
        # x's distinct values are counted a few thousand at a time: the ones after the first lot count too.
        many = [1] * 5000
        with self.assertRaisesRegex(TaskError, "x has 2 distinct values?.* needs at least 3"):
            regression({"x": many + [2], "y": many + [2], "degree": 2})
        self.assertEqual(regression({"x": many + [2, 3], "y": many + [2, 3], "degree": 2})["degree"], 2)

    def test_refuses_coefficients_beyond_the_float_range(self):
        with self.assertRaisesRegex(TaskError, "beyond the range"):
            regression({"x": [0, 1e-200, 2e-200], "y": [0, 1, 5], "degree": 2})

    def test_refuses_non_finite_values(self):
        with self.assertRaisesRegex(TaskError, r"y\[1\] is inf"):
            regression({"x": [1, 2], "y": [1, math.inf]})


if __name__ == "__main__":
    unittest.main()
