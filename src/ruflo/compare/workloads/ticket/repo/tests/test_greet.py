# mypy: ignore-errors
# ruff: noqa: PT009
# (A fixture repository's own tests, run with unittest inside each run's workspace.)

import unittest

from greet import greet, main


class GreetTest(unittest.TestCase):
    def test_greets_by_name(self) -> None:
        self.assertEqual(greet("Ada"), "Hello, Ada!")

    def test_main_prints_the_greeting(self) -> None:
        self.assertEqual(main(["Ada"]), "Hello, Ada!")
