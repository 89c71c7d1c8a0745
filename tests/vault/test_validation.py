"""Upload rules: filenames, metadata, MIME types and streaming ingest."""

from __future__ import annotations

import hashlib
import os

import pytest

from vault.config import DEFAULT_ALLOWED_MIME_TYPES
from vault.domain.errors import EmptyFile, FileTooLarge, InvalidFileType, InvalidMetadata
from vault.domain.validation import (
    Ingest,
    IngestResult,
    clean_filename,
    normalize_mime,
    parse_metadata,
)

PDF = "application/pdf"
PNG = "image/png"
JPEG = "image/jpeg"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DOC = "application/msword"
XLS = "application/vnd.ms-excel"
TEXT = "text/plain"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

GOOD_SAMPLES = {
    PDF: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n",
    PNG: PNG_MAGIC + b"\x00\x00\x00\rIHDR",
    JPEG: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    DOCX: b"PK\x03\x04\x14\x00\x06\x00word/document.xml",
    XLSX: b"PK\x03\x04\x14\x00\x06\x00xl/workbook.xml",
    DOC: OLE_MAGIC + b"\x00" * 16,
    XLS: OLE_MAGIC + b"\x01" * 16,
    TEXT: "Grüße, 世界 — ok 🎉\n".encode(),
}
BAD_SAMPLES = {
    PDF: b"%PDX-1.7 not a pdf",
    PNG: b"\x89PNG\r\n\x1a\x0b....",
    JPEG: b"\xff\xd8\x00\xe0",
    DOCX: b"PK\x05\x06" + b"\x00" * 18,
    XLSX: b"%PDF-1.4 pretending",
    DOC: b"PK\x03\x04 a zip, not OLE",
    XLS: OLE_MAGIC[:-1] + b"\x00 nearly",
    TEXT: b"valid start \xff\xfe then invalid",
}
SIGNATURES = {
    PDF: b"%PDF-",
    PNG: PNG_MAGIC,
    JPEG: b"\xff\xd8\xff",
    DOCX: b"PK\x03\x04",
    XLSX: b"PK\x03\x04",
    DOC: OLE_MAGIC,
    XLS: OLE_MAGIC,
}


def _ingest(mime: str, max_bytes: int = 1_000_000) -> Ingest:
    return Ingest(mime, DEFAULT_ALLOWED_MIME_TYPES, max_bytes)


def _feed_all(ingest: Ingest, data: bytes, chunk: int) -> IngestResult:
    for start in range(0, len(data), chunk):
        ingest.feed(data[start : start + chunk])
    return ingest.finish()


class TestCleanFilename:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("report.pdf", "report.pdf"),
            ("/etc/passwd", "passwd"),
            ("C:\\Users\\me\\Desktop\\deal.docx", "deal.docx"),
            ("..\\..\\x.pdf", "x.pdf"),
            ("../../x.pdf", "x.pdf"),
            ("a/b\\c/d.txt", "d.txt"),
        ],
    )
    def test_paths_are_removed(self, raw: str, expected: str) -> None:
        """Only the part after the last slash or backslash is kept."""
        assert clean_filename(raw) == expected

    def test_control_characters_are_removed(self) -> None:
        """C0 controls, DEL and C1 controls disappear from the name."""
        assert clean_filename("in\x00vo\x1fice\x7f\x85\r\n.pdf") == "invoice.pdf"

    def test_surrounding_whitespace_is_stripped(self) -> None:
        """Leading and trailing whitespace is dropped, inner spaces kept."""
        assert clean_filename("  term sheet v2.pdf \t") == "term sheet v2.pdf"

    def test_unicode_is_kept(self) -> None:
        """Non-ASCII letters, marks and emoji are part of the name as sent."""
        name = "Übersicht — договор 合同 🎉.pdf"

        assert clean_filename(name) == name

    def test_format_characters_are_kept(self) -> None:
        """Only Cc characters are removed; a zero-width joiner stays."""
        assert clean_filename("a\u200db.pdf") == "a\u200db.pdf"

    def test_lone_surrogates_are_removed(self) -> None:
        """Undecodable bytes smuggled in as surrogates are dropped."""
        assert clean_filename("bad\udcffname.pdf") == "badname.pdf"

    @pytest.mark.parametrize("raw", [None, "", "   ", "\x00\x01", "dir/", "a/..", ".", "\\"])
    def test_nothing_left_becomes_document(self, raw: str | None) -> None:
        """A name with nothing usable left is ``document``."""
        assert clean_filename(raw) == "document"

    def test_long_name_keeps_its_extension(self) -> None:
        """A 300-character name is cut to 255 by trimming the stem, not the extension."""
        cleaned = clean_filename("a" * 296 + ".pdf")

        assert len(cleaned) == 255
        assert cleaned == "a" * 251 + ".pdf"

    def test_long_unicode_name_counts_characters(self) -> None:
        """The limit is in characters, so multi-byte letters count once."""
        cleaned = clean_filename("ж" * 300 + ".docx")

        assert cleaned == "ж" * 250 + ".docx"

    def test_long_name_with_long_extension_is_cut_plainly(self) -> None:
        """An 'extension' too long to be one is not preserved."""
        raw = "a" * 200 + "." + "b" * 99

        assert clean_filename(raw) == raw[:255]

    def test_long_name_without_extension_is_cut(self) -> None:
        """A long name with no dot is cut at 255 characters."""
        assert clean_filename("x" * 300) == "x" * 255

    def test_exactly_255_characters_is_unchanged(self) -> None:
        """A name at the limit is kept whole."""
        name = "n" * 251 + ".pdf"

        assert clean_filename(name) == name

    def test_trim_does_not_leave_a_space_before_the_extension(self) -> None:
        """Whitespace exposed by trimming the stem is removed."""
        cleaned = clean_filename("a" * 250 + " " * 20 + ".pdf")

        assert cleaned == "a" * 250 + ".pdf"


class TestParseMetadata:
    @pytest.mark.parametrize("raw", [None, "", "   \n"])
    def test_absent_metadata_is_none(self, raw: str | None) -> None:
        """No metadata field, or a blank one, means no metadata."""
        assert parse_metadata(raw) is None

    def test_known_and_unknown_keys_are_kept(self) -> None:
        """A valid object comes back whole, unknown keys included."""
        raw = '{"description": "Q3", "tags": ["a", "b"], "extra": {"k": 1}, "custom": [1]}'

        assert parse_metadata(raw) == {
            "description": "Q3",
            "tags": ["a", "b"],
            "extra": {"k": 1},
            "custom": [1],
        }

    def test_null_known_keys_are_accepted(self) -> None:
        """A known key set to null counts as not given."""
        assert parse_metadata('{"description": null, "tags": null, "extra": null}') == {
            "description": None,
            "tags": None,
            "extra": None,
        }

    @pytest.mark.parametrize(
        "raw",
        [
            "{not json",
            "[1, 2]",
            '"text"',
            "42",
            "null",
            "true",
            '{"a": NaN}',
            '{"a": Infinity}',
            "[" * 100_000 + "]" * 100_000,
        ],
    )
    def test_not_a_json_object_is_refused(self, raw: str) -> None:
        """Anything but a strict JSON object is InvalidMetadata with the contract's message."""
        with pytest.raises(InvalidMetadata) as caught:
            parse_metadata(raw)

        assert caught.value.detail == "metadata must be valid JSON"

    @pytest.mark.parametrize(
        ("raw", "field"),
        [
            ('{"description": 5}', "description"),
            ('{"tags": "a,b"}', "tags"),
            ('{"tags": ["a", 1]}', "tags"),
            ('{"extra": [1]}', "extra"),
            ('{"extra": "x"}', "extra"),
        ],
    )
    def test_known_keys_of_the_wrong_type_are_refused(self, raw: str, field: str) -> None:
        """A known key with the wrong type names that key in the detail."""
        with pytest.raises(InvalidMetadata) as caught:
            parse_metadata(raw)

        assert f"metadata.{field}" in caught.value.detail


class TestNormalizeMime:
    @pytest.mark.parametrize(
        ("declared", "expected"),
        [
            ("text/plain; charset=utf-8", "text/plain"),
            ("Application/PDF", "application/pdf"),
            ("  image/png  ", "image/png"),
            ("IMAGE/JPEG;q=1", "image/jpeg"),
        ],
    )
    def test_lowercased_without_parameters(self, declared: str, expected: str) -> None:
        """Case and parameters do not matter."""
        assert normalize_mime(declared) == expected

    @pytest.mark.parametrize("declared", [None, "", " ; charset=utf-8"])
    def test_undeclared_is_octet_stream(self, declared: str | None) -> None:
        """No declared type is treated as application/octet-stream."""
        assert normalize_mime(declared) == "application/octet-stream"


class TestAllowedTypes:
    def test_type_not_allowed_is_refused_at_once(self) -> None:
        """A declared type outside the list fails before any byte, listing what is allowed."""
        with pytest.raises(InvalidFileType) as caught:
            Ingest("application/zip", DEFAULT_ALLOWED_MIME_TYPES, 100)

        assert caught.value.allowed_types == DEFAULT_ALLOWED_MIME_TYPES
        assert "application/zip" in caught.value.detail

    def test_undeclared_type_is_refused(self) -> None:
        """Without a declared type the upload is not allowed by default."""
        with pytest.raises(InvalidFileType):
            Ingest(None, DEFAULT_ALLOWED_MIME_TYPES, 100)

    def test_parameters_and_case_do_not_matter(self) -> None:
        """``Text/Plain; charset=utf-8`` is the allowed ``text/plain``."""
        ingest = Ingest("Text/Plain; charset=utf-8", DEFAULT_ALLOWED_MIME_TYPES, 100)

        assert ingest.mime_type == "text/plain"

    def test_type_without_signature_is_accepted_as_declared(self) -> None:
        """An allowed type with no known signature takes any bytes."""
        ingest = Ingest("text/csv", ("text/csv",), 100)
        ingest.feed(b"\xff\x00 anything")

        assert ingest.finish().size_bytes == 11


class TestSignatures:
    @pytest.mark.parametrize("mime", list(GOOD_SAMPLES))
    def test_matching_content_is_accepted(self, mime: str) -> None:
        """Bytes that start like the declared type pass."""
        data = GOOD_SAMPLES[mime]

        result = _feed_all(_ingest(mime), data, chunk=len(data))

        assert result.size_bytes == len(data)

    @pytest.mark.parametrize("mime", list(BAD_SAMPLES))
    def test_mismatching_content_is_refused(self, mime: str) -> None:
        """Bytes that do not look like the declared type fail on the first chunk."""
        ingest = _ingest(mime)

        with pytest.raises(InvalidFileType, match="does not look like") as caught:
            ingest.feed(BAD_SAMPLES[mime])

        assert caught.value.allowed_types == DEFAULT_ALLOWED_MIME_TYPES

    @pytest.mark.parametrize("mime", list(GOOD_SAMPLES))
    def test_one_byte_chunks_are_accepted(self, mime: str) -> None:
        """A signature arriving one byte at a time is still recognised."""
        data = GOOD_SAMPLES[mime]

        assert _feed_all(_ingest(mime), data, chunk=1).size_bytes == len(data)

    @pytest.mark.parametrize("mime", list(SIGNATURES))
    def test_every_split_point_of_the_signature_works(self, mime: str) -> None:
        """Splitting the file at any point inside the signature makes no difference."""
        data = GOOD_SAMPLES[mime]
        for split in range(1, len(SIGNATURES[mime]) + 1):
            ingest = _ingest(mime)
            ingest.feed(data[:split])
            ingest.feed(data[split:])
            assert ingest.finish().size_bytes == len(data)

    @pytest.mark.parametrize("mime", list(SIGNATURES))
    def test_wrong_byte_fails_as_soon_as_it_arrives(self, mime: str) -> None:
        """With 1-byte chunks the mismatch raises on the first wrong byte, not later."""
        magic = SIGNATURES[mime]
        ingest = _ingest(mime)
        for byte in magic[:-1]:
            ingest.feed(bytes([byte]))

        with pytest.raises(InvalidFileType):
            ingest.feed(bytes([magic[-1] ^ 0xFF]))

    @pytest.mark.parametrize("mime", list(SIGNATURES))
    def test_too_short_for_the_signature_fails_at_finish(self, mime: str) -> None:
        """A file shorter than its type's signature is not that type."""
        ingest = _ingest(mime)
        ingest.feed(SIGNATURES[mime][:-1])

        with pytest.raises(InvalidFileType, match="does not look like"):
            ingest.finish()

    def test_content_after_signature_is_not_checked(self) -> None:
        """Once the signature matched, later bytes are free-form."""
        ingest = _ingest(PDF)
        ingest.feed(b"%PDF-")
        ingest.feed(b"\x00\xff" * 100)

        assert ingest.finish().size_bytes == 205


class TestText:
    def test_utf8_split_across_chunks_is_valid(self) -> None:
        """A multi-byte character cut between chunks is reassembled, not refused."""
        data = "é€😀".encode()
        for split in range(1, len(data)):
            ingest = _ingest(TEXT)
            ingest.feed(data[:split])
            ingest.feed(data[split:])
            assert ingest.finish().size_bytes == len(data)

    def test_utf8_in_one_byte_chunks_is_valid(self) -> None:
        """Text fed byte by byte passes."""
        data = GOOD_SAMPLES[TEXT]

        assert _feed_all(_ingest(TEXT), data, chunk=1).size_bytes == len(data)

    def test_invalid_byte_late_in_the_file_is_refused(self) -> None:
        """UTF-8 is checked over the whole file, not just its start."""
        ingest = _ingest(TEXT)
        ingest.feed(b"a" * 10_000)

        with pytest.raises(InvalidFileType, match="UTF-8"):
            ingest.feed(b"b\xc0\xafc")

    def test_overlong_encoding_is_refused(self) -> None:
        """Overlong forms such as ``\\xc0\\xaf`` are not valid UTF-8."""
        with pytest.raises(InvalidFileType):
            _feed_all(_ingest(TEXT), b"\xc0\xaf", chunk=1)

    def test_incomplete_character_at_end_fails_at_finish(self) -> None:
        """A file ending inside a multi-byte character is refused when it ends."""
        ingest = _ingest(TEXT)
        ingest.feed("ok €".encode()[:-1])

        with pytest.raises(InvalidFileType, match="UTF-8"):
            ingest.finish()

    def test_binary_declared_as_text_is_refused(self) -> None:
        """A PNG declared as text/plain fails the UTF-8 check."""
        with pytest.raises(InvalidFileType):
            _feed_all(_ingest(TEXT), GOOD_SAMPLES[PNG], chunk=4)


class TestSize:
    def test_exactly_the_limit_is_accepted(self) -> None:
        """A file of exactly ``max_bytes`` passes."""
        ingest = _ingest(TEXT, max_bytes=10)

        assert _feed_all(ingest, b"x" * 10, chunk=3).size_bytes == 10

    def test_one_over_the_limit_is_refused_when_it_arrives(self) -> None:
        """The byte that passes the limit raises FileTooLarge with the limit."""
        ingest = _ingest(TEXT, max_bytes=10)
        ingest.feed(b"x" * 10)

        with pytest.raises(FileTooLarge) as caught:
            ingest.feed(b"x")

        assert caught.value.max_size_bytes == 10

    def test_one_big_chunk_over_the_limit_is_refused(self) -> None:
        """A single chunk larger than the limit is refused at once."""
        with pytest.raises(FileTooLarge):
            _ingest(PDF, max_bytes=10).feed(b"%PDF-" + b"x" * 20)

    def test_wrong_type_wins_over_too_large_within_a_chunk(self) -> None:
        """When one chunk is both the wrong type and too large, the type error is reported."""
        with pytest.raises(InvalidFileType):
            _ingest(PDF, max_bytes=10).feed(b"not a pdf at all, and long")


class TestEmpty:
    def test_zero_bytes_is_empty_file(self) -> None:
        """A file with no bytes raises EmptyFile at finish."""
        with pytest.raises(EmptyFile):
            _ingest(TEXT).finish()

    @pytest.mark.parametrize("mime", list(SIGNATURES))
    def test_empty_wins_over_missing_signature(self, mime: str) -> None:
        """An empty PDF (or any signed type) is EmptyFile, not InvalidFileType."""
        ingest = _ingest(mime)
        ingest.feed(b"")

        with pytest.raises(EmptyFile):
            ingest.finish()


class TestHash:
    @pytest.mark.parametrize("chunk", [1, 5, 4096, 65_536, 1_000_000])
    def test_hash_equals_hashlib_over_the_whole_input(self, chunk: int) -> None:
        """The reported SHA-256 and size match the whole input, however it was split."""
        data = b"%PDF-" + os.urandom(200_000 if chunk > 1 else 5_000)

        result = _feed_all(_ingest(PDF), data, chunk=chunk)

        assert result == IngestResult(
            sha256_hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data)
        )

    def test_hash_is_lowercase_hex(self) -> None:
        """The hash is 64 lowercase hexadecimal characters."""
        result = _feed_all(_ingest(TEXT), b"hello", chunk=5)

        assert result.sha256_hash == hashlib.sha256(b"hello").hexdigest()
        assert result.sha256_hash == result.sha256_hash.lower()
        assert len(result.sha256_hash) == 64
