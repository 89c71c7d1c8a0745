"""Unit tests of ops.bench's pure parts: percentiles, the streamed multipart body,
/proc parsing, memory figures, table formatting and verdicts."""

import json
from pathlib import Path

import attrs
import pytest

from ops.bench import cli as bench_cli
from ops.bench import ledger
from ops.bench.backends import mask_password, postgres_s3_env, with_database
from ops.bench.cli import is_loopback_url, parse_args
from ops.bench.console import BenchError
from ops.bench.multipart import document_prefix, multipart_body
from ops.bench.plan import SMALL_SIZE, TARGET_PROFILES, Targets
from ops.bench.records import (
    Floor,
    IntegrationRate,
    Measurements,
    Reads,
    SizeMemory,
    SizeRun,
    SmallRun,
    Stats,
    UploadComparison,
    UploadSide,
)
from ops.bench.report import verdicts
from ops.bench.server import (
    memory_figures,
    parse_proc_stat_cpu,
    parse_proc_status,
    server_env,
    source_env,
)
from ops.bench.stats import percentile
from ops.bench.units import MB, MiB, format_table, parse_size


def _stats(**overrides):
    base = Stats(
        planned=10, requests=10, ok=10, errors=0, statuses={"200": 10},
        p50_s=0.01, p95_s=0.02, p99_s=0.03, wall_s=1.0, rps=1000.0,
        first_error=None,
    )  # fmt: skip
    return attrs.evolve(base, **overrides)


def _memory(**overrides):
    """The memory windows of a 100 MB run: uploads grew the server by 20 MiB."""
    figures = memory_figures(
        [{"VmRSS": 80 * MiB}], [{"VmHWM": 100 * MiB, "VmRSS": 81 * MiB}], reset=True
    )
    return SizeMemory(upload=attrs.evolve(figures, **overrides))


def _size(size_bytes, memory=None, **overrides):
    run = SizeRun(
        size_bytes=size_bytes, upload=_stats(), verify=_stats(),
        upload_mbps=200.0, verify_mbps=600.0, memory=memory or SizeMemory(),
    )  # fmt: skip
    return attrs.evolve(run, **overrides)


def _small(**overrides):
    """Small uploads from 1 and 32 clients; overrides change the 32-client run's stats."""
    busy = {"rps": 150.0, "p99_s": 0.5}
    return (
        SmallRun(clients=1, size_bytes=SMALL_SIZE, stats=_stats()),
        SmallRun(clients=32, size_bytes=SMALL_SIZE, stats=_stats(**{**busy, **overrides})),
    )


def _report(**overrides):
    """Figures above every embedded target; overrides replace whole fields."""
    report = Measurements(
        sizes=(_size(10 * MB), _size(100 * MB, _memory())),
        floors=(Floor(size_bytes=10 * MB, sha256_mbps=1500.0, fsync_write_mbps=900.0),),
        small=_small(),
        reads=Reads(clients=8, entity_documents=50,
                    listing=_stats(rps=800.0), download_url=_stats(rps=900.0)),
    )  # fmt: skip
    return attrs.evolve(report, **overrides)


def _by_name(found, fragment):
    (match,) = [v for v in found if fragment in v.name]
    return match


class TestPercentile:
    def test_interpolates_between_ranks(self):
        """The 95th percentile of five values lies between the two largest."""
        assert percentile([5, 1, 4, 2, 3], 95) == pytest.approx(4.8)

    def test_median_of_odd_count_is_middle_value(self):
        """The 50th percentile of an odd count is the middle value once sorted."""
        assert percentile([9.0, 1.0, 5.0], 50) == 5.0

    def test_empty_is_none(self):
        """No samples give no percentile rather than zero."""
        assert percentile([], 50) is None


class TestMultipartBody:
    def _body(self, payload, chunk_size=4):
        return multipart_body(
            {"entity_id": "e", "document_type": "other"},
            prefix=b"%PDF-x",
            payload=payload,
            boundary="BOUNDARY",
            chunk_size=chunk_size,
        )

    def test_content_length_matches_streamed_bytes(self):
        """The declared Content-Length equals the bytes the generator yields."""
        body = self._body(b"0123456789abcdefghij")
        assert int(body.headers["Content-Length"]) == len(b"".join(body.chunks()))

    def test_file_is_prefix_then_rest_of_payload(self):
        """The file part is the prefix followed by the payload past the prefix's length."""
        body = self._body(b"0123456789abcdefghij")
        streamed = b"".join(body.chunks())
        start = streamed.index(b"\r\n\r\n%PDF") + 4
        end = streamed.index(b"\r\n--BOUNDARY--")
        assert streamed[start:end] == b"%PDF-x6789abcdefghij"

    def test_file_pieces_are_at_most_chunk_size(self):
        """Between preamble and epilogue every piece is at most chunk_size bytes."""
        pieces = list(self._body(bytes(100), chunk_size=16).chunks())
        assert max(len(p) for p in pieces[1:-1]) <= 16
        assert len(pieces) == 2 + len(range(6, 100, 16))

    def test_parses_as_form_with_file(self):
        """The standard library's email parser reads the fields and the file back."""
        import email.parser
        import email.policy

        body = self._body(b"%PDF-" + bytes(range(200)))
        raw = f"Content-Type: {body.headers['Content-Type']}\r\n\r\n".encode() + b"".join(
            body.chunks()
        )
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
        parts = {p.get_param("name", header="content-disposition"): p for p in message.iter_parts()}
        assert parts["entity_id"].get_content() == "e"
        assert parts["file"].get_filename() == "bench.pdf"
        assert parts["file"].get_content_type() == "application/pdf"
        assert len(parts["file"].get_content()) == body.file_size

    def test_prefix_varies_with_counter(self):
        """Two documents of one run differ in their leading bytes and keep one length."""
        first, second = document_prefix("tag", 1), document_prefix("tag", 2)
        assert first != second and len(first) == len(second)
        assert first.startswith(b"%PDF-")


class TestProc:
    STATUS = (
        "Name:\tpython\nVmPeak:\t  300000 kB\nVmHWM:\t  120000 kB\n"
        "VmRSS:\t   90000 kB\nThreads:\t4\n"
    )

    def test_parses_kb_fields_as_bytes(self):
        """VmRSS and VmHWM come back in bytes; fields without kB are left out."""
        parsed = parse_proc_status(self.STATUS)
        assert parsed["VmRSS"] == 90000 * 1024
        assert parsed["VmHWM"] == 120000 * 1024
        assert "Threads" not in parsed

    def test_cpu_seconds_from_stat_with_odd_command_name(self):
        """utime plus stime are read after the command name even when it holds ') ('."""
        text = "42 (a) (b c) S 1 42 42 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 3 0 100 0 0\n"
        assert parse_proc_stat_cpu(text, 100) == pytest.approx(3.0)

    def test_growth_after_reset_is_peak_minus_rss_before(self):
        """With VmHWM reset, growth is the later VmHWM minus VmRSS at the start."""
        figures = memory_figures(
            [{"VmRSS": 80 * MiB, "VmHWM": 200 * MiB}], [{"VmHWM": 110 * MiB}], reset=True
        )
        assert figures.growth_bytes == 30 * MiB
        assert figures.method == "clear_refs"

    def test_without_reset_baseline_is_old_peak(self):
        """Without a reset an older, higher peak is the baseline, so it is not counted as growth."""
        figures = memory_figures(
            [{"VmRSS": 80 * MiB, "VmHWM": 200 * MiB}], [{"VmHWM": 200 * MiB}], reset=False
        )
        assert figures.growth_bytes == 0


class TestFormatting:
    def test_table_aligns_columns(self):
        """The first column is left-aligned, the others right-aligned, to the widest cell."""
        text = format_table(["size", "MB/s"], [["1 MB", "5.0"], ["100 MB", "150.0"]], "")
        assert text.splitlines() == ["size     MB/s", "1 MB      5.0", "100 MB  150.0"]

    def test_table_rejects_ragged_rows(self):
        """A row with the wrong number of cells is an error, not a shifted table."""
        with pytest.raises(ValueError):
            format_table(["a", "b"], [["1"]])

    def test_parse_size_units(self):
        """Decimal and binary suffixes are understood and a bare number means MB."""
        assert [parse_size(t) for t in ("100MB", "1 MiB", "100kb", "10")] == [
            100 * MB, MiB, 100_000, 10 * MB,
        ]  # fmt: skip

    def test_only_loopback_urls(self):
        """Loopback hosts are accepted and any other host is refused."""
        assert is_loopback_url("http://127.0.0.1:8000")
        assert is_loopback_url("http://localhost:8000/")
        assert is_loopback_url("http://[::1]:8000")
        assert not is_loopback_url("http://10.0.0.5:8000")
        assert not is_loopback_url("http://example.com")


class TestVerdicts:
    def test_all_pass_on_good_figures(self):
        """Figures above every target give PASS throughout."""
        found = verdicts(_report(), Targets())
        assert {v.status for v in found} == {"PASS"}
        assert len(found) == 6

    def test_rss_growth_over_limit_fails(self):
        """A 100 MB upload that grows the server by 64 MiB or more fails."""
        report = _report(sizes=(_size(10 * MB), _size(100 * MB, _memory(growth_bytes=64 * MiB))))
        assert _by_name(verdicts(report, Targets()), "RSS").status == "FAIL"

    def test_verify_compared_with_a_third_of_sha256(self):
        """Verify at 10 MB fails below a third of hashlib's SHA-256 rate."""
        report = _report(sizes=(_size(10 * MB, verify_mbps=499.0), _size(100 * MB, _memory())))
        assert _by_name(verdicts(report, Targets()), "verify").status == "FAIL"

    def test_errors_fail_an_otherwise_fast_phase(self):
        """Small uploads fast enough but with non-201 answers fail."""
        report = _report(small=_small(errors=3, statuses={"201": 637, "503": 3}))
        assert _by_name(verdicts(report, Targets()), "100 KB").status == "FAIL"

    def test_profile_lowers_marks(self):
        """The postgres-s3 profile passes 60 req/s that the embedded profile fails."""
        report = _report(small=_small(rps=60.0))
        embedded = verdicts(report, TARGET_PROFILES["embedded"])
        postgres = verdicts(report, TARGET_PROFILES["postgres-s3"])
        assert _by_name(embedded, "100 KB").status == "FAIL"
        assert _by_name(postgres, "100 KB").status == "PASS"

    def test_missing_memory_is_skipped(self):
        """Without a pid the RSS verdict is SKIP, neither PASS nor FAIL."""
        report = _report(sizes=(_size(10 * MB), _size(100 * MB, SizeMemory())))
        assert _by_name(verdicts(report, Targets()), "RSS").status == "SKIP"


class TestBackends:
    def test_backends_choose_their_targets(self):
        """--backends postgres-s3 selects the postgres-s3 targets; the default stays embedded."""
        assert parse_args(["--backends", "postgres-s3"]).targets == "postgres-s3"
        assert parse_args([]).targets == "embedded"

    def test_explicit_targets_win(self):
        """--targets named on the command line is kept whatever the backends."""
        args = parse_args(["--backends", "postgres-s3", "--targets", "embedded"])
        assert args.targets == "embedded"

    def test_backends_need_a_spawned_server(self, capsys):
        """--backends with --url is a usage error: only a spawned server gets backends."""
        with pytest.raises(SystemExit):
            parse_args(["--url", "http://127.0.0.1:8000", "--backends", "postgres-s3"])
        assert "--backends" in capsys.readouterr().err

    def test_database_url_keeps_server_credentials_and_query(self):
        """The new database's URL is the admin URL with only the database name changed."""
        assert (
            with_database("postgresql://u:pw@db:5433/postgres?sslmode=require", "vb_1")
            == "postgresql://u:pw@db:5433/vb_1?sslmode=require"
        )

    def test_password_is_masked(self):
        """A URL shown in progress lines or the report never carries its password."""
        assert mask_password("postgresql://u:secret@db/x") == "postgresql://u:***@db/x"
        assert mask_password("postgresql://u@db/x") == "postgresql://u@db/x"

    def test_server_env_points_every_aws_client_at_the_endpoint(self):
        """The spawned server gets the database, bucket, key and endpoint, and loses any
        variable that would send its S3 client elsewhere."""
        env = server_env(
            {"PATH": "/bin", "DATABASE_URL": "sqlite:///x", "AWS_S3_ENDPOINT_URL": "https://s3"},
            postgres_s3_env("postgresql://db/vb", "http://127.0.0.1:5000", "bkt", "key-1"),
        )
        assert env["PATH"] == "/bin"
        assert env["DATABASE_URL"] == "postgresql://db/vb"
        assert env["DOCUMENT_VAULT_BUCKET"] == "bkt"
        assert env["AWS_S3_KMS_KEY_ID"] == "key-1"
        assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5000"
        assert "AWS_S3_ENDPOINT_URL" not in env


def _side(label, rps, errors=0):
    """An upload side whose three rounds ran at rps, rps * 0.9 and rps * 1.1."""
    rounds = tuple(_stats(rps=rps * f, errors=errors) for f in (1.0, 0.9, 1.1))
    return UploadSide(label=label, source="/src", imported="/src/vault", rounds=rounds)


class TestLedger:
    TINY = ("--ledger-leaves", "300", "--integration-leaves", "300", "--receipts", "5",
            "--consistency-proofs", "5", "--no-postgres", "--no-uploads", "--quiet")  # fmt: skip

    def test_tiny_run_prints_every_figure(self, capsys):
        """At 300 leaves the section integrates, builds, proves and prints the sizes."""
        assert bench_cli.main(["ledger", *self.TINY]) == 0
        out = capsys.readouterr().out
        for fragment in ("sqlite", "Tree of 300 leaves", "receipt (_receipt)",
                         "consistency (_consistency)", "inclusion proof hashes",
                         "tlog-proof text bytes", "receipt JSON bytes",
                         "consistency proof hashes", "at 300 leaves, not 1,000,000"):  # fmt: skip
            assert fragment in out
        assert "not measured  integration on PostgreSQL" in out

    def test_tiny_run_as_json(self, capsys):
        """--json holds the same figures: a 300-leaf tree with 5 receipts of 9 hashes at most."""
        assert ledger.main([*self.TINY, "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        tree = report["tree"]
        assert tree["leaves"] == 300 and tree["receipt"]["samples"] == 5
        assert 1 <= tree["sizes"]["inclusion_hashes"]["high"] <= 9
        sizes = tree["sizes"]
        assert sizes["inclusion_bytes"]["high"] == 32 * sizes["inclusion_hashes"]["high"]
        assert [r["store"] for r in report["integration"]] == ["sqlite"]
        assert report["integration"][0]["leaves"] == 300

    def test_upload_drop_beyond_ten_percent_is_not_met(self):
        """At 85 % of the baseline's req/s the target is missed; at 95 % it is met."""
        for rps, status in ((85.0, "NOT met"), (95.0, "met")):
            uploads = UploadComparison(clients=32, size_bytes=SMALL_SIZE, requests=10,
                                       current=_side("current", rps),
                                       baseline=_side("baseline", 100.0))  # fmt: skip
            found = ledger.verdicts([], None, uploads, {})
            assert _by_name(found, "uploads").status == status

    def test_postgres_rate_against_its_mark(self):
        """1,000 leaves in 0.4 s is 2,500 leaves/s: met; in 0.6 s it is not."""
        for seconds, status in ((0.4, "met"), (0.6, "NOT met")):
            rate = IntegrationRate(store="postgresql", leaves=1000, batch=256, batches=4,
                                   fill_s=0.1, integrate_s=seconds)  # fmt: skip
            assert _by_name(ledger.verdicts([rate], None, None, {}), "PostgreSQL").status == status

    def test_baseline_source_env_links_its_http_layer(self, tmp_path):
        """PYTHONPATH names the tree and a folder whose vault_http is the tree's http/."""
        src = tmp_path / "before"
        (src / "vault").mkdir(parents=True)
        (src / "vault" / "__init__.py").write_text("")
        (src / "http").mkdir()
        env = source_env(src, tmp_path / "run")
        first, shim = env["PYTHONPATH"].split(":")
        assert first == str(src.resolve())
        assert (Path(shim) / "vault_http").resolve() == (src / "http").resolve()

    def test_not_a_source_tree_is_refused(self, tmp_path):
        with pytest.raises(BenchError):
            source_env(tmp_path, tmp_path)
