"""Where a page of a listing starts (documents, incidents)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import attrs


@attrs.frozen
class PageCursor:
    """Where a listing page starts: strictly after this (created_at, id), newest first."""

    created_at: datetime
    document_id: UUID
