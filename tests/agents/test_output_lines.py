"""The one splitter both outside-agent sinks read a command's output through (agents.process
OutputLines): hostile reads — a relay token or a UTF-8 character split between two reads, a
token where a long line is cut, a last line with no end — and the two sinks that use it."""

from __future__ import annotations

from typing import Any, cast

from ruflo.agents.loop import Transcript
from ruflo.agents.presets.base import Reader
from ruflo.agents.presets.executor import ReaderSink
from ruflo.agents.process import OutputLines, OutputStream
from ruflo.event_kinds import EventKind

TOKEN = "rly-Zq8TokenForThisAttemptOnly"


def read(lines: OutputLines, *reads: bytes) -> list[str]:
    pieces = [piece for data in reads for piece in lines.feed(data)]
    return pieces + lines.finish()


def withholding(limit: int | None = None) -> OutputLines:
    lines = OutputLines(limit)
    lines.secrets.append(TOKEN)
    return lines


def test_a_token_split_between_two_reads_never_comes_out() -> None:
    half = len(TOKEN) // 2
    for limit in (None, 2000):
        pieces = read(withholding(limit), f"key={TOKEN[:half]}".encode(),
                      f"{TOKEN[half:]} ok\n".encode())
        assert pieces == ["key=[relay token] ok\n"]


def test_a_token_where_a_long_line_is_cut_is_withheld_whole() -> None:
    line = "x" * 15 + TOKEN + "y" * 40 + "\n"
    for split in range(len(line) + 1):  # every place the token can straddle a read
        pieces = read(withholding(20), line[:split].encode(), line[split:].encode())
        assert "".join(pieces) == "x" * 15 + "[relay token]" + "y" * 40 + "\n"
        assert all(len(piece) <= 20 for piece in pieces), pieces
        assert not any(TOKEN[:6] in piece for piece in pieces), pieces


def test_a_token_longer_than_a_piece_is_its_own_piece() -> None:
    pieces = read(withholding(8), b"ab" + TOKEN[:10].encode(), TOKEN[10:].encode() + b"cd\n")
    assert pieces == ["ab", "[relay token]", "cd\n"]


def test_a_character_split_between_reads_comes_whole() -> None:
    euro, smile = "€".encode(), "😀".encode()
    pieces = read(OutputLines(), b"price " + euro[:1], euro[1:2], euro[2:] + b" " + smile[:3],
                  smile[3:] + b"\n")
    assert pieces == ["price € 😀\n"]
    # A character cut at the piece bound of a long line is not split into two bad halves.
    assert read(OutputLines(4), b"abc" + smile[:2], smile[2:] + b"d\n") == ["abc😀", "d\n"]


def test_the_last_line_comes_without_a_line_end_and_a_cut_character_as_one_mark() -> None:
    lines = OutputLines()
    assert lines.feed(b"one\ntwo") == ["one\n"]
    assert lines.feed(b" and more \xe2\x82") == []
    assert lines.finish() == ["two and more \ufffd"]
    assert lines.finish() == []


def test_line_ends_are_kept_as_the_command_wrote_them() -> None:
    pieces = read(OutputLines(), b"dos\r", b"\nunix\n\n", b"\rlone cr\n")
    assert pieces == ["dos\r\nunix\n\n", "\rlone cr\n"]


def test_lines_that_came_together_share_a_piece_up_to_the_limit() -> None:
    lines = OutputLines(10)
    assert lines.feed(b"one\ntwo\nthree\nfour") == ["one\ntwo\n", "three\n"]
    assert lines.feed(b"\n") == ["four\n"]
    assert OutputLines().feed(b"one\ntwo\nthree\nfour") == ["one\ntwo\nthree\n"]


def test_a_long_line_comes_whole_without_a_limit_and_in_pieces_with_one() -> None:
    long = b"z" * 100_000 + b"\n"
    reads = [long[i:i + 4096] for i in range(0, len(long), 4096)]
    assert read(OutputLines(), *reads) == [long.decode()]
    pieces = read(OutputLines(2000), *reads)
    assert [len(piece) for piece in pieces] == [2000] * 50 + [1]
    assert "".join(pieces) == long.decode()


class Recorder:
    """Stands in for the transcript: the events the sinks add, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[EventKind, dict[str, Any]]] = []

    def add(self, kind: EventKind, **data: Any) -> None:
        self.events.append((kind, data))


def test_both_sinks_withhold_a_split_token_and_keep_lines_whole() -> None:
    reads = [f"a\nb {TOKEN[:5]}".encode(), f"{TOKEN[5:]} é".encode()[:-1], b"\xa9\n\nc"]

    recorder = Recorder()
    stream = OutputStream(cast(Transcript, recorder), chunk_chars=2000)
    stream.lines.secrets.append(TOKEN)
    for data in reads:
        stream.feed(data)
    stream.flush()
    assert [d["text"] for _, d in recorder.events] == ["a\n", "b [relay token] é\n\n", "c"]

    recorder = Recorder()
    sink = ReaderSink(cast(Transcript, recorder), Reader())
    sink.lines.secrets.append(TOKEN)
    for data in reads:
        sink.feed(data)
    sink.flush()
    # One reader call a line, without its end; the blank line gives no event.
    assert [d["text"] for _, d in recorder.events] == ["a", "b [relay token] é", "c"]
