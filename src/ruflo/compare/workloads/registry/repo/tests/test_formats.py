# mypy: ignore-errors
# ruff: noqa: PT009
# (A fixture repository's own tests, run with unittest inside each run's workspace.)

import unittest

from formats import FORMATS, extension


class FormatsTest(unittest.TestCase):
    def test_text_is_known(self) -> None:
        self.assertEqual(extension("text"), ".txt")

    def test_every_extension_starts_with_a_dot(self) -> None:
        for name, suffix in FORMATS.items():
            self.assertTrue(suffix.startswith("."), name)
