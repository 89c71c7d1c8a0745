"""The suites where the permissions service decides (EPR_MOCK_MODE=false).

``conftest.py`` points the vault at the ``permission_service`` fixture's
fake service (a real HTTP server on loopback) with a ``TIMEOUT`` of its own.
"""

TIMEOUT = 0.3
"""EPR_SERVICE_TIMEOUT in these suites: how long a hanging service is waited for."""
