# mypy: ignore-errors
# ruff: noqa: PT009
# (A fixture repository's own tests, run with unittest inside each run's workspace.)

import unittest

from textkit.words import word_count


class WordCountTest(unittest.TestCase):
    def test_counts_words(self) -> None:
        self.assertEqual(word_count("one two  three"), 3)

    def test_empty_text_has_none(self) -> None:
        self.assertEqual(word_count(""), 0)
