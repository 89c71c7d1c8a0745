"""Schemathesis against the real server: nothing a client sends gets a 5xx.

Every operation of the spec the server itself serves (``/openapi.json``) is
driven as ``st run`` would drive it, through schemathesis's engine: its
examples, coverage and fuzzing phases, positive and negative cases (wrong
types, missing fields, boundary values, odd strings), and one case in four
carries one hostile value (thousands of digits, JSON nested thousands deep,
lone surrogates, bytes that are not UTF-8, bodies past the limit). Checks: no
5xx; every answer's status, content type, headers and body as the spec
documents them (every 2xx its response schema); and every 4xx, documented or
not, an ``application/problem+json`` body matching the spec's ``Problem``
schema with its own status. Most cases carry a valid admin
identity and some name documents, entities and a download token that really
exist, so they reach the handlers; the rest keep what was generated, so
identity parsing and unknown ids are fuzzed too. Afterwards the server must
still be healthy, must not have logged an unhandled error or a crashed
actor, and must stop with exit code 0.

Knobs (``make fuzz`` sets them for a long run): ``VAULT_FUZZ_EXAMPLES``
(default 80) examples per operation in the fuzzing phase; ``VAULT_FUZZ_SECONDS``
a time budget that repeats the fuzzing phase until it is spent;
``VAULT_FUZZ_SEED`` (default 0, so the suite is repeatable); ``VAULT_FUZZ_WORKERS``
(default 1); ``VAULT_FUZZ_REPORT`` a file to write the run's figures to.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import httpx
import pytest
import schemathesis
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from schemathesis.engine import events, from_schema
from schemathesis.engine.statistic import Statistic
from schemathesis.hooks import GLOBAL_HOOK_DISPATCHER
from schemathesis.transport.requests import REQUESTS_TRANSPORT

from tests.system.service import Server, actor, launch, pdf, post_upload

pytestmark = pytest.mark.system

EXAMPLES = int(os.environ.get("VAULT_FUZZ_EXAMPLES", "80"))
SECONDS = int(os.environ["VAULT_FUZZ_SECONDS"]) if os.environ.get("VAULT_FUZZ_SECONDS") else None
SEED = int(os.environ.get("VAULT_FUZZ_SEED", "0"))
WORKERS = int(os.environ.get("VAULT_FUZZ_WORKERS", "1"))
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "every_4xx_is_a_problem",
]
SEEDED_SHARE = 3
"""One case in this many names a seeded document, entity or token."""
ANONYMOUS_SHARE = 8
"""One case in this many keeps its generated identity headers (often none, or invalid)."""
LOG_EVENTS_THAT_FAIL = ("unhandled_error", "actor_crashed", "actor_failed")
BINARY_TYPES = (
    "application/pdf",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
)
"""Upload types schemathesis has no serializer for; their parts are sent as raw bytes."""


SPEC_URI = "urn:document-vault:served-openapi"
_problem_validators: dict[int, Draft202012Validator] = {}


def _problem_validator(spec: dict[str, Any]) -> Draft202012Validator:
    """A validator for the spec's own ``Problem`` schema, made once per loaded spec."""
    if id(spec) not in _problem_validators:
        registry = Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(spec))
        _problem_validators[id(spec)] = Draft202012Validator(
            {"$ref": f"{SPEC_URI}#/components/schemas/Problem"}, registry=registry
        )
    return _problem_validators[id(spec)]


@schemathesis.check
def every_4xx_is_a_problem(ctx: Any, response: Any, case: schemathesis.Case) -> None:
    """Every 4xx, documented or not (405, 413 ...), is problem+json holding the spec's Problem."""
    if not 400 <= response.status_code < 500 or case.method.upper() == "HEAD":
        return
    content_type = (response.headers.get("content-type") or [""])[0]
    if content_type.split(";")[0].strip() != "application/problem+json":
        raise AssertionError(f"{response.status_code} came as {content_type!r}, not a problem")
    body = json.loads(response.content)
    errors = [e.message for e in _problem_validator(case.operation.schema.raw_schema)
              .iter_errors(body)]
    if errors:
        raise AssertionError(f"{response.status_code} problem breaks the Problem schema: {errors}")
    if body["status"] != response.status_code:
        raise AssertionError(f"problem status {body['status']} on a {response.status_code}")


@attrs.frozen
class Seeds:
    """What exists on the fuzzed server: documents, their entities, a signed token."""

    identity: dict[str, str]
    documents: tuple[str, ...]
    entities: tuple[str, ...]
    tokens: tuple[str, ...]


@attrs.define
class Tally:
    """What the fuzzer sent: requests and statuses by operation (workers share it)."""

    statuses: Counter[tuple[str, int]] = attrs.Factory(Counter)
    lock: threading.Lock = attrs.Factory(threading.Lock)

    def count(self, label: str, status: int) -> None:
        with self.lock:
            self.statuses[(label, status)] += 1

    def by_operation(self) -> dict[str, dict[int, int]]:
        table: dict[str, dict[int, int]] = {}
        for (label, status), count in sorted(self.statuses.items()):
            table.setdefault(label, {})[status] = count
        return table


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the whole run, stopped at the end (exit 0 required)."""
    folder = tmp_path_factory.mktemp("fuzz")
    # Warnings and errors only: a long run sends ~100,000 requests, and an unhandled
    # error or a crashed actor (what the test looks for) is logged at those levels.
    server = launch(folder / "data", folder / "server.log", {"LOG_LEVEL": "WARNING"})
    try:
        yield server
    finally:
        code = server.stop()
    assert code == 0, server.log_tail()


@pytest.fixture(scope="module")
def seeds(fuzzed_server: Server) -> Seeds:
    """A few real documents (one verified, one archived), their entities and a token."""
    identity = actor("admin")
    entities = [uuid.uuid4() for _ in range(2)]
    documents: list[str] = []
    with fuzzed_server.client() as client:
        for index in range(4):
            created = post_upload(client, identity, entities[index % 2], pdf(512))
            assert created.status_code == 201, created.text
            documents.append(created.json()["id"])
        verified = client.post(
            "/api/v1/documents/verify", headers=identity, json={"document_id": documents[1]}
        )
        assert verified.status_code == 200, verified.text
        archived = client.delete(f"/api/v1/documents/{documents[2]}", headers=identity)
        assert archived.status_code == 200, archived.text
        issued = client.get(
            f"/api/v1/documents/{documents[0]}/download", headers=identity,
            params={"expires_in": "3600"},
        )
        assert issued.status_code == 200, issued.text
    url = issued.json()["download_url"]
    fetched = httpx.get(url, timeout=30)
    assert fetched.status_code == 200, fetched.text
    token = urlsplit(url).path.rsplit("/", 1)[-1]
    return Seeds(identity, tuple(documents), tuple(str(e) for e in entities), (token,))


def _digest(case: schemathesis.Case) -> int:
    """A stable number per generated case, to pick what to substitute reproducibly."""
    shape = (case.path_parameters, case.query, case.headers, case.body)
    return zlib.crc32(repr(shape).encode("utf-8", "surrogatepass"))


FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "host", "connection"})
"""Headers that frame the message: the HTTP client's to write. A random value in one
(a generated header that happens to take the name) is refused by the HTTP/1.1 parser
with an empty 400 before the application sees the request, as RFC 9112 asks."""


def substitute(case: schemathesis.Case, seeds: Seeds) -> None:
    """Give most cases a valid identity, and some real ids, so they reach the handlers."""
    if case.headers and FRAMING_HEADERS & {name.lower() for name in case.headers}:
        case.headers = {
            k: v for k, v in case.headers.items() if k.lower() not in FRAMING_HEADERS
        }
    digest = _digest(case)
    if digest % ANONYMOUS_SHARE:
        case.headers = {**(case.headers or {}), **seeds.identity}
        _name_the_actor(case, seeds.identity["X-Actor-Id"])
    if digest // ANONYMOUS_SHARE % SEEDED_SHARE:
        return
    pick = digest // (ANONYMOUS_SHARE * SEEDED_SHARE)
    # Cases may share their containers: replace them, never edit them in place.
    params = dict(case.path_parameters or {})
    body = dict(case.body) if isinstance(case.body, dict) else None
    if "document_id" in params:
        params["document_id"] = seeds.documents[pick % len(seeds.documents)]
    elif "id" in params:
        pool = seeds.entities if case.method.upper() == "GET" else seeds.documents
        params["id"] = pool[pick % len(pool)]
    elif "token" in params:
        params["token"] = seeds.tokens[pick % len(seeds.tokens)]
    elif body is not None and case.path.endswith("/verify"):
        body["document_id"] = seeds.documents[pick % len(seeds.documents)]
    elif body is not None and case.path.endswith("/upload"):
        body["entity_id"] = seeds.entities[pick % len(seeds.entities)]
        if pick % 2:
            body["file"] = pdf(64 + pick % 512)
    if params:
        case.path_parameters = params
    if body is not None:
        case.body = body


ACTOR_FIELDS = ("uploaded_by", "verifier_id", "verified_by", "requestor_id", "archived_by")
"""The seed's actor fields: when sent, they must name the actor (else 403)."""
ACTOR_FIELDS_SET = frozenset(ACTOR_FIELDS)


def _name_the_actor(case: schemathesis.Case, actor_id: str) -> None:
    """Point every actor field the case sends at the actor, so it is not a 403 at once."""
    if isinstance(case.query, dict) and ACTOR_FIELDS_SET & case.query.keys():
        case.query = {k: actor_id if k in ACTOR_FIELDS_SET else v for k, v in case.query.items()}
    if isinstance(case.body, dict) and ACTOR_FIELDS_SET & case.body.keys():
        case.body = {k: actor_id if k in ACTOR_FIELDS_SET else v for k, v in case.body.items()}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


_ZERO_UUID = "00000000-0000-0000-0000-000000000000"
URL_VALUES: tuple[str, ...] = (
    "9" * 5000, "-" + "9" * 5000, "+" + "0" * 4400 + "7", "1e999", "-0", "\u0661\u0660",
    "1_0", " 7", "0x1f", "NaN", "", "\u00e9\u20ac\U0001f600", "%", "A" * 6000, "../../x",
    _b64(b"[" * 3000), _b64(b'{"a":' * 1500 + b"1" + b"}" * 1500), _b64(b"[" + b"9" * 5000 + b"]"),
    _b64(f'["0001-01-01T00:00:00+14:00", "{_ZERO_UUID}"]'.encode()),
    _b64(f'["9999-12-31T23:59:59-14:00", "{_ZERO_UUID}"]'.encode()),
    _b64(b'["2025-01-01T00:00:00+00:00", 5]'), _b64(b'["\\ud800", "x"]'), _b64(b"\xff\xfe"),
)
"""Query and path values: huge and odd numbers, odd text, cursors that decode to hostile
JSON; each short enough that the request head stays under hypercorn's 16 KiB."""
PATH_VALUES = tuple(value for value in URL_VALUES if value and "/" not in value)
"""Path values that still address the operation: an empty or slashed segment is another URL."""
FORM_VALUES: tuple[str | bytes, ...] = (
    *URL_VALUES,
    '{"description": "\\ud800"}', '{"\\udfff": 1}', '{"tags": ["\\ud83d"]}',
    '{"extra": {"n": ' + "9" * 5000 + "}}", '{"extra": {"n": ' + "9" * 4000 + "}}",
    '{"extra": {"n": 1e999}}', '{"extra": {"n": -1e999}}', '{"description": "a\\u0000b"}',
    '{"extra": ' + "[" * 300 + "]" * 300 + "}", '{"extra": ' + "[" * 900 + "]" * 900 + "}",
    '{"extra": ' + "[" * 20000 + "]" * 20000 + "}", '{"extra": {"a": ' * 40 + "1" + "}" * 80,
    b"\xff\xfe", b"\xed\xa0\x80", b"{\"description\": \"\xed\xa0\x80\"}",
)
"""Form field values: all of the above, metadata that is hostile JSON, bytes that are not UTF-8."""
JSON_BODIES: tuple[bytes, ...] = (
    b"[" * 50000 + b"]" * 50000, b'{"a":' * 20000 + b"1" + b"}" * 20000,
    b'{"document_id": ' + b"[" * 900 + b"]" * 900 + b"}",
    b'{"document_id": ' + b"9" * 5000 + b"}", b'{"document_id": 1e999}',
    b'{"document_id": NaN}', b'{"document_id": "\\ud800"}', b'{"\\udfff": 1}',
    b'{"document_id": "' + _ZERO_UUID.encode() + b'", "verifier_id": ' + b"9" * 5000 + b"}",
    b'{"document_id": "\xff"}', b"\xef\xbb\xbf{}", '{"document_id": 1}'.encode("utf-16"),
    b"", b"null", b"[]", b'"text"', b'{"document_id": "' + b"a" * 900_000 + b'"}',
    b'{"document_id": "' + b"a" * 1_200_000 + b'"}',
    b"{" + b",".join(b'"k%d": %d' % (i, i) for i in range(20000)) + b"}",
)
"""Whole JSON bodies: deep, huge numbers, lone surrogates, not UTF-8, over the 1 MiB limit."""
HEADER_VALUES: tuple[str, ...] = (
    "9" * 5000, "A" * 6000, "admin ", "ADMIN", "\u00e9", "{" * 3000, _ZERO_UUID, "-1",
)
"""Values for the identity and request-id headers (latin-1, as HTTP carries them)."""
HOSTILE_SHARE = 4
"""One case in this many gets one hostile value in one place."""
HEADERS = ("X-Actor-Id", "X-Actor-Role", "X-Request-ID")


def make_hostile(case: schemathesis.Case) -> None:
    """Put one hostile value in one place of the case (query, path, header, form, JSON body)."""
    digest = _digest(case) // 7
    if digest % HOSTILE_SHARE:
        return
    pick = digest // HOSTILE_SHARE
    slots: list[tuple[str, str]] = [("query", p.name) for p in case.operation.query]
    slots += [("path", name) for name in case.path_parameters or {}]
    slots += [("header", name) for name in HEADERS]
    if isinstance(case.body, dict) and case.path.endswith("/upload"):
        slots += [("form", name) for name in (*case.body.keys(), "metadata", "token_id")]
    elif case.path.endswith("/verify"):
        slots += [("json", "")] * 4
    kind, name = slots[pick % len(slots)]
    choice = pick // len(slots)
    if kind == "query":
        case.query = {**(case.query or {}), name: URL_VALUES[choice % len(URL_VALUES)]}
    elif kind == "path":
        case.path_parameters = {
            **(case.path_parameters or {}), name: PATH_VALUES[choice % len(PATH_VALUES)]
        }
    elif kind == "header":
        case.headers = {**(case.headers or {}), name: HEADER_VALUES[choice % len(HEADER_VALUES)]}
    elif kind == "form":
        assert isinstance(case.body, dict)
        case.body = {**case.body, name: FORM_VALUES[choice % len(FORM_VALUES)]}
    else:
        case.body = JSON_BODIES[choice % len(JSON_BODIES)]


@pytest.fixture
def hooks(seeds: Seeds) -> Iterator[Tally]:
    """Substitution before each call and a tally after it, for this test only."""
    tally = Tally()

    def before_call(context: Any, case: schemathesis.Case, kwargs: dict[str, Any]) -> None:
        substitute(case, seeds)
        make_hostile(case)

    def after_call(context: Any, case: schemathesis.Case, response: Any) -> None:
        tally.count(case.operation.label, response.status_code)

    GLOBAL_HOOK_DISPATCHER.register_hook_with_name(before_call, "before_call")
    GLOBAL_HOOK_DISPATCHER.register_hook_with_name(after_call, "after_call")
    schemathesis.serializer.alias(list(BINARY_TYPES), "application/octet-stream")
    try:
        yield tally
    finally:
        GLOBAL_HOOK_DISPATCHER.unregister(before_call)
        GLOBAL_HOOK_DISPATCHER.unregister(after_call)
        REQUESTS_TRANSPORT.unregister_serializer(*BINARY_TYPES)


def fuzz_config(base_url: str) -> schemathesis.Config:
    config = schemathesis.Config.from_dict({
        "base-url": base_url,
        "seed": SEED,
        "suppress-health-check": ["all"],
        "workers": WORKERS,
        "request-timeout": 30,
        "generation": {
            "mode": "all",
            "max-examples": EXAMPLES,
            "database": "none",
            "with-security-parameters": False,
        },
        "phases": {"stateful": {"enabled": False}},
        **({"max-time": SECONDS} if SECONDS else {}),
    })
    config.projects.override.checks.update(included_check_names=CHECKS)
    return config


def report(stats: Statistic, tally: Tally, elapsed: float, stop: str) -> str:
    """The run's figures, one line per operation with its statuses."""
    table = tally.by_operation()
    lines = [
        f"schemathesis fuzz: {len(table)} operations, {stats.total_cases} cases generated, "
        f"{sum(tally.statuses.values())} requests, {stats.total_failures} failures, "
        f"{stats.errored_cases} errored, {elapsed:.1f} s, stopped: {stop}, seed {SEED}, "
        f"{EXAMPLES} fuzzing examples per operation"
        + (f", time budget {SECONDS} s" if SECONDS else "")
    ]
    for label, statuses in table.items():
        codes = ", ".join(f"{status}: {count}" for status, count in statuses.items())
        lines.append(f"  {label}: {sum(statuses.values())} ({codes})")
    return "\n".join(lines)


def failures_text(stats: Statistic, config: schemathesis.Config) -> str:
    output = config.projects.get_default().output
    return "\n\n".join(
        f"{label}\n" + group.format(index=None, curl=group.code_sample, config=output)
        for label, groups in stats.failures.items()
        for group in groups.values()
    )


def test_no_request_gets_a_server_error_and_every_answer_is_as_specified(
    fuzzed_server: Server, hooks: Tally
) -> None:
    """Every operation, fuzzed: no 5xx, answers as the spec says, the server still healthy."""
    config = fuzz_config(fuzzed_server.base_url)
    # The document as the server serves it; loaded from a dict, not from its URL, because
    # schemathesis leaves out the operation its schema was fetched from (/openapi.json).
    served = httpx.get(f"{fuzzed_server.base_url}/openapi.json", timeout=10)
    assert served.status_code == 200, served.text
    api = schemathesis.openapi.from_dict(served.json(), config=config)
    stats, errors, stop = Statistic(), [], "unknown"
    started = time.monotonic()
    for event in from_schema(api).execute():
        if isinstance(event, events.ScenarioFinished):
            stats.on_scenario_finished(event.recorder)
        elif isinstance(event, events.NonFatalError):
            errors.append(f"{event.label}: {event.info.title}: {event.value}")
        elif isinstance(event, events.FatalError):
            raise event.exception
        elif isinstance(event, events.EngineFinished):
            stop = event.stop_reason.value
    figures = report(stats, hooks, time.monotonic() - started, stop)
    print(figures)
    if os.environ.get("VAULT_FUZZ_REPORT"):
        Path(os.environ["VAULT_FUZZ_REPORT"]).write_text(figures + "\n", "utf-8")

    assert (errors, stats.total_failures) == ([], 0), failures_text(stats, config)
    operations = {
        f"{method.upper()} {path}"
        for path, item in api.raw_schema["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert operations <= hooks.by_operation().keys(), figures
    with fuzzed_server.client() as client:
        health = client.get("/healthz")
    assert health.status_code == 200, health.text
    trouble = [line for line in fuzzed_server.log_lines()
               if line.get("event") in LOG_EVENTS_THAT_FAIL]
    assert trouble == [], trouble[:3]
