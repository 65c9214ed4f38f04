# mypy: ignore-errors
# ruff: noqa: PT009, PT027
# (A fixture repository's own tests, run with unittest inside each run's workspace.)

import unittest

from stats import mean, median


class MeanTest(unittest.TestCase):
    def test_mean(self) -> None:
        self.assertEqual(mean([1, 2, 3, 4]), 2.5)

    def test_mean_of_nothing_is_an_error(self) -> None:
        with self.assertRaises(ValueError):
            mean([])


class MedianTest(unittest.TestCase):
    def test_odd_length(self) -> None:
        self.assertEqual(median([3, 1, 2]), 2)

    def test_even_length_averages_the_middle_pair(self) -> None:
        self.assertEqual(median([4, 1, 3, 2]), 2.5)

    def test_median_of_nothing_is_an_error(self) -> None:
        with self.assertRaises(ValueError):
            median([])
