"""The upload body: multipart/form-data streamed in pieces, each document unique."""

import uuid
from collections.abc import Iterator, Mapping

import attrs

from ops.bench.units import MiB

CHUNK_SIZE = MiB


def document_prefix(run_tag: str, counter: int) -> bytes:
    """Leading bytes of one benchmark document: a PDF header and a unique, fixed-width tag."""
    return f"%PDF-1.7\n%vault-bench {run_tag} {counter:012d}\n".encode("ascii")


@attrs.frozen
class MultipartBody:
    """A multipart/form-data body streamed in pieces, never joined in memory.

    The file part is ``prefix`` followed by ``payload[len(prefix):]``, so the
    file is exactly ``len(payload)`` bytes and the random payload is shared by
    every upload of that size while the prefix makes each one unique.
    """

    boundary: str
    preamble: bytes
    prefix: bytes
    payload: bytes
    epilogue: bytes
    chunk_size: int = CHUNK_SIZE

    @property
    def file_size(self) -> int:
        return len(self.payload)

    @property
    def content_length(self) -> int:
        return len(self.preamble) + self.file_size + len(self.epilogue)

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Content-Type": f"multipart/form-data; boundary={self.boundary}",
            "Content-Length": str(self.content_length),
        }

    def chunks(self) -> Iterator[bytes]:
        """Yield preamble and prefix, the rest of the file in chunk_size pieces, the epilogue."""
        yield self.preamble + self.prefix
        view = memoryview(self.payload)
        for start in range(len(self.prefix), len(view), self.chunk_size):
            yield bytes(view[start : start + self.chunk_size])
        yield self.epilogue


def multipart_body(
    form: Mapping[str, str],
    *,
    prefix: bytes,
    payload: bytes,
    filename: str = "bench.pdf",
    content_type: str = "application/pdf",
    boundary: str | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> MultipartBody:
    """Build the streamed body for form fields plus one file part named ``file``."""
    if len(prefix) > len(payload):
        raise ValueError("payload shorter than the document prefix")
    boundary = boundary or f"vault-bench-{uuid.uuid4().hex}"
    sep = f"--{boundary}\r\n"
    parts = [
        f'{sep}Content-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in form.items()
    ]
    parts.append(
        f'{sep}Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    )
    return MultipartBody(
        boundary=boundary,
        preamble="".join(parts).encode("utf-8"),
        prefix=prefix,
        payload=payload,
        epilogue=f"\r\n--{boundary}--\r\n".encode("ascii"),
        chunk_size=chunk_size,
    )
