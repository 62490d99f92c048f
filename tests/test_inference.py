"""Speed measurement: every runner sees every timed call, runners take turns, ratios are kept."""
from __future__ import annotations

import time

import numpy as np

from tinynlp.inference import measure_speed, measure_speeds


class SleepyRunner:
    """Sleeps a fixed time per call and records the order of calls it saw."""

    def __init__(self, name: str, seconds: float, log: list):
        self.name, self.seconds, self.log = name, seconds, log

    def __call__(self, ids, mask):
        self.log.append((self.name, ids.shape))
        time.sleep(self.seconds)
        return np.zeros((len(ids), 2), np.float32)


FEATURES = [{"input_ids": list(range(1, n + 2))} for n in range(8)]


def test_runners_take_turns_and_each_sees_every_call():
    calls: list = []
    runners = {"slow": SleepyRunner("slow", 0.004, calls), "fast": SleepyRunner("fast", 0.001, calls)}
    speeds = measure_speeds(runners, FEATURES, 0, samples=20, warmup=2, throughput_batch=4, rounds=5)
    timed = calls[2 * (2 + 1):]  # after each runner's warm-up calls and batch-shape warm-up
    batch1 = [name for name, shape in timed if shape[0] == 1]
    assert batch1.count("slow") == batch1.count("fast") == 20
    switches = sum(a != b for a, b in zip(batch1, batch1[1:]))
    assert switches >= 5, "runners should alternate between chunks, not run one after the other"
    assert speeds["slow"].latency_ms_p50 > 3 * speeds["fast"].latency_ms_p50 * 0.8
    assert speeds["fast"].throughput_per_s > speeds["slow"].throughput_per_s


def test_single_runner_is_the_same_measurement():
    speed = measure_speed(SleepyRunner("x", 0.001, []), FEATURES, 0, samples=10, warmup=1, throughput_batch=4)
    assert 0.9 <= speed.latency_ms_p50 < 20 and speed.throughput_per_s > 0


class DisturbedRunner(SleepyRunner):
    """Slow for its first `slow_calls` calls after another runner has run (caches and cores taken),
    as ONNX Runtime sessions taking turns in one process were measured to be."""

    last_caller: list = [None]

    def __init__(self, name: str, seconds: float, log: list, slow_calls: int):
        super().__init__(name, seconds, log)
        self.slow_calls, self.left = slow_calls, 0

    def __call__(self, ids, mask):
        if self.last_caller[0] is not self:
            self.last_caller[0], self.left = self, self.slow_calls
        self.left -= 1
        self.log.append((self.name, ids.shape))
        time.sleep(self.seconds * (5 if self.left >= 0 else 1))
        return np.zeros((len(ids), 2), np.float32)


def test_untimed_calls_at_each_turn_keep_the_disturbance_after_a_switch_out_of_the_timings():
    def p50(turn_warmup: int) -> float:
        runners = {name: DisturbedRunner(name, 0.001, [], slow_calls=4) for name in ("a", "b")}
        return measure_speeds(runners, FEATURES, 0, samples=20, warmup=2, throughput_batch=4, rounds=4,
                              turn_warmup=turn_warmup)["a"].latency_ms_p50

    # the order rotates, so "a" follows "b" in 3 of its 4 turns: 12 of its 20 timed calls are slow
    assert p50(0) > 2.0
    assert p50(4) < 2.0      # the untimed calls took them
