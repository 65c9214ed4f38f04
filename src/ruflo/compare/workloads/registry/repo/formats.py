"""The export formats the tool knows: a name and its file extension."""

FORMATS = {
    "text": ".txt",
}


def extension(name: str) -> str:
    """The file extension of an export format."""
    return FORMATS[name]
