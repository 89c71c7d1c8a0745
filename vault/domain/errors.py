"""Errors the vault raises, and what a client sees for each.

Every error a client can see carries its HTTP status, its contract
``error_code`` and a title; the HTTP layer turns one into an RFC 9457 body
without knowing the class. Adapters map their drivers' errors at their own
boundary (``raise StoreUnavailable(...) from exc``), so nothing above them
catches psycopg, sqlite3 or botocore exceptions.

    VaultError
    ├── Unauthenticated              401 UNAUTHENTICATED
    │   └── InvalidToken             a bearer token was sent and failed a check
    ├── InvalidRequest (ValueError)  422 VALIDATION_ERROR
    ├── DocumentNotFound (LookupError) 404 DOCUMENT_NOT_FOUND
    ├── DocumentDisposed             410 DOCUMENT_DISPOSED (a tombstone: its bytes are gone)
    ├── Forbidden (PermissionError)  403 UNAUTHORIZED_ACCESS
    ├── EmptyFile (ValueError)       400 EMPTY_FILE
    ├── InvalidFileType (ValueError) 400 INVALID_FILE_TYPE
    ├── InvalidMetadata (ValueError) 400 INVALID_METADATA
    ├── InvalidExpiry (ValueError)   400 INVALID_SIGNED_URL_EXPIRY
    ├── FileTooLarge (ValueError)    413 FILE_SIZE_EXCEEDED
    │   └── BodyTooLarge             a body read whole (JSON) is over its limit
    ├── DuplicateDocument            409 DUPLICATE_DOCUMENT
    ├── Busy                         503 SERVICE_BUSY
    ├── DependencyUnavailable (ConnectionError) 503 DEPENDENCY_UNAVAILABLE
    │   ├── StoreUnavailable         the metadata store
    │   └── BlobStoreUnavailable     the object store
    └── BlobUnreadable (OSError)     a stored object is missing or fails its checks;
                                     never reaches a client (verification reports mismatch)

``ConfigError`` is separate: it stops start-up and names the variable.
"""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID


class VaultError(Exception):
    """Base of every error the vault reports on purpose."""

    status: ClassVar[int] = 500
    error_code: ClassVar[str] = "INTERNAL_ERROR"
    title: ClassVar[str] = "Internal Server Error"

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.title
        super().__init__(self.detail)

    def extra(self) -> dict[str, Any]:
        """Fields added to the problem body beside the standard ones."""
        return {}

    def headers(self) -> dict[str, str]:
        """Headers the HTTP answer carries beside the body."""
        return {}


class Unauthenticated(VaultError):
    status = 401
    error_code = "UNAUTHENTICATED"
    title = "Unauthenticated"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class InvalidToken(Unauthenticated):
    """A bearer token was sent and failed a check; the detail names the check, never the token."""

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class InvalidRequest(VaultError, ValueError):
    status = 422
    error_code = "VALIDATION_ERROR"
    title = "Validation Error"

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        summary = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        super().__init__(summary or "Request validation failed")

    @classmethod
    def field(cls, location: str, name: str, message: str) -> InvalidRequest:
        return cls([{"loc": [location, name], "msg": message}])

    def extra(self) -> dict[str, Any]:
        return {"errors": self.errors}


class DocumentNotFound(VaultError, LookupError):
    status = 404
    error_code = "DOCUMENT_NOT_FOUND"
    title = "Document Not Found"

    def __init__(self, document_id: UUID) -> None:
        self.document_id = document_id
        super().__init__(f"Document {document_id} not found")


class DocumentDisposed(VaultError):
    """The document was disposed of: its row stays as a tombstone, its bytes are destroyed,
    so it can no longer be downloaded, verified or changed."""

    status = 410
    error_code = "DOCUMENT_DISPOSED"
    title = "Document Disposed"

    def __init__(self, document_id: UUID) -> None:
        self.document_id = document_id
        super().__init__(f"Document {document_id} was disposed of; only its record remains")


class LedgerNotFound(VaultError, LookupError):
    """A tile, entry bundle or leaf the log does not hold (yet)."""

    status = 404
    error_code = "NOT_FOUND"
    title = "Not Found"


class Forbidden(VaultError, PermissionError):
    status = 403
    error_code = "UNAUTHORIZED_ACCESS"
    title = "Unauthorized Access"


class EmptyFile(VaultError, ValueError):
    status = 400
    error_code = "EMPTY_FILE"
    title = "Empty File"

    def __init__(self) -> None:
        super().__init__("The uploaded file is empty")


class InvalidFileType(VaultError, ValueError):
    status = 400
    error_code = "INVALID_FILE_TYPE"
    title = "Invalid File Type"

    def __init__(self, detail: str, allowed_types: tuple[str, ...]) -> None:
        self.allowed_types = allowed_types
        super().__init__(detail)

    def extra(self) -> dict[str, Any]:
        return {"allowed_types": list(self.allowed_types)}


class InvalidMetadata(VaultError, ValueError):
    status = 400
    error_code = "INVALID_METADATA"
    title = "Invalid Metadata"

    def __init__(self, detail: str = "metadata must be valid JSON") -> None:
        super().__init__(detail)


class InvalidExpiry(VaultError, ValueError):
    status = 400
    error_code = "INVALID_SIGNED_URL_EXPIRY"
    title = "Invalid Signed URL Expiry"


class FileTooLarge(VaultError, ValueError):
    status = 413
    error_code = "FILE_SIZE_EXCEEDED"
    title = "File Size Exceeded"

    def __init__(self, max_size_bytes: int) -> None:
        self.max_size_bytes = max_size_bytes
        super().__init__(f"File exceeds the maximum size of {max_size_bytes} bytes")

    def extra(self) -> dict[str, Any]:
        return {"max_size_bytes": self.max_size_bytes}


class BodyTooLarge(FileTooLarge):
    """A request body that is read whole (the verify route's JSON) is over its limit."""

    def __init__(self, max_size_bytes: int) -> None:
        self.max_size_bytes = max_size_bytes
        VaultError.__init__(
            self, f"Request body exceeds the maximum size of {max_size_bytes} bytes"
        )


class DuplicateDocument(VaultError):
    status = 409
    error_code = "DUPLICATE_DOCUMENT"
    title = "Duplicate Document"

    def __init__(self, existing_document_id: UUID) -> None:
        self.existing_document_id = existing_document_id
        super().__init__("A document with the same content already exists for this entity")

    def extra(self) -> dict[str, Any]:
        return {"existing_document_id": str(self.existing_document_id)}


class Busy(VaultError):
    """An actor's mailbox stayed full until the caller's deadline."""

    status = 503
    error_code = "SERVICE_BUSY"
    title = "Service Busy"

    def __init__(self, actor: str, retry_after: int = 1) -> None:
        self.actor = actor
        self.retry_after = retry_after
        super().__init__(f"The {actor} actor is at capacity; retry shortly")

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class DependencyUnavailable(VaultError, ConnectionError):
    status = 503
    error_code = "DEPENDENCY_UNAVAILABLE"
    title = "Dependency Unavailable"


class StoreUnavailable(DependencyUnavailable):
    """The metadata store could not be reached or failed mid-transaction."""


class BlobStoreUnavailable(DependencyUnavailable):
    """The object store could not be reached."""


class BlobUnreadable(VaultError, OSError):
    """A stored object is missing, truncated or fails its authentication tag."""

    title = "Stored Object Unreadable"


class ConfigError(Exception):
    """A configuration value is invalid; the message names the variable."""

    def __init__(self, variable: str, message: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {message}")
