"""Recording logic without a broker: batch recording, clamping, interval sealing, the audits."""

from __future__ import annotations

import random

from bench.core.audit import OffsetRanges, SequenceAudit, audit_offsets, lost_sequences, offset_ranges
from bench.core.progress import p99_scope, progress_line
from bench.core.recorder import LatencyRecorder, RunRecorder, fold_latencies, record_counts
from bench.results.histograms import LATENCY_HIGHEST_US, decode_histogram, encode_histogram, new_latency_histogram


def test_batched_recording_equals_recording_each_value():
    rng = random.Random(7)
    latencies_us = [int(rng.lognormvariate(10, 1)) + 1 for _ in range(20_000)]  # median ~22 ms
    one_by_one = new_latency_histogram()
    for value in latencies_us:
        one_by_one.record_value(value)
    batched = new_latency_histogram()
    pairs = fold_latencies((value / 1e6 for value in latencies_us), to_us=1_000_000)
    assert len(pairs) < len(set(latencies_us)) / 2  # quantized to buckets: far fewer records
    record_counts(batched, pairs)
    assert batched.get_total_count() == one_by_one.get_total_count() == len(latencies_us)
    for percentile in (50, 90, 99, 99.9, 100):
        assert batched.get_value_at_percentile(percentile) == one_by_one.get_value_at_percentile(percentile)
    assert batched.get_min_value() == one_by_one.get_min_value()
    assert batched.get_max_value() == one_by_one.get_max_value()
    assert batched.get_mean_value() == one_by_one.get_mean_value()
    assert batched.encode() == one_by_one.encode()


def test_out_of_range_values_are_clamped_not_dropped_and_overflows_counted():
    histogram = new_latency_histogram()
    clamped = record_counts(histogram, {0: 2, -5: 1, 500: 3, LATENCY_HIGHEST_US * 2: 1})
    assert clamped == 1
    assert histogram.get_max_value() >= LATENCY_HIGHEST_US
    assert histogram.get_total_count() == 7
    assert histogram.get_min_value() == 1


def test_seconds_from_several_reporters_merge_and_warmup_is_excluded():
    recorder = LatencyRecorder(warmup_s=1.0)
    recorder.record(0, {100: 5})          # warm-up second
    recorder.record(1, {200: 3})          # producer 0
    recorder.record(1, {300: 2})          # producer 1, same second
    recorder.close_through(1)
    assert recorder.cumulative.get_total_count() == 5
    assert decode_histogram(recorder.intervals[0]).get_total_count() == 5
    assert decode_histogram(recorder.intervals[1]).get_total_count() == 5
    assert recorder.interval_stats[1][2] == 300
    assert recorder.interval_list(3)[2] is None


def test_a_histogram_added_whole_equals_its_values_recorded():
    """The Locust master adds each worker's decoded second whole (C) instead of re-recording it."""
    rng = random.Random(7)
    values = [round(rng.lognormvariate(8.5, 1.2)) + 1 for _ in range(5_000)]
    by_values, by_histograms = LatencyRecorder(warmup_s=1.0), LatencyRecorder(warmup_s=1.0)
    for second, part in ((0, values[:1_000]), (1, values[1_000:3_000]), (1, values[3_000:])):
        counts = fold_latencies(part)
        by_values.record(second, counts)
        worker = new_latency_histogram()
        record_counts(worker, counts)
        by_histograms.add_histogram(second, decode_histogram(encode_histogram(worker)))
    by_histograms.add_histogram(1, new_latency_histogram())  # an empty second adds nothing
    for recorder in (by_values, by_histograms):
        recorder.close_through(1)
    assert by_histograms.intervals == by_values.intervals
    assert by_histograms.interval_stats == by_values.interval_stats
    assert by_histograms.summary([1]) == by_values.summary([1]) and by_values.summary([1])["count"] == 4_000
    try:
        by_histograms.add_histogram(1, decode_histogram(by_histograms.intervals[1]))
    except ValueError as error:
        assert "already closed" in str(error)
    else:
        raise AssertionError("a closed second took more samples")


def test_the_live_p99_line_says_when_it_switches_from_the_warm_up_second_to_the_run():
    """Warm-up 2 s: seconds 0 and 1 show their own p99 (slow first sends); from second 2 on the
    p99 covers every measured second. The drop at the switch is labelled, not silent."""
    recorder = RunRecorder(warmup_s=2.0)
    lines = []
    for second, service_s in enumerate(([0.050] * 100, [0.040] * 100, [0.004] * 100, [0.005] * 100)):
        recorder.add_producer_report(second, sent=100, acked=100, failed=0, service_s=service_s, response_us=[],
                                     send_delay_us=[])
        recorder.close_through(second)
        lines.append(progress_line(second + 1, 100, 100, 100, recorder.p99_so_far("service_time", second), None, None,
                                   None, p99_scope(second, 2.0)))
    scopes = [line.split("|")[1].split(":")[0].strip() for line in lines]
    assert scopes == ["p99 this second (warm-up)", "p99 this second (warm-up)", "p99 since warm-up", "p99 since warm-up"]
    assert "service time 50 ms" in lines[0] and "service time 40 ms" in lines[1]
    assert "service time 4 ms" in lines[2] and "service time 5 ms" in lines[3]
    assert p99_scope(0, 0) == "so far"  # no warm-up, nothing switches


def test_series_has_one_entry_per_second_with_nulls_for_empty_seconds():
    recorder = RunRecorder(warmup_s=0.0)
    recorder.add_producer_report(0, sent=10, acked=9, failed=1, service_s=[0.001] * 9, response_us=[1500] * 9,
                                 send_delay_us=[10] * 10)
    recorder.add_tracker_report(2, consumed=9, end_to_end_us=[2000] * 9, lag_by_partition={0: 3, 1: 4},
                                lag_time_ms=12.5)
    recorder.close_through(2)
    series = recorder.series()
    assert series["t_s"] == [1, 2, 3]
    assert series["sent"] == [10, 0, 0]
    assert series["consumed"] == [0, 0, 9]
    assert series["service_time_p99_us"] == [1000, None, None]
    assert series["end_to_end_p50_us"] == [None, None, 2000]
    assert series["lag_messages"] == [None, None, 7]
    assert series["lag_messages_by_partition"] == {"0": [None, None, 3], "1": [None, None, 4]}
    assert recorder.totals() == {"sent": 10, "acked": 9, "failed": 1, "consumed": 9}


def test_audit_detects_exactly_the_dropped_and_repeated_sequences():
    sent = 10_000
    rng = random.Random(3)
    dropped = set(rng.sample(range(sent), 37))
    repeated = rng.sample(sorted(set(range(sent)) - dropped), 11)
    failed = {5, 6}  # the producer knows these did not arrive: not lost
    audit = SequenceAudit()
    delivered = [s for s in range(sent) if s not in dropped and s not in failed] + repeated
    rng.shuffle(delivered)
    duplicates = [s for s in delivered if audit.mark(0, s)]
    assert sorted(duplicates) == sorted(repeated)
    assert audit.duplicated == 11
    lost, first = lost_sequences(bytes(audit.seen[0]), sent, failed)
    assert lost == 37
    assert first == sorted(dropped)[:10]


def test_audit_keeps_producers_apart():
    audit = SequenceAudit()
    assert not audit.mark(0, 0)
    assert not audit.mark(1, 0)
    assert audit.mark(1, 0)
    assert lost_sequences(bytes(audit.seen[0]), 2, []) == (1, [1])
    assert lost_sequences(None, 3, [1]) == (2, [0, 2])


def test_offset_ranges_merge_out_of_order_and_count_offsets_seen_before():
    offsets = OffsetRanges()
    assert [offsets.add(o) for o in (5, 6, 7, 10, 3, 4, 8, 6, 9, 12)] == [False] * 7 + [True, False, False]
    assert offsets.ranges() == [(3, 11), (12, 13)]
    assert offsets.add_range(0, 20) == 9  # 3..10 and 12 were there
    assert offsets.ranges() == [(0, 20)]
    assert offsets.add_range(25, 30) == 0 and offsets.add_range(20, 25) == 0
    assert offsets.ranges() == [(0, 30)]


def test_offset_ranges_of_a_list_equal_the_distinct_sorted_offsets():
    assert offset_ranges([]) == []
    assert offset_ranges(list(range(100, 5000))) == [(100, 5000)]
    assert offset_ranges([7, 1, 2, 3, 9, 8, 3, 20]) == [(1, 4), (7, 10), (20, 21)]
    rng = random.Random(5)
    values = rng.sample(range(10_000), 4000)
    expanded = [o for start, end in offset_ranges(values) for o in range(start, end)]
    assert expanded == sorted(values)


def test_offset_audit_counts_exactly_the_lost_and_unclaimed():
    # Partition 0: acked 0..999 except 500 (its delivery failed); the tracker missed 10 and
    # 700..702, and consumed 500 (written though reported failed) and 1000 (a retry's first copy).
    acked = {0: [(0, 500), (501, 1000)], 1: [(0, 50)], 2: [(7, 9)]}
    consumed = {0: [(0, 10), (11, 700), (703, 1001)], 1: [(0, 50)], 3: [(0, 2)]}
    lost, unclaimed, first = audit_offsets(acked, consumed)
    assert lost == 1 + 3 + 2                   # 10, 700..702, and partition 2 never consumed
    assert unclaimed == 1 + 1 + 2              # 500, 1000, and partition 3 never acked
    assert first == [(0, 10), (0, 700), (0, 701), (0, 702), (2, 7), (2, 8)]
    assert audit_offsets(acked, consumed, limit=2)[2] == [(0, 10), (0, 700)]
    assert audit_offsets(acked, acked) == (0, 0, [])
    assert audit_offsets({}, {}) == (0, 0, [])
