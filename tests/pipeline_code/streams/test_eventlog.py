"""The durable local event log."""

from __future__ import annotations

import gzip
import itertools
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline_code.streams.eventlog import EventLog, EventLogError, iter_input_lines


def segmented_log(tmp_path, n: int, spread: int) -> tuple[EventLog, list[bytes]]:
    """A log of ``n`` payloads of varied length, appended in two halves, over
    several 300-byte segments."""
    log = EventLog(tmp_path / "log", segment_bytes=300)
    payloads = [b"x" * (i % spread) + b"%d" % i for i in range(n)]
    log.append(payloads[: n // 2])
    log.append(payloads[n // 2 :])
    return log, payloads


def test_append_and_read_keep_payloads_and_offsets(tmp_path):
    log = EventLog(tmp_path / "log")
    first, n = log.append([b"one", b'{"two": "\t tab"}', b"\xff raw"], received_at_us=123)
    assert (first, n) == (0, 3)
    records = list(log.read())
    assert [r.payload for r in records] == [b"one", b'{"two": "\t tab"}', b"\xff raw"]
    assert [r.received_at_us for r in records] == [123] * 3
    assert records[1].offset == len(b"123\tone\n")
    assert log.end_offset() == sum(len(b"123\t" + r.payload + b"\n") for r in records)


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_ranges_tile_the_log_without_loss_or_overlap(tmp_path, chunk):
    log, payloads = segmented_log(tmp_path, 200, 37)
    assert len(list((tmp_path / "log").glob("*.log"))) > 1  # it rolled segments
    got = [r.payload for lo, hi in log.ranges(0, log.end_offset(), chunk) for r in log.read_range(lo, hi)]
    assert got == payloads


def test_reading_from_a_checkpoint_returns_only_newer_records(tmp_path):
    log = EventLog(tmp_path / "log")
    log.append([b"a", b"b"])
    checkpoint = log.end_offset()
    log.append([b"c"])
    assert [r.payload for r in log.read(checkpoint)] == [b"c"]


def test_readers_stop_before_a_partial_record_and_never_cut_it(tmp_path):
    log = EventLog(tmp_path / "log")
    log.append([b"kept"])
    complete = log.end_offset()
    segment = next((tmp_path / "log").glob("*.log"))
    with open(segment, "ab") as f:  # a writer mid-append, or a crash
        f.write(b"99\tpartial-without-newline")
    reader = EventLog(tmp_path / "log")
    assert reader.log_id == log.log_id
    assert reader.end_offset() == complete  # a checkpoint never passes it
    assert [r.payload for r in reader.read()] == [b"kept"]
    assert segment.stat().st_size > complete  # the reader cut nothing


def test_the_next_append_cuts_a_torn_tail(tmp_path):
    log = EventLog(tmp_path / "log")
    log.append([b"kept"])
    complete = log.end_offset()
    segment = next((tmp_path / "log").glob("*.log"))
    with open(segment, "ab") as f:
        f.write(b"99\tpartial-without-newline")
    first, _ = EventLog(tmp_path / "log").append([b"next"])
    assert first == complete  # the new record starts where the torn one did
    assert [r.payload for r in log.read()] == [b"kept", b"next"]
    assert b"partial" not in segment.read_bytes()


def test_payload_with_newline_is_refused_and_nothing_is_written(tmp_path):
    log = EventLog(tmp_path / "log")
    with pytest.raises(EventLogError, match="newline"):
        log.append([b"ok", b"bad\nline"])
    assert list(log.read()) == []


def test_unusable_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(EventLogError, match="cannot be opened"):
        EventLog(blocker / "log")


def test_input_lines_skip_blanks_bom_and_line_endings(tmp_path):
    plain = tmp_path / "a.jsonl"
    plain.write_bytes(b'\xef\xbb\xbf{"a":1}\r\n\n   \n{"b":2}')
    assert list(iter_input_lines(plain)) == [b'{"a":1}', b'{"b":2}']
    packed = tmp_path / "b.jsonl.gz"
    packed.write_bytes(gzip.compress(b'{"c":3}\n'))
    assert list(iter_input_lines(packed)) == [b'{"c":3}']


def reference_lines(data: bytes) -> list[bytes]:
    """What ``iter_input_lines`` means, a line at a time."""
    lines = [line.rstrip(b"\r") for line in data.removeprefix(b"\xef\xbb\xbf").split(b"\n")]
    return [line for line in lines if line.strip()]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.sampled_from([b"a", b"{}", b"\r", b"\n", b"\r\n", b" ", b"\t", b"\x0b", b"\xef\xbb\xbf"]),
        max_size=40,
    ),
    st.sampled_from([1, 2, 3, 5, 1 << 20]),
)
def test_input_lines_read_in_blocks_are_the_lines(tmp_path, pieces, block_bytes):
    data = b"".join(pieces)
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    assert list(iter_input_lines(path, block_bytes)) == reference_lines(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), max_size=8),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from([1, 7, 20, 64, 1000]),
)
def test_appends_roll_segments_where_a_record_at_a_time_would(tmp_path, batches, segment_bytes):
    """A record starts a new segment once the segment it would join holds
    ``segment_bytes`` or more; nothing else moves a record."""
    directory = tmp_path / f"log-{uuid.uuid4().hex}"
    log = EventLog(directory, segment_bytes=segment_bytes)
    expected: dict[int, bytes] = {}
    base = end = 0
    for batch in batches:
        assert log.append(batch, received_at_us=7) == (end, len(batch))
        for payload in batch:
            if end - base >= segment_bytes:
                base = end
            record = b"7\t" + payload + b"\n"
            expected[base] = expected.get(base, b"") + record
            end += len(record)
    found = {int(p.stem): p.read_bytes() for p in directory.glob("*.log")}
    assert {k: v for k, v in found.items() if v} == expected
    assert [r.payload for r in log.read()] == [p for batch in batches for p in batch]


def test_the_durable_end_waits_for_an_append_to_finish_its_fsync(tmp_path):
    """A record written but not yet fsynced is not readable: the run that
    checkpointed past it could outlive a power loss that takes it away."""
    import fcntl
    import threading

    log = EventLog(tmp_path / "log")
    log.append([b'{"event_id": "a"}'])
    settled = log.durable_end()
    with open(log.path / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # an append in progress: written, fsync not yet returned
        (segment,) = sorted(log.path.glob("*.log"))
        with open(segment, "ab") as f:
            f.write(b'123\t{"event_id": "b"}\n')
        assert log.end_offset() > settled  # what a reader without the lock would take
        seen: list[int] = []
        reader = threading.Thread(target=lambda: seen.append(log.durable_end()))
        reader.start()
        reader.join(0.3)
        assert reader.is_alive() and seen == []
    reader.join(5)
    assert seen == [log.end_offset()]


def test_a_checkpoint_past_the_end_of_the_log_is_refused_by_name(tmp_path):
    log = EventLog(tmp_path / "log")
    log.append([b'{"event_id": "a"}'])
    end = log.durable_end()
    assert log.unread_range(0) == (0, end) and log.unread_range(end) == (end, end)
    with pytest.raises(
        EventLogError, match=f"checkpoint .* is at byte {end + 5}, past the end .*{end} bytes"
    ):
        log.unread_range(end + 5)


def test_count_records_matches_what_reading_finds_across_segments(tmp_path):
    log = EventLog(tmp_path / "log", segment_bytes=64)
    log.append([b'{"event_id": "%d"}' % i for i in range(40)])
    records = list(log.read())
    assert len(list(log.path.glob("*.log"))) > 3
    for a, b in [(0, len(records)), (3, 17), (10, 11), (5, 5)]:
        start = records[a].offset
        end = records[b].offset if b < len(records) else log.durable_end()
        assert log.count_records(start, end) == b - a


@pytest.mark.parametrize("max_bytes", [1, 50, 299, 1 << 20])
def test_slices_cut_at_record_boundaries_and_tile_the_range(tmp_path, max_bytes):
    log, _ = segmented_log(tmp_path, 120, 41)
    start = log.record_start(700)  # a boundary inside the log, not its start
    end = log.end_offset()
    slices = log.slices(start, end, max_bytes)
    assert slices[0][0] == start and slices[-1][1] == end
    assert all(hi == lo2 for (_, hi), (lo2, _) in itertools.pairwise(slices))
    starts = {r.offset for r in log.read()} | {end}
    assert all(lo in starts and hi in starts and lo < hi for lo, hi in slices)  # boundaries only
    # Each slice ends at the first boundary at or past max_bytes: all but its last record fit.
    for lo, hi in slices:
        last = max(r.offset for r in log.read(lo, hi))
        assert last - lo < max_bytes
    got = [r.payload for lo, hi in slices for r in log.read(lo, hi)]
    assert got == [r.payload for r in log.read() if r.offset >= start]
    assert log.count_records(start, end) == sum(log.count_records(lo, hi) for lo, hi in slices)


def test_an_empty_range_is_one_empty_slice_and_a_bad_size_is_named(tmp_path):
    log = EventLog(tmp_path / "log")
    log.append([b"a", b"b"])
    assert log.slices(log.end_offset(), log.end_offset(), 10) == [(log.end_offset(), log.end_offset())]
    with pytest.raises(ValueError, match="max_bytes must be at least 1, got 0"):
        log.slices(0, log.end_offset(), 0)
