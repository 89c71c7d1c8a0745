"""Units, sizes and the number formats of the report."""

from collections.abc import Sequence

KB = 1000
MB = 1000 * 1000
MiB = 1024 * 1024

_SIZE_UNITS = {
    "": MB,
    "b": 1,
    "kb": KB,
    "mb": MB,
    "gb": 1000 * MB,
    "kib": 1024,
    "mib": MiB,
    "gib": 1024 * MiB,
}


def parse_size(text: str) -> int:
    """Bytes for '100MB', '1.5 MiB', '100kb' or a bare number of MB."""
    cleaned = text.strip().lower().replace(" ", "")
    number = cleaned.rstrip("kmgib")
    unit = cleaned[len(number) :]
    if unit not in _SIZE_UNITS or not number:
        raise ValueError(f"not a size: {text!r}")
    size = int(float(number) * _SIZE_UNITS[unit])
    if size <= 0:
        raise ValueError(f"size must be positive: {text!r}")
    return size


def format_size(size: int) -> str:
    """'100 MB', '100 KB', '1.5 MB' or '512 B' (decimal units)."""
    for unit, scale in (("GB", 1000 * MB), ("MB", MB), ("KB", KB)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} B"


def format_seconds(value: float | None) -> str:
    """Latency for humans: '12.3 ms', '1.24 s' or 'n/a'."""
    if value is None:
        return "n/a"
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def format_number(value: float | None, digits: int = 1) -> str:
    """A rate or amount with fixed decimals, or 'n/a'."""
    return "n/a" if value is None else f"{value:,.{digits}f}"


def format_percent(value: float | None) -> str:
    """A fraction as a whole percentage ('85%'), or 'n/a'."""
    return "n/a" if value is None else f"{value * 100:.0f}%"


def format_mib(value: int | None) -> str:
    """Bytes as MiB with one decimal, or 'n/a'."""
    return "n/a" if value is None else f"{value / MiB:.1f} MiB"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> str:
    """Columns padded to their widest cell: the first left-aligned, the rest right-aligned."""
    widths = [len(h) for h in headers]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, expected {len(headers)}")
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return (indent + "  ".join(parts)).rstrip()

    return "\n".join([line(headers), *(line(row) for row in rows)])
