"""Unit tests of ops.soak's pure parts: the request mix, windows and their percentiles,
/metrics parsing, the outbox count, descriptor kinds, the document pool and verdicts."""

import contextlib
import random
import sqlite3
from collections import Counter

import attrs
import pytest

from ops.bench.units import MiB
from ops.soak.cli import parse_args
from ops.soak.load import DocumentPool
from ops.soak.metrics import count_outbox_rows, outbox_metrics, parse_metrics
from ops.soak.plan import DEFAULT_MIX, OPERATIONS, apportion, schedule, upload_size
from ops.soak.probe import CLOSE_WAIT_SOCKET, fd_kind, parse_proc_net_tcp
from ops.soak.records import Checkpoint, ProcFigures, ProcSample, Sample, SoakMeasurements
from ops.soak.report import (
    errors_verdict,
    fd_verdict,
    p99_verdict,
    rss_trend_mib,
    rss_verdict,
    verdicts,
)
from ops.soak.windows import error_statuses, operations, slope_per_minute, window_bounds, windows


def _sample(completed_s, latency_s=0.01, op="list", status=200, warmup=False):
    return Sample(op=op, status=status, completed_s=completed_s, latency_s=latency_s, warmup=warmup)


def _checkpoint(name, rss_mib=100.0, fds=40, threads=10, kinds=None, close_wait=0):
    proc = ProcFigures(
        rss_bytes=int(rss_mib * MiB), fds=fds, threads=threads, processes=1,
        fd_kinds=kinds or {}, close_wait=close_wait,
    )  # fmt: skip
    return Checkpoint(name=name, at_s=0.0, requests_done=0, proc=proc, outbox=None)


def _steady_windows(first_p99_latency, last_p99_latency):
    """Three minutes after a warm-up: 100 answers a minute, the slowest 2 of each minute
    at the given latency (the first minute's, the middle one's and the last one's)."""
    samples = [_sample(t * 0.1, warmup=True) for t in range(100)]
    for minute, slow in enumerate((first_p99_latency, 0.05, last_p99_latency)):
        start = 10 + 60 * minute
        samples += [_sample(start + i * 0.5, 0.01) for i in range(98)]
        samples += [_sample(start + 50 + i, slow) for i in range(2)]
    return windows(samples, resumed_s=10.0, min_tail=50)


class TestMix:
    def test_apportion_is_exact_for_whole_blocks(self):
        """20,000 requests of the default mix give exactly 30/25/20/15/10 % of each."""
        counts = apportion(20_000, DEFAULT_MIX)
        assert counts == {
            "upload": 6000, "list": 5000, "download_url": 4000, "verify": 3000, "archive": 2000,
        }  # fmt: skip

    def test_apportion_sums_to_total_with_remainders(self):
        """An awkward total is split by largest remainder and still adds up."""
        counts = apportion(7, {"upload": 1, "list": 1, "verify": 1})
        assert sum(counts.values()) == 7
        assert counts["upload"] == 3 and counts["list"] == 2 and counts["verify"] == 2
        assert counts["archive"] == 0

    def test_apportion_refuses_empty_weights(self):
        """Weights with nothing positive cannot be apportioned."""
        with pytest.raises(ValueError):
            apportion(10, {"upload": 0})

    def test_every_block_of_the_schedule_holds_the_mix(self):
        """Each block of 100 requests holds exactly the default mix, so every window sees it."""
        order = schedule(1000, DEFAULT_MIX, seed=7)
        for start in range(0, 1000, 100):
            assert Counter(order[start : start + 100]) == Counter(DEFAULT_MIX)

    def test_schedule_is_seeded_and_shuffled(self):
        """The same seed gives the same order, another seed another, and neither is sorted."""
        first = schedule(500, DEFAULT_MIX, seed=1)
        assert first == schedule(500, DEFAULT_MIX, seed=1)
        assert first != schedule(500, DEFAULT_MIX, seed=2)
        assert first != sorted(first, key=OPERATIONS.index)

    def test_schedule_with_partial_block_keeps_the_total(self):
        """A total that is not a multiple of the block is still sent in full."""
        order = schedule(250, DEFAULT_MIX, seed=3)
        assert len(order) == 250
        assert Counter(order)["upload"] == 75

    def test_upload_sizes_in_turn(self):
        """Uploads cycle through the sizes."""
        assert [upload_size(i, (1, 2, 3)) for i in range(5)] == [1, 2, 3, 1, 2]


class TestWindows:
    def test_bounds_are_minutes_from_the_start(self):
        """Spans are 60 s from the start, the last one ending with the run."""
        assert window_bounds(10.0, 150.0) == [(10.0, 70.0), (70.0, 130.0), (130.0, 150.0)]

    def test_short_tail_joins_the_window_before(self):
        """A last window with fewer than min_tail answers is folded into the one before it."""
        samples = [_sample(1.0 + i * 0.5) for i in range(130)]
        (window,) = windows(samples, resumed_s=0.0, min_tail=20)
        assert (window.start_s, window.end_s, window.stats.requests) == (0.0, 65.5, 130)

    def test_tail_with_enough_answers_stands_alone(self):
        """A last window shorter than a minute keeps its own row when it has min_tail answers."""
        samples = [_sample(1.0 + i * 0.5) for i in range(130)]
        found = windows(samples, resumed_s=0.0, min_tail=10)
        assert [w.stats.requests for w in found] == [118, 12]
        assert found[-1].start_s == 60.0

    def test_warmup_is_its_own_window(self):
        """Warm-up requests form the 'warm-up' window and the rest are numbered from 1."""
        found = _steady_windows(0.2, 0.2)
        assert [w.label for w in found] == ["warm-up", "1", "2", "3"]
        assert found[0].stats.requests == 100
        assert [w.stats.requests for w in found[1:]] == [100, 100, 100]

    def test_percentiles_per_window(self):
        """Each window's p99 comes from its own answers: the slow ones of that minute."""
        found = _steady_windows(0.2, 0.4)
        p99 = [w.stats.p99_s for w in found[1:]]
        assert p99[0] == pytest.approx(0.2)
        assert p99[1] == pytest.approx(0.05)
        assert p99[2] == pytest.approx(0.4)
        assert found[1].stats.p50_s == pytest.approx(0.01)

    def test_errors_are_counted_but_not_in_percentiles(self):
        """A 503 counts as an error of its window and its latency is left out."""
        samples = [_sample(1.0 + i, 0.01) for i in range(10)]
        samples.append(_sample(5.0, 9.0, status=503))
        (window,) = windows(samples, resumed_s=0.0)
        assert window.stats.errors == 1
        assert window.stats.p99_s == pytest.approx(0.01)

    def test_window_carries_last_sampler_reading(self):
        """A window shows the sampler's last reading at or before its end."""
        series = [ProcSample(at_s=t, rss_bytes=t * MiB, fds=t, threads=1) for t in (10, 50, 70)]
        (window,) = windows([_sample(20.0), _sample(59.0)], resumed_s=0.0, series=series)
        assert window.fds == 50

    def test_p99_per_operation_per_window(self):
        """A window gives each operation in it its own p99, from that operation's answers."""
        samples = [_sample(1.0 + i, 0.01) for i in range(10)]
        samples += [_sample(1.0 + i, 0.3, op="upload", status=201) for i in range(10)]
        (window,) = windows(samples, resumed_s=0.0)
        assert window.op_p99_s == {"upload": pytest.approx(0.3), "list": pytest.approx(0.01)}

    def test_operations_over_the_whole_run(self):
        """Per-operation figures include the warm-up and give each operation its share."""
        samples = [_sample(1.0, op="upload", status=201, warmup=True), _sample(2.0, op="list")]
        found = {o.op: o for o in operations(samples, DEFAULT_MIX, wall_s=2.0)}
        assert found["upload"].stats.requests == 1 and found["upload"].stats.errors == 0
        assert found["upload"].share == pytest.approx(0.30)
        assert found["archive"].stats.requests == 0

    def test_error_statuses_name_operation_and_status(self):
        """Errors are keyed by operation and status, a missing answer as 'error'."""
        samples = [
            _sample(1.0, op="verify", status="mismatch"),
            _sample(1.0, op="upload", status=503),
            _sample(1.0, op="upload", status=503),
            _sample(1.0, op="list", status=None),
            _sample(1.0, op="upload", status=201),
        ]
        assert error_statuses(samples) == {
            "list error": 1, "upload 503": 2, "verify mismatch": 1,
        }  # fmt: skip

    def test_slope_per_minute(self):
        """Values rising 1 per second rise 60 per minute; one point has no slope."""
        assert slope_per_minute([(0.0, 0.0), (30.0, 30.0), (60.0, 60.0)]) == pytest.approx(60.0)
        assert slope_per_minute([(0.0, 1.0)]) is None


class TestMetrics:
    TEXT = "\n".join([
        "# HELP vault_outbox_pending Outbox rows waiting to be delivered",
        "# TYPE vault_outbox_pending gauge",
        'vault_outbox_pending{destination="document_events"} 3.0',
        'vault_outbox_pending{destination="audit_events"} 2.0',
        'vault_outbox_parked{destination="audit_events"} 1.0',
        'vault_outbox_delivered_total{destination="document_events"} 100.0',
        'vault_outbox_delivered_total{destination="audit_events"} 50.0',
        'vault_outbox_failed_total{destination="audit_events"} 0.0',
        'odd_label{path="/a b}c"} 7 1700000000000',
        "process_open_fds 12.0",
        "not a sample line",
        "",
    ])  # fmt: skip

    def test_sums_over_labels(self):
        """Samples of one metric are added up across their label sets."""
        totals = parse_metrics(self.TEXT)
        assert totals["vault_outbox_pending"] == 5.0
        assert totals["vault_outbox_delivered_total"] == 150.0
        assert totals["process_open_fds"] == 12.0

    def test_label_value_with_brace_and_timestamp(self):
        """A quoted '}' in a label value and a trailing timestamp do not confuse the value."""
        assert parse_metrics(self.TEXT)["odd_label"] == 7.0

    def test_pruned_is_none_when_not_exported(self):
        """Without vault_outbox_pruned_total the pruned figure is None, the others are read."""
        figures = outbox_metrics(parse_metrics(self.TEXT))
        assert figures.pending == 5.0 and figures.parked == 1.0
        assert figures.delivered_total == 150.0
        assert figures.pruned_total is None

    def test_pruned_is_read_when_exported(self):
        """A server that prunes delivered rows has its counter summed like the others."""
        text = self.TEXT + '\nvault_outbox_pruned_total{destination="audit_events"} 40.0\n'
        assert outbox_metrics(parse_metrics(text)).pruned_total == 40.0

    def test_outbox_rows_by_state(self, tmp_path):
        """Rows of a vault's SQLite outbox are counted as pending, delivered and parked."""
        path = tmp_path / "vault.sqlite3"
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.execute("CREATE TABLE outbox (id INTEGER, delivered_at TEXT, parked_at TEXT)")
            db.execute("CREATE TABLE documents (id TEXT)")
            db.executemany(
                "INSERT INTO outbox VALUES (?, ?, ?)",
                [(1, None, None), (2, "t", None), (3, "t", None), (4, None, "t")],
            )
            db.execute("INSERT INTO documents VALUES ('d')")
        rows = count_outbox_rows(path)
        assert rows is not None
        assert (rows.total, rows.pending, rows.delivered, rows.parked) == (4, 1, 2, 1)
        assert rows.documents == 1

    def test_outbox_rows_of_a_missing_file(self, tmp_path):
        """No database file gives no figures rather than an error."""
        assert count_outbox_rows(tmp_path / "absent.sqlite3") is None


class TestProbe:
    def test_descriptor_kinds(self):
        """Sockets, pipes and epoll by type, database files by name, other files by folder."""
        assert fd_kind("socket:[12345]") == "socket"
        assert fd_kind("pipe:[9]") == "pipe"
        assert fd_kind("anon_inode:[eventpoll]") == "anon_inode:[eventpoll]"
        assert fd_kind("/tmp/x/data/vault.sqlite3-wal") == "vault.sqlite3-wal"
        assert (
            fd_kind("/tmp/x/data/objects/documents/ab (deleted)")
            == "/tmp/x/data/objects/documents/*"
        )

    NET_TCP = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
        "  timeout inode\n"
        "   0: 0100007F:C3C6 00000000:0000 0A 00000000:00000000 00:00000000 00000000"
        "     0        0 223741 1 00000000ea875c8b 100 0 0 10 0\n"
        "   1: 0100007F:C3C6 0100007F:E22B 08 00000000:00000000 00:00000000 00000000"
        "     0        0 223800 1 00000000e4f1620c 20 4 30 10 -1\n"
        "   2: 0100007F:C3D4 0100007F:E22B 06 00000000:00000000 03:0000166F 00000000"
        "     0        0 0 3 00000000ba3d27b8\n"
    )

    def test_tcp_states_by_inode(self):
        """/proc/net/tcp gives each socket inode its state; the header is skipped."""
        assert parse_proc_net_tcp(self.NET_TCP) == {223741: "0A", 223800: "08", 0: "06"}

    def test_close_wait_socket_has_its_own_kind(self):
        """A socket whose peer has closed is told apart from the others."""
        states = parse_proc_net_tcp(self.NET_TCP)
        assert fd_kind("socket:[223800]", states) == CLOSE_WAIT_SOCKET
        assert fd_kind("socket:[223741]", states) == "socket"
        assert fd_kind("socket:[223800]") == "socket"


class TestPool:
    def test_take_skips_busy_documents(self):
        """An archive never takes a document that a verify or download URL still holds."""
        pool = DocumentPool()
        pool.add("a")
        pool.add("b")
        rng = random.Random(0)
        held = pool.pick(rng)
        taken = pool.take(rng)
        assert taken is not None and taken != held
        assert pool.take(rng) is None
        pool.release(held)
        assert pool.take(rng) == held
        assert len(pool) == 0

    def test_empty_pool_hands_out_nothing(self):
        """Picking or taking from an empty pool gives None."""
        pool = DocumentPool()
        assert pool.pick(random.Random(0)) is None
        assert pool.take(random.Random(0)) is None


class TestVerdicts:
    def test_rss_growth_under_limit_passes(self):
        """31 MiB of growth from warm-up to end passes a 32 MiB mark."""
        verdict = rss_verdict(_checkpoint("warm-up", 100.0), _checkpoint("end", 131.0))
        assert verdict.status == "PASS"

    def test_rss_growth_at_limit_fails(self):
        """32 MiB of growth fails: the mark is a strict ceiling."""
        verdict = rss_verdict(_checkpoint("warm-up", 100.0), _checkpoint("end", 132.0))
        assert verdict.status == "FAIL"
        assert "+32.0 MiB" in verdict.measured

    def test_rss_without_pid_is_skipped(self):
        """Checkpoints without /proc figures give SKIP, neither PASS nor FAIL."""
        bare = Checkpoint(name="end", at_s=0.0, requests_done=0, proc=None, outbox=None)
        assert rss_verdict(bare, bare).status == "SKIP"

    def test_rss_without_warmup_checkpoint_is_skipped(self):
        """A run cut before the warm-up's end has nothing to compare."""
        assert rss_verdict(None, _checkpoint("end")).status == "SKIP"

    def test_fd_growth_within_slack_passes(self):
        """Descriptors up by the slack pass, one more fails."""
        warm = _checkpoint("warm-up", fds=40)
        assert fd_verdict(warm, _checkpoint("end", fds=44)).status == "PASS"
        assert fd_verdict(warm, _checkpoint("end", fds=45)).status == "FAIL"

    def test_fd_verdict_names_what_grew(self):
        """The measured text says which kind of descriptor grew and the thread counts."""
        warm = _checkpoint("warm-up", fds=40, kinds={"socket": 16, "vault.sqlite3": 9})
        end = _checkpoint("end", fds=52, threads=9, kinds={"socket": 16, "vault.sqlite3": 21})
        verdict = fd_verdict(warm, end)
        assert verdict.status == "FAIL"
        assert "vault.sqlite3 +12" in verdict.measured
        assert "threads 10 -> 9" in verdict.measured

    def test_close_wait_sockets_are_not_counted(self):
        """Sockets in CLOSE-WAIT (closed at the keep-alive timeout) are left out of the growth."""
        warm = _checkpoint("warm-up", fds=40)
        end = _checkpoint("end", fds=50, kinds={CLOSE_WAIT_SOCKET: 8}, close_wait=8)
        verdict = fd_verdict(warm, end)
        assert verdict.status == "PASS"
        assert verdict.measured.startswith("+2 (40 -> 42;")
        assert "close-wait sockets 0 -> 8" in verdict.measured

    def test_rss_trend_after_warmup(self):
        """RSS rising 1 MiB every 10 s after the warm-up is a trend of +6 MiB a minute."""
        series = tuple(
            ProcSample(at_s=t, rss_bytes=(100 + max(0, t - 20) // 10) * MiB, fds=1, threads=1)
            for t in range(0, 200, 10)
        )
        warm = attrs.evolve(_checkpoint("warm-up"), at_s=20.0)
        measured = SoakMeasurements(checkpoints=(warm,), series=series)
        assert rss_trend_mib(measured) == pytest.approx(6.0)

    def test_flat_p99_passes(self):
        """A last window's p99 1.5 times the first's passes."""
        assert p99_verdict(_steady_windows(0.2, 0.3)).status == "PASS"

    def test_rising_p99_fails(self):
        """A last window's p99 more than 1.5 times the first's fails."""
        verdict = p99_verdict(_steady_windows(0.2, 0.31))
        assert verdict.status == "FAIL"
        assert "x1.55" in verdict.measured

    def test_p99_compares_first_and_last_not_the_middle(self):
        """A fast middle window does not matter: first and last are compared."""
        assert p99_verdict(_steady_windows(0.2, 0.2)).status == "PASS"

    def test_one_window_after_warmup_is_skipped(self):
        """A run with one window after the warm-up cannot judge flatness."""
        samples = [_sample(1.0, warmup=True), _sample(20.0), _sample(40.0)]
        assert p99_verdict(windows(samples, resumed_s=2.0)).status == "SKIP"

    def test_errors_fail_and_name_statuses(self):
        """Any wrong answer fails the errors verdict and names the most frequent."""
        samples = [_sample(1.0), _sample(2.0, op="upload", status=503)]
        measured = SoakMeasurements(
            operations=tuple(operations(samples, DEFAULT_MIX, 2.0)),
            statuses=error_statuses(samples),
        )
        verdict = errors_verdict(measured, planned=2)
        assert verdict.status == "FAIL"
        assert "upload 503: 1" in verdict.measured

    def test_unsent_requests_fail(self):
        """A run that sent fewer requests than planned fails the errors verdict."""
        measured = SoakMeasurements(operations=tuple(operations([_sample(1.0)], DEFAULT_MIX, 1.0)))
        assert errors_verdict(measured, planned=10).status == "FAIL"

    def test_all_four_verdicts(self):
        """A good run gives four PASS lines: RSS, descriptors, p99, errors."""
        found = _steady_windows(0.2, 0.2)
        samples = [_sample(1.0)]
        measured = SoakMeasurements(
            windows=tuple(found),
            operations=tuple(operations(samples, DEFAULT_MIX, 1.0)),
            checkpoints=(_checkpoint("warm-up"), _checkpoint("end", 110.0, fds=41)),
        )
        assert [v.status for v in verdicts(measured, planned=1)] == ["PASS"] * 4


class TestArguments:
    def test_defaults(self):
        """Without flags: 20,000 requests, 2,000 of them warm-up, 8 clients, a spawned server."""
        options = parse_args([])
        assert (options.requests, options.warmup, options.clients) == (20_000, 2_000, 8)
        assert options.url is None

    def test_warmup_must_leave_requests(self):
        """A warm-up as long as the run is refused."""
        with pytest.raises(SystemExit):
            parse_args(["--requests", "100", "--warmup", "100"])

    def test_only_loopback_urls(self):
        """Another host than this machine is refused."""
        with pytest.raises(SystemExit):
            parse_args(["--url", "http://10.0.0.5:8000"])
