"""Splitting answers at Telegram's 4096-character limit (counted in UTF-16 units)."""
from hypothesis import given, settings
from hypothesis import strategies as st

from userbot.chunks import TELEGRAM_LIMIT, split_message, utf16_length


def test_short_text_is_one_piece_and_empty_text_none():
    assert split_message("  hello  ") == ["hello"]
    assert split_message("   \n ") == []


def test_exactly_the_limit_is_one_piece_and_one_more_is_two():
    assert split_message("a" * 4096) == ["a" * 4096]
    assert [len(p) for p in split_message("a" * 4097)] == [4096, 1]


def test_splits_prefer_paragraphs_then_lines_then_spaces():
    paragraph = "word " * 500                       # 2,500 characters
    text = (paragraph.strip() + "\n\n") * 3
    pieces = split_message(text)
    assert pieces == [paragraph.strip()] * 3
    lines = ("x" * 100 + "\n") * 60                 # 6,060 characters, no blank lines
    assert all(p.endswith("x") for p in split_message(lines))


def test_emoji_count_twice():
    text = "😀" * 3000                             # 6,000 UTF-16 units
    pieces = split_message(text)
    assert [utf16_length(p) for p in pieces] == [4096, 1904]
    assert "".join(pieces) == text


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(["a", "b", " ", "\n", "é", "😀", "中"]), max_size=12_000),
       st.sampled_from([10, 100, TELEGRAM_LIMIT]))
def test_pieces_fit_and_keep_every_visible_character(text, limit):
    pieces = split_message(text, limit)
    assert all(0 < utf16_length(p) <= limit for p in pieces)
    assert "".join("".join(p.split()) for p in pieces) == "".join(text.split())
