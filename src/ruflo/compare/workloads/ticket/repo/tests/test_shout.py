"""The ticket's acceptance test: `--shout` upper-cases the greeting; without it nothing changes."""

# mypy: ignore-errors
# ruff: noqa: PT009
# (A fixture repository's own tests, run with unittest inside each run's workspace.)

import unittest

from greet import main


class ShoutTest(unittest.TestCase):
    def test_shout_flag_upper_cases(self) -> None:
        self.assertEqual(main(["Ada", "--shout"]), "HELLO, ADA!")

    def test_default_is_unchanged(self) -> None:
        self.assertEqual(main(["Ada"]), "Hello, Ada!")
