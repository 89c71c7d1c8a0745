"""One folder or module per outside system, each behind a Protocol of ``vault.ports``.

Adapters block; actors call them from worker threads. A driver's own
exceptions are mapped here, at the boundary, to ``vault.domain.errors``.
"""
