"""``load_json`` and the metadata rules: JSON a client sends, within what the service can hold."""

from __future__ import annotations

import pytest

from vault.domain.errors import InvalidMetadata
from vault.domain.validation import (
    MAX_JSON_DEPTH,
    MAX_JSON_INTEGER,
    MIN_JSON_INTEGER,
    JsonRefused,
    load_json,
    parse_metadata,
)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


class TestDepth:
    def test_the_deepest_nesting_allowed_is_parsed(self) -> None:
        """Arrays nested exactly ``MAX_JSON_DEPTH`` deep are accepted."""
        value = load_json(nested(MAX_JSON_DEPTH))
        for _ in range(MAX_JSON_DEPTH - 1):
            value = value[0]
        assert value == []

    @pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 300, 900, 5_000, 100_000])
    def test_one_level_more_or_thousands_more_is_refused(self, depth: int) -> None:
        """Deeper nesting is refused for one reason, below and beyond the parser's own guard."""
        with pytest.raises(JsonRefused, match=f"deeper than {MAX_JSON_DEPTH} levels"):
            load_json(nested(depth))

    def test_objects_count_as_levels_too(self) -> None:
        """Objects nest like arrays."""
        with pytest.raises(JsonRefused, match="deeper"):
            load_json('{"a":' * (MAX_JSON_DEPTH + 1) + "1" + "}" * (MAX_JSON_DEPTH + 1))

    def test_brackets_inside_strings_are_not_nesting(self) -> None:
        """A string full of brackets and escaped quotes is one flat value."""
        text = '["\\"' + "[" * 500 + '{", "]]]"]'
        assert load_json(text) == ['"' + "[" * 500 + "{", "]]]"]

    def test_a_caller_may_ask_for_less(self) -> None:
        """``max_depth`` narrows the limit (a cursor is one flat array)."""
        assert load_json('["a", "b"]', max_depth=1) == ["a", "b"]
        with pytest.raises(JsonRefused):
            load_json('[["a"]]', max_depth=1)


class TestNumbers:
    @pytest.mark.parametrize("value", [MIN_JSON_INTEGER, -1, 0, MAX_JSON_INTEGER])
    def test_integers_within_64_bits_are_kept_exactly(self, value: int) -> None:
        """The bounds themselves are accepted, and stay integers."""
        assert load_json(f'{{"n": {value}}}') == {"n": value}

    @pytest.mark.parametrize(
        "literal",
        [str(MAX_JSON_INTEGER + 1), str(MIN_JSON_INTEGER - 1), "9" * 4000, "9" * 5000,
         "-" + "9" * 5000],
    )
    def test_integers_beyond_64_bits_are_refused(self, literal: str) -> None:
        """Past the encoder's range, and past Python's 4300-digit limit, is refused, not a crash."""
        with pytest.raises(JsonRefused, match="integer is out of range"):
            load_json(f"[{literal}]")

    @pytest.mark.parametrize("literal", ["1e999", "-1e999", "1" + "0" * 400 + ".0"])
    def test_numbers_too_large_for_a_double_are_refused(self, literal: str) -> None:
        """A float that would become infinity is refused rather than stored as null."""
        with pytest.raises(JsonRefused, match="number is out of range"):
            load_json(f"[{literal}]")

    @pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
    def test_non_json_constants_are_refused(self, constant: str) -> None:
        """Python's extensions to JSON are not JSON."""
        with pytest.raises(JsonRefused, match="is not JSON"):
            load_json(f"[{constant}]")


class TestText:
    @pytest.mark.parametrize(
        "text", ['"\\ud800"', '"\\udfff"', '{"\\ud83d": 1}', '["ok", {"k": ["\\udc00x"]}]']
    )
    def test_a_lone_surrogate_escape_is_refused(self, text: str) -> None:
        """Values and keys holding a lone surrogate are refused: no UTF-8 can carry them."""
        with pytest.raises(JsonRefused, match="lone surrogate"):
            load_json(text)

    def test_a_raw_lone_surrogate_in_text_is_refused(self) -> None:
        """Text that already holds a surrogate code point is refused before parsing."""
        with pytest.raises(JsonRefused, match="lone surrogate"):
            load_json('"\ud800"')

    def test_a_surrogate_pair_is_one_character(self) -> None:
        """A well-formed pair is an astral character, kept."""
        assert load_json('"\\ud83d\\ude00"') == "\U0001f600"

    def test_an_escaped_backslash_before_u_is_plain_text(self) -> None:
        """``\\\\ud800`` is a backslash and five letters, not a surrogate."""
        assert load_json('"\\\\ud800"') == "\\ud800"

    @pytest.mark.parametrize(
        "raw", [b"\xff\xfe{}", b'{"a": "\xed\xa0\x80"}', '{"a": 1}'.encode("utf-16")]
    )
    def test_bytes_that_are_not_utf8_are_refused(self, raw: bytes) -> None:
        """JSON is UTF-8: invalid bytes, encoded surrogates and UTF-16 are refused."""
        with pytest.raises(JsonRefused, match="UTF-8"):
            load_json(raw)

    def test_a_leading_byte_order_mark_is_ignored(self) -> None:
        """RFC 8259 lets a parser ignore a BOM, and this one does."""
        assert load_json(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}


class TestMetadata:
    @pytest.mark.parametrize(
        "raw",
        [
            '{"description": "\\ud800"}',
            '{"\\udfff": "key"}',
            '{"extra": {"deep": ' + nested(300) + "}}",
            '{"extra": {"n": ' + "9" * 4000 + "}}",
            '{"extra": {"n": 18446744073709551616}}',
            '{"extra": {"n": 1e999}}',
        ],
    )
    def test_json_no_answer_could_carry_is_invalid_metadata(self, raw: str) -> None:
        """Metadata that could be stored but never answered is refused, in the contract's words."""
        with pytest.raises(InvalidMetadata) as caught:
            parse_metadata(raw)

        assert caught.value.detail == "metadata must be valid JSON"

    @pytest.mark.parametrize("raw", ['{"description": "a\\u0000b"}', '{"\\u0000": 1}'])
    def test_nul_characters_are_invalid_metadata(self, raw: str) -> None:
        """U+0000 is refused: PostgreSQL's jsonb cannot hold it."""
        with pytest.raises(InvalidMetadata, match="NUL"):
            parse_metadata(raw)

    def test_an_escaped_backslash_and_u0000_is_plain_text(self) -> None:
        """The six characters ``\\u0000`` after an escaped backslash are kept as text."""
        assert parse_metadata('{"description": "\\\\u0000"}') == {"description": "\\u0000"}

    def test_metadata_at_the_limits_is_kept(self) -> None:
        """The largest integer and the deepest nesting allowed pass unchanged."""
        raw = '{"extra": {"n": 18446744073709551615, "deep": ' + nested(MAX_JSON_DEPTH - 2) + "}}"
        value = parse_metadata(raw)
        assert value is not None
        assert value["extra"]["n"] == MAX_JSON_INTEGER
