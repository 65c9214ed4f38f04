"""BERT's uncased WordPiece tokenizer, as all-MiniLM-L6-v2's tokenizer.json configures it, in
plain Python: loading the `tokenizers` library and its JSON costs a CLI search ~45 ms, reading
vocab.txt ~10 ms. Tests hold its ids equal to the `tokenizers` library's. Depends on the
standard library only.

The steps, as the library runs them: special tokens ([CLS], [MASK]...) are taken verbatim;
the rest is cleaned (control characters dropped, whitespace made a space), CJK ideographs are
spaced out, accents stripped (NFD, less the non-spacing marks) and lowercased; it is split at
whitespace and around punctuation; each word becomes its longest vocabulary pieces from the
left ("##" marks a piece inside a word), or [UNK] when it can't be covered or exceeds 100
characters. [CLS] and [SEP] enclose the result, truncated to the model's length. (Unicode
tables are Python's: on characters the library's older tables class differently, a rare word
may become [UNK] in one and not the other.)
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_WORD_CHARS = 100
_SPECIAL_SPLIT = re.compile("(" + "|".join(re.escape(token) for token in SPECIAL) + ")")
_WHITESPACE = frozenset("\t\n\r\x0b\x0c \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
                        + "".join(chr(c) for c in range(0x2000, 0x200B)))
"""Rust's char::is_whitespace (the Unicode White_Space property), which the library uses."""
_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
"""The library's ranges of ideographs, each made a word of its own."""
_ASCII_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


class WordPiece:
    """Text to the model's token ids."""

    def __init__(self, vocab_file: Path, *, max_tokens: int = 256) -> None:
        words = vocab_file.read_text(encoding="utf-8").split("\n")
        if words and words[-1] == "":
            words.pop()
        self.vocab = {word: index for index, word in enumerate(words)}
        self.max_tokens = max_tokens
        self.unk = self.vocab["[UNK]"]
        self.cls = self.vocab["[CLS]"]
        self.sep = self.vocab["[SEP]"]
        self._kinds: dict[str, str] = {}
        """character -> "drop", "space", "split" (punctuation, CJK) or "keep", as met."""

    def encode(self, text: str) -> list[int]:
        """[CLS], the text's pieces (at most max_tokens - 2), [SEP]."""
        ids = [self.cls]
        room = self.max_tokens - 1
        for part in _SPECIAL_SPLIT.split(text):
            if not part:
                continue
            if part in SPECIAL:
                ids.append(self.vocab[part])
            else:
                for word in self._words(part):
                    ids.extend(self._pieces(word))
                    if len(ids) >= room:
                        break
            if len(ids) >= room:
                break
        del ids[room:]
        ids.append(self.sep)
        return ids

    def _words(self, text: str) -> list[str]:
        out: list[str] = []
        kinds = self._kinds
        for char in text:
            kind = kinds.get(char)
            if kind is None:
                kind = kinds[char] = _kind(char)
            if kind == "keep":
                out.append(char)
            elif kind == "space":
                out.append(" ")
            elif kind == "split":
                out.append(f" {char} ")
        # Accents go after the clean-up: NFD can split a character into letter and mark.
        folded = "".join(c for c in unicodedata.normalize("NFD", "".join(out))
                         if unicodedata.category(c) != "Mn")
        lowered = "".join(c.lower() for c in folded)  # per character, as the library does
        words: list[str] = []
        for chunk in lowered.split():
            words.extend(_split_punctuation(chunk))
        return words

    def _pieces(self, word: str) -> list[int]:
        if len(word) > MAX_WORD_CHARS:
            return [self.unk]
        vocab = self.vocab
        pieces: list[int] = []
        start = 0
        while start < len(word):
            end = len(word)
            found = None
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                found = vocab.get(piece)
                if found is not None:
                    break
                end -= 1
            if found is None:
                return [self.unk]
            pieces.append(found)
            start = end
        return pieces


def _kind(char: str) -> str:
    code = ord(char)
    if char in "\t\n\r":
        return "space"
    if code == 0 or code == 0xFFFD or unicodedata.category(char)[0] == "C":
        return "drop"
    if char in _WHITESPACE:
        return "space"
    if any(low <= code <= high for low, high in _CJK):
        return "split"
    return "keep"


def _is_punctuation(char: str) -> bool:
    return char in _ASCII_PUNCTUATION or unicodedata.category(char)[0] == "P"


def _split_punctuation(chunk: str) -> list[str]:
    if not any(_is_punctuation(c) for c in chunk):
        return [chunk]
    words: list[str] = []
    current: list[str] = []
    for char in chunk:
        if _is_punctuation(char):
            if current:
                words.append("".join(current))
                current = []
            words.append(char)
        else:
            current.append(char)
    if current:
        words.append("".join(current))
    return words
