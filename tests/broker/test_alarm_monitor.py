"""Alarms registry, the built-in monitors' decisions, and the /proc readings."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from starling.broker import AlarmMonitor, Alarms, BrokerOptions, Message, SystemSampler

PREFIX = "$SYS/brokers/n@h/"


class Recorder:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    def __call__(self, message: Message) -> int:
        self.messages.append(message)
        return 0

    def events(self) -> list[tuple[str, dict[str, str]]]:
        return [(m.topic, json.loads(m.payload)) for m in self.messages]


# -- registry --------------------------------------------------------------------------

def test_raise_and_clear_publish_and_record_history() -> None:
    sent = Recorder()
    alarms = Alarms(sent, PREFIX)
    assert alarms.raise_alarm("cpu_high_watermark", "85.5") is True
    assert [(a.id, a.desc) for a in alarms.present()] == [("cpu_high_watermark", "85.5")]
    assert alarms.is_raised("cpu_high_watermark")
    assert alarms.history() == []
    assert alarms.clear_alarm("cpu_high_watermark") is True
    assert alarms.present() == []
    [cleared] = alarms.history()
    assert (cleared.id, cleared.desc) == ("cpu_high_watermark", "85.5")
    assert cleared.cleared_at is not None and cleared.cleared_at >= cleared.raised_at
    assert sent.events() == [
        (PREFIX + "alarms/alert", {"id": "cpu_high_watermark", "desc": "85.5"}),
        (PREFIX + "alarms/clear", {"id": "cpu_high_watermark"}),
    ]
    assert all(m.sys and m.qos == 0 and not m.retain for m in sent.messages)


def test_raising_again_updates_desc_without_a_second_alert() -> None:
    sent = Recorder()
    alarms = Alarms(sent, PREFIX)
    alarms.raise_alarm("a", "1")
    assert alarms.raise_alarm("a", "2") is False
    assert [a.desc for a in alarms.present()] == ["2"]
    assert len(sent.messages) == 1


def test_clearing_what_is_not_raised_does_nothing() -> None:
    sent = Recorder()
    alarms = Alarms(sent, PREFIX)
    assert alarms.clear_alarm("nope") is False
    assert alarms.history() == [] and sent.messages == []


def test_history_keeps_the_last_clearing_per_id() -> None:
    alarms = Alarms()
    alarms.raise_alarm("a", "first")
    alarms.clear_alarm("a")
    alarms.raise_alarm("b", "b")
    alarms.clear_alarm("b")
    alarms.raise_alarm("a", "second")
    alarms.clear_alarm("a")
    assert [(a.id, a.desc) for a in alarms.history()] == [("b", "b"), ("a", "second")]


# -- monitors ---------------------------------------------------------------------------

class FakeSampler(SystemSampler):
    def __init__(self) -> None:
        super().__init__(proc="/nonexistent", cgroup="/nonexistent")
        self.cpu: float | None = None
        self.mem: tuple[int, int] | None = None
        self.rss: int | None = None

    def cpu_busy(self) -> float | None:
        return self.cpu

    def memory(self) -> tuple[int, int] | None:
        return self.mem

    def process_memory(self) -> int | None:
        return self.rss


def monitor(**options: float) -> tuple[AlarmMonitor, FakeSampler, Alarms]:
    sampler = FakeSampler()
    alarms = Alarms()
    return AlarmMonitor(alarms, replace(BrokerOptions(), **options), sampler), sampler, alarms


def raised(alarms: Alarms) -> dict[str, str]:
    return {a.id: a.desc for a in alarms.present()}


def test_cpu_alarm_has_hysteresis() -> None:
    mon, sampler, alarms = monitor()
    sampler.cpu = 79.9
    mon.check()
    assert raised(alarms) == {}
    sampler.cpu = 80.0
    mon.check()
    assert raised(alarms) == {"cpu_high_watermark": "80.0"}
    sampler.cpu = 65.0  # between the watermarks: stays raised
    mon.check()
    assert "cpu_high_watermark" in raised(alarms)
    sampler.cpu = 59.0
    mon.check()
    assert raised(alarms) == {}
    assert [a.id for a in alarms.history()] == ["cpu_high_watermark"]


def test_no_cpu_reading_changes_nothing() -> None:
    mon, sampler, alarms = monitor()
    sampler.cpu = 99.0
    mon.check()
    sampler.cpu = None
    mon.check()
    assert "cpu_high_watermark" in raised(alarms)


def test_memory_alarms() -> None:
    mon, sampler, alarms = monitor(sysmem_high_watermark=70.0, procmem_high_watermark=50.0)
    sampler.mem = (69, 100)
    sampler.rss = 10
    mon.check()
    assert raised(alarms) == {}
    sampler.mem = (70, 100)
    sampler.rss = 55
    mon.check()
    assert raised(alarms) == {"system_memory_high_watermark": "70.0",
                              "process_memory_high_watermark": "55.0"}
    sampler.mem = (50, 100)
    sampler.rss = 49
    mon.check()
    assert raised(alarms) == {}
    assert {a.id for a in alarms.history()} == {"system_memory_high_watermark",
                                               "process_memory_high_watermark"}


def test_too_many_connections_uses_the_fullest_listener() -> None:
    mon, _sampler, alarms = monitor()
    usage = [("mqtt:tcp:default", 0, 10), ("mqtt:tcp:internal", 0, 1000)]
    mon.connection_usage = lambda: usage
    mon.check()
    assert raised(alarms) == {}
    usage[0] = ("mqtt:tcp:default", 8, 10)
    mon.check()
    assert raised(alarms) == {"too_many_connections": "80.0"}
    usage[0] = ("mqtt:tcp:default", 7, 10)  # 70 %: above the low watermark
    mon.check()
    assert "too_many_connections" in raised(alarms)
    usage[0] = ("mqtt:tcp:default", 5, 10)
    mon.check()
    assert raised(alarms) == {}


def test_without_connection_usage_the_check_is_skipped() -> None:
    mon, _sampler, alarms = monitor(connections_high_watermark=0.0)
    mon.check()
    assert raised(alarms) == {}


# -- readings ---------------------------------------------------------------------------

def write_stat(proc: Path, busy: int, idle: int) -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice
    (proc / "stat").write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 2 3 4\n")


def test_machine_cpu_busy_from_proc_stat(tmp_path: Path) -> None:
    write_stat(tmp_path, 100, 100)
    sampler = SystemSampler(proc=str(tmp_path), cgroup=str(tmp_path / "none"))
    assert sampler._machine_busy() is None  # the first reading is the baseline
    write_stat(tmp_path, 190, 110)  # 90 busy of 100 jiffies
    assert sampler._machine_busy() == pytest.approx(90.0)
    write_stat(tmp_path, 200, 200)
    assert sampler._machine_busy() == pytest.approx(10.0)


def test_process_cpu_busy_is_a_share_of_one_core() -> None:
    sampler = SystemSampler()
    assert sampler._process_busy() is None
    end = time.monotonic() + 0.05
    while time.monotonic() < end:  # burn CPU on purpose
        pass
    busy = sampler._process_busy()
    assert busy is not None and 0.0 <= busy <= 100.0


def test_memory_from_meminfo(tmp_path: Path) -> None:
    (tmp_path / "meminfo").write_text(
        "MemTotal:       1000 kB\nMemFree:          100 kB\nMemAvailable:     400 kB\n")
    sampler = SystemSampler(proc=str(tmp_path), cgroup=str(tmp_path / "none"))
    assert sampler.memory() == (600 * 1024, 1000 * 1024)


def test_memory_of_a_limited_cgroup(tmp_path: Path) -> None:
    proc, cgroup = tmp_path / "proc", tmp_path / "cgroup"
    proc.mkdir()
    cgroup.mkdir()
    (proc / "meminfo").write_text("MemTotal: 1000000 kB\nMemAvailable: 900000 kB\n")
    (cgroup / "memory.max").write_text("1048576\n")
    (cgroup / "memory.current").write_text("524288\n")
    (cgroup / "memory.stat").write_text("anon 1\ninactive_file 262144\nactive_file 5\n")
    sampler = SystemSampler(proc=str(proc), cgroup=str(cgroup))
    assert sampler.memory() == (262144, 1048576)
    (cgroup / "memory.max").write_text("max\n")  # no limit: the machine's figures
    assert sampler.memory() == (100000 * 1024, 1000000 * 1024)


def test_readings_on_this_machine() -> None:
    sampler = SystemSampler()
    if not Path("/proc/meminfo").exists():
        pytest.skip("no /proc")
    memory = sampler.memory()
    assert memory is not None and 0 < memory[0] <= memory[1]
    rss = sampler.process_memory()
    assert rss is not None and rss > 1024 * 1024
    sampler.cpu_busy()
    busy = sampler.cpu_busy()
    assert busy is None or 0.0 <= busy <= 100.0


def test_missing_proc_gives_no_readings(tmp_path: Path) -> None:
    sampler = SystemSampler(proc=str(tmp_path / "no"), cgroup=str(tmp_path / "no"))
    assert sampler.memory() is None
    assert sampler.process_memory() is None
    assert sampler._machine_busy() is None


def test_thresholds_follow_options_replaced_at_runtime() -> None:
    current = BrokerOptions()
    sampler = FakeSampler()
    alarms = Alarms()
    mon = AlarmMonitor(alarms, lambda: current, sampler)
    sampler.cpu = 50.0
    mon.check()
    assert raised(alarms) == {}
    current = replace(current, cpu_high_watermark=40.0)
    mon.check()
    assert raised(alarms) == {"cpu_high_watermark": "50.0"}
