"""A tiny command-line greeter."""

import argparse


def greet(name: str) -> str:
    return f"Hello, {name}!"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="greet")
    parser.add_argument("name")
    args = parser.parse_args(argv)
    message = greet(args.name)
    print(message)
    return message


if __name__ == "__main__":
    main()
