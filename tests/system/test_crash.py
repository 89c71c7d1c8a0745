"""Crash consistency of uploads: the real server SIGKILLed at random points while clients upload.

The crash test runs the embedded default (SQLite and encrypted files) in one
data folder. A few client threads upload without pause; the server is
killed with SIGKILL at random moments, some while it is still starting, and
started again on the same folder each time, with
``ORPHAN_BLOB_GRACE_SECONDS=0`` so that the start-up sweep removes every
blob a killed process left without a row. After every kill, with the
process dead, the folder itself is checked: no row lacks its blob, and the
blobs without a row are counted; the next start must report exactly those
as removed. At the end every upload that answered 201, and every document
listed, must verify, and the objects must be exactly those the rows name.

The kill points come from a seeded ``random.Random``; the seed is printed,
and ``CRASH_SEED=<seed>`` replays the same schedule (timing still varies,
so a replay is a strong hint, not a guarantee). ``CRASH_KILLS`` changes the
number of kills (default 20).

Beside it, focused tests plant objects and start the server once: with the
default grace period a young orphan is kept and reported, and a key that
names no document is left alone; a SIGTERM while the sweep still deletes
cancels it and exits 0; and on PostgreSQL and S3 (moto) the sweep lists and
cleans the bucket.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

from tests.polling import eventually_sync
from tests.system.service import (
    UPLOAD,
    Production,
    Server,
    StartServer,
    actor,
    blob_keys,
    blob_temp_files,
    document_keys,
    pdf,
    spawn,
    upload_form,
)

pytestmark = pytest.mark.system

KILLS = int(os.environ.get("CRASH_KILLS", "20"))
CLIENTS = 4
UPTIME = (0.05, 0.6)
"""Seconds a server runs after it first answers /healthz, before it is killed."""
STARTUP_KILLS = 0.2
"""The share of kills aimed at start-up instead (import, migration, sweep, bind)."""
STARTUP = (0.2, 1.8)
"""Seconds after spawning at which a start-up kill lands."""
SIZES = ((1024, 64 * 1024), (64 * 1024, 512 * 1024), (1024 * 1024, 3 * 1024 * 1024))
"""Upload sizes: mostly small, some over one frame (1 MiB) of the encrypted format."""
SIZE_WEIGHTS = (6, 3, 1)
SWEEP = "orphan_blobs_removed"
NO_GRACE = {"ORPHAN_BLOB_GRACE_SECONDS": "0"}


@attrs.frozen
class Answered:
    """An upload the server answered."""

    status: int
    body: dict[str, Any]
    sha256: str
    entity: uuid.UUID


class Target:
    """Where the clients upload now: a base URL, none while the server is down, or the end."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._url: str | None = None
        self._done = False

    def point_at(self, url: str | None) -> None:
        with self._changed:
            self._url = url
            self._changed.notify_all()

    def finish(self) -> None:
        with self._changed:
            self._done = True
            self._changed.notify_all()

    def current(self) -> str | None:
        """The URL to upload to, waiting while there is none; None once finished."""
        with self._changed:
            self._changed.wait_for(lambda: self._done or self._url is not None)
            return None if self._done else self._url


@attrs.define
class Uploads:
    """What the clients saw, shared between their threads."""

    answered: list[Answered] = attrs.field(factory=list)
    cut_off: int = 0
    """Uploads sent whose answer never came (the server died first)."""
    crashed: list[BaseException] = attrs.field(factory=list)
    """What ended a client thread other than the end of the test."""
    lock: threading.Lock = attrs.field(factory=threading.Lock)


def upload_forever(target: Target, entity: uuid.UUID, rng: random.Random, seen: Uploads) -> None:
    """One client: upload new documents for ``entity`` until the target is finished."""
    try:
        _upload_forever(target, entity, rng, seen)
    except BaseException as exc:
        with seen.lock:
            seen.crashed.append(exc)
        raise


def _upload_forever(target: Target, entity: uuid.UUID, rng: random.Random, seen: Uploads) -> None:
    headers = actor("issuer")
    with httpx.Client(timeout=30.0) as client:
        while (url := target.current()) is not None:
            low, high = rng.choices(SIZES, SIZE_WEIGHTS)[0]
            content = pdf(rng.randint(low, high))
            try:
                response = client.post(
                    url + UPLOAD, headers=headers, data=upload_form(entity),
                    files={"file": ("crash.pdf", content, "application/pdf")},
                )
            except httpx.ConnectError:
                continue  # that server is gone and the target not yet moved on: never sent
            except httpx.TransportError:
                with seen.lock:
                    seen.cut_off += 1
                continue
            with seen.lock:
                seen.answered.append(Answered(
                    response.status_code, response.json(), hashlib.sha256(content).hexdigest(),
                    entity,
                ))


@attrs.define
class Run:
    """One server process of the crash test, and what its start had to clean up."""

    server: Server
    orphans_before: set[str]
    """Objects without a row when it was started (left by the killed processes)."""


class Fleet:
    """The servers of one test, one after the other on one data folder."""

    def __init__(self, tmp_path: Path, data_dir: Path) -> None:
        self.tmp_path = tmp_path
        self.data_dir = data_dir
        self.runs: list[Run] = []

    def spawn(self, orphans: set[str]) -> Server:
        log_path = self.tmp_path / f"server-{len(self.runs)}.log"
        server = spawn(self.data_dir, log_path, NO_GRACE)
        self.runs.append(Run(server, orphans))
        return server

    def tails(self) -> str:
        return "\n".join(
            f"--- {run.server.log_path.name} ---\n{run.server.log_tail(20)}"
            for run in self.runs[-3:]
        )

    def kill_all(self) -> None:
        for run in self.runs:
            if run.server.running():
                run.server.process.kill()
                run.server.process.wait()


@pytest.fixture
def fleet(tmp_path: Path, data_dir: Path) -> Iterator[Fleet]:
    servers = Fleet(tmp_path, data_dir)
    try:
        yield servers
    finally:
        servers.kill_all()


def kill(server: Server) -> None:
    server.process.send_signal(signal.SIGKILL)
    assert server.process.wait(10) == -signal.SIGKILL


def on_disk(data_dir: Path) -> tuple[dict[str, str], set[str]]:
    """The rows' storage keys and the committed objects, read from the folder."""
    return document_keys(data_dir), blob_keys(data_dir)


def verify(client: httpx.Client, document_id: str) -> str:
    """The status ``POST /documents/verify`` answers for the document, as an auditor."""
    auditor = actor("auditor")
    response = client.post(
        "/api/v1/documents/verify", headers=auditor,
        json={"document_id": document_id, "verifier_id": auditor["X-Actor-Id"]},
    )
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


def verify_in_parallel(server: Server, document_ids: list[str]) -> dict[str, str]:
    """``{document id: status}`` for every document, verified from ``CLIENTS`` threads."""

    def verify_all(part: list[str]) -> dict[str, str]:
        with server.client() as client:
            return {document_id: verify(client, document_id) for document_id in part}

    verdicts: dict[str, str] = {}
    with ThreadPoolExecutor(CLIENTS) as pool:
        for part in pool.map(verify_all, [document_ids[i::CLIENTS] for i in range(CLIENTS)]):
            verdicts.update(part)
    return verdicts


def listed(client: httpx.Client, entity: uuid.UUID) -> list[dict[str, Any]]:
    """Every document of ``entity``, archived or not, page by page."""
    documents: list[dict[str, Any]] = []
    params: dict[str, Any] = {"include_archived": "true", "limit": 1000}
    while True:
        response = client.get(f"/api/v1/documents/{entity}", headers=actor("auditor"),
                              params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        documents += page["documents"]
        if not page["next_cursor"]:
            return documents
        params["cursor"] = page["next_cursor"]


def test_uploads_survive_sigkill_at_random_points(fleet: Fleet, data_dir: Path) -> None:
    """Killed at random points while clients upload and restarted each time, the vault keeps
    every 201 verifiable, never has a row without its blob, and each start removes exactly the
    blobs the killed process left without a row."""
    seed = int(os.environ.get("CRASH_SEED") or random.SystemRandom().randrange(2**32))
    print(f"crash test seed: CRASH_SEED={seed} (kills: {KILLS})")
    rng = random.Random(seed)
    began = time.monotonic()
    target = Target()
    seen = Uploads()
    entities = [uuid.uuid4() for _ in range(CLIENTS)]
    clients = [
        threading.Thread(
            target=upload_forever, args=(target, entity, random.Random(rng.random()), seen),
            name=f"uploader-{index}", daemon=True,
        )
        for index, entity in enumerate(entities)
    ]
    for client in clients:
        client.start()
    orphans: set[str] = set()
    startup_kills = 0
    try:
        for _ in range(KILLS):
            server = fleet.spawn(orphans)
            if rng.random() < STARTUP_KILLS:
                startup_kills += 1
                # The kill point itself is what is random here: nothing is awaited.
                time.sleep(rng.uniform(*STARTUP))
                if server.running():
                    try:
                        with httpx.Client(timeout=1.0) as probe:
                            if probe.get(server.base_url + "/healthz").status_code == 200:
                                target.point_at(server.base_url)
                    except httpx.TransportError:
                        pass
            else:
                server.wait_healthy()
                target.point_at(server.base_url)
                time.sleep(rng.uniform(*UPTIME))  # the random kill point, as above
            kill(server)
            target.point_at(None)
            rows, objects = on_disk(data_dir)
            missing = set(rows.values()) - objects
            assert not missing, f"rows without their blob after a kill: {sorted(missing)}"
            orphans = objects - set(rows.values())
        target.finish()
        for client in clients:
            client.join(30)
            assert not client.is_alive(), f"{client.name} did not finish"
        assert seen.crashed == []

        final = fleet.spawn(orphans)
        final.wait_healthy()
        eventually_sync(
            lambda: final.events(SWEEP), "the final start's orphan sweep",
            within=20.0, describe=final.log_tail,
        )
        # With nothing uploading any more, the folder is settled: every object has its row.
        rows, objects = on_disk(data_dir)
        assert objects == set(rows.values())
        assert blob_temp_files(data_dir) == []

        # Each start that finished its sweep removed exactly the orphans it found; one killed
        # before that has no line, and its orphans are the next start's.
        swept = []
        for run in fleet.runs:
            lines = run.server.events(SWEEP)
            assert len(lines) <= 1
            if lines:
                assert lines[0]["removed"] == len(run.orphans_before), run.server.log_tail()
                assert lines[0]["grace_seconds"] == 0.0
                swept.append(lines[0])
        failed = [
            line for run in fleet.runs for line in run.server.events("orphan_blob_sweep_failed")
        ]
        assert failed == []

        assert {a.status for a in seen.answered} <= {201}, {a.status for a in seen.answered}
        created = {a.body["id"]: a for a in seen.answered}
        assert len(created) == len(seen.answered)
        for document_id, upload in created.items():
            assert rows.get(document_id) == upload.body["storage_key"]
            assert upload.body["sha256_hash"] == upload.sha256

        with final.client() as client:
            documents = [doc for entity in entities for doc in listed(client, entity)]
        assert {doc["id"] for doc in documents} == set(rows)
        assert set(created) <= set(rows)
        verdicts = verify_in_parallel(final, sorted(rows))
        assert {d: v for d, v in verdicts.items() if v != "verified"} == {}

        assert final.stop() == 0
        # A start killed during its sweep hands its orphans (those it had not deleted yet)
        # on to the next start: count each orphan once.
        found = set().union(*(run.orphans_before for run in fleet.runs))
        assert not found & objects
        # Twenty kills of a server busy uploading leave orphans (about one per kill): the
        # sweep's removals were exercised, not only its counting.
        assert any(line["removed"] > 0 for line in swept), "no kill left an orphan"
        print(
            f"crash test: seed {seed}, {KILLS} kills ({startup_kills} during start-up), "
            f"{len(created)} uploads answered 201, {seen.cut_off} cut off, "
            f"{len(rows) - len(created)} rows whose answer was lost, "
            f"{len(found)} orphans left by kills, "
            f"{sum(line['removed'] for line in swept)} removed as logged by {len(swept)} "
            f"sweeps, {time.monotonic() - began:.1f} s"
        )
    except BaseException:
        target.finish()
        print(f"crash test seed: CRASH_SEED={seed}\n{fleet.tails()}")
        raise


def plant(data_dir: Path, key: str, *, age: float) -> Path:
    """An object file under ``key`` with no row, last written ``age`` seconds ago."""
    path = data_dir / "blobs" / "objects" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"DVB1 planted: no row names it")
    moment = time.time() - age
    os.utime(path, (moment, moment))
    return path


def swept_once(server: Server) -> dict[str, Any]:
    lines = eventually_sync(
        lambda: server.events(SWEEP), "the start-up orphan sweep", describe=server.log_tail
    )
    assert len(lines) == 1
    return lines[0]


def test_a_young_orphan_is_kept_and_reported(start_server: StartServer, data_dir: Path) -> None:
    """With the default grace period, an orphan written a minute ago is reported as young and
    kept, while one written an hour ago is removed."""
    young = plant(data_dir, f"documents/{uuid.uuid4()}", age=60)
    old = plant(data_dir, f"documents/{uuid.uuid4()}", age=3600)

    line = swept_once(start_server())

    assert (line["young_orphans_kept"], line["removed"], line["objects_seen"]) == (1, 1, 2)
    assert line["grace_seconds"] == 300.0
    assert young.exists()
    assert not old.exists()


def test_a_key_that_names_no_document_is_left_alone(
    start_server: StartServer, data_dir: Path
) -> None:
    """Old objects under ``documents/`` whose keys are not a document's are counted and kept,
    beside a stored document that keeps its blob and still verifies."""
    server = start_server()
    with server.client() as client:
        response = client.post(
            UPLOAD, headers=actor("issuer"), data=upload_form(uuid.uuid4()),
            files={"file": ("kept.pdf", pdf(), "application/pdf")},
        )
        assert response.status_code == 201, response.text
    document = response.json()
    assert server.stop() == 0
    foreign = [
        plant(data_dir, "documents/README.txt", age=3600),
        plant(data_dir, f"documents/{uuid.uuid4().hex}", age=3600),
        plant(data_dir, f"documents/{uuid.uuid4()}/extra", age=3600),
    ]
    os.utime(data_dir / "blobs" / "objects" / document["storage_key"], (0, 0))

    restarted = start_server()
    line = swept_once(restarted)

    assert (line["non_document_keys"], line["removed"], line["objects_seen"]) == (3, 0, 4)
    assert all(path.exists() for path in foreign)
    with restarted.client() as client:
        assert verify(client, document["id"]) == "verified"


ORPHANS_TO_SWEEP = 20_000
"""Enough old orphans that deleting them takes the sweep well over a second."""


def test_sigterm_during_the_sweep_cancels_it_and_exits_cleanly(
    start_server: StartServer, data_dir: Path
) -> None:
    """A start with thousands of orphans answers /healthz while its sweep is still deleting,
    and SIGTERM then cancels the sweep before the stores close, logged with what it
    removed, and exits 0."""
    folder = data_dir / "blobs" / "objects" / "documents"
    folder.mkdir(parents=True)
    for _ in range(ORPHANS_TO_SWEEP):
        (folder / str(uuid.uuid4())).touch()

    server = start_server(**NO_GRACE)

    assert not server.logged(SWEEP), "the port opened only once the sweep was over"
    eventually_sync(
        lambda: len(blob_keys(data_dir)) < ORPHANS_TO_SWEEP, "the sweep to remove a first orphan"
    )
    assert server.stop() == 0
    events = [line["event"] for line in server.log_lines()]
    (cancelled,) = server.events("orphan_blob_sweep_cancelled")
    assert not server.logged(SWEEP)
    assert events.index("shutdown_started") < events.index("orphan_blob_sweep_cancelled")
    # Cancelled before the stores close: the sweep ends with its current call to one.
    assert events.index("orphan_blob_sweep_cancelled") < events.index("vault_stopped")
    assert 0 < cancelled["removed"] < ORPHANS_TO_SWEEP
    assert len(blob_keys(data_dir)) == ORPHANS_TO_SWEEP - cancelled["removed"]


def test_on_s3_the_sweep_removes_an_orphan_and_leaves_other_keys(
    start_server: StartServer, production: Production
) -> None:
    """On PostgreSQL and S3 the start-up sweep lists the bucket, removes an orphan object
    (its key then reads as deleted) and leaves a key that names no document."""
    orphan = f"documents/{uuid.uuid4()}"
    readme = "documents/README.txt"
    for key in (orphan, readme):
        production.s3.put_object(Bucket=production.bucket, Key=key, Body=b"no row names it")

    server = start_server(**production.env(), **NO_GRACE)
    line = swept_once(server)

    assert (line["removed"], line["non_document_keys"], line["objects_seen"]) == (1, 1, 2)
    listed_keys = [
        item["Key"]
        for item in production.s3.list_objects_v2(Bucket=production.bucket).get("Contents", [])
    ]
    assert listed_keys == [readme]
