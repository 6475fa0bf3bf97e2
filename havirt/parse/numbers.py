"""The range of every number havirt accepts or reads, declared once.

A value the command line or config.yaml accepts must be one the state file
and the rules accept as well: each quantity has one range here, which the
option parsing, config.yaml, the state file and the parsers of what nodes
print and of conf/ XML all check. Ranges stay far below 2**53, so sums of
thousands of them are still exact as floats (the balance planner uses
floats), and far above any real machine.

Whole numbers written as text (options, XML, virsh output) are read by
`whole`: ASCII digits only, and never more digits than a range can need,
so that int() never meets thousands of digits (slow, and refused by Python
beyond 4300).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    low: int | float
    high: int | float
    above: bool = False       # more than `low`, not `low` itself

    def __contains__(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return (value > self.low if self.above else value >= self.low) and value <= self.high

    def __str__(self) -> str:
        if self.above:
            return f"more than {_num(self.low)} and at most {_num(self.high)}"
        return f"{_num(self.low)} to {_num(self.high)}"


def _num(x) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


MIB_MOST = 1 << 32            # 4 PiB, in MiB

PORT = Range(1, 65535)
MEMORY_MIB = Range(0, MIB_MOST)              # a node's memory, a running domain's, reserve.memory_mib
MEMORY_CAP_MIB = Range(1, MIB_MOST)          # node add/set --memory-cap
CPUS = Range(0, 1 << 16)                     # a node's CPUs
VCPUS = Range(0, 1 << 16)                    # a running domain's vCPUs, as its node reports them
DOMAIN_MEMORY_MIB = Range(1, 16 << 20)       # a domain's memory in conf/: above 16 TiB is a typo
DOMAIN_VCPUS = Range(1, 4096)                # a domain's vCPUs in conf/
VCPU_RATIO = Range(0, 1000, above=True)      # reserve.vcpu_ratio: vCPUs per CPU
SECONDS = Range(0, 86400, above=True)        # every timeout, and waits given on the command line
LOCK_WAIT = Range(0, 86400)                  # lock_timeout (0: do not wait)
LOCK_TTL = Range(5, 3600)                    # store.lock_ttl: seconds a lost holder keeps the lock
PARALLEL = Range(1, 1024)                    # ssh.parallel
PERSIST = Range(0, 86400)                    # ssh.persist, seconds (0: no connection sharing)
MIN_GAIN = Range(0, 100)                     # balance.min_gain, --min-gain
WEIGHT = Range(0, 1000)                      # balance.weights.memory, .vcpu (not both 0)
MOVES = Range(1, 100000)                     # balance.max_moves, --max-moves
SCANS = Range(1, 100000)                     # recover.after
COUNT = Range(0, 1 << 53)                    # anything else counted (silent scans in a row)

DIGITS = 24                   # more than any range above needs, with room for units (bytes)


def whole(text: str) -> int | None:
    """`text` as a whole number (ASCII digits, at most DIGITS of them after
    leading zeros); None when it is not one. str.isdigit() and int() would
    also take '٣٢', '³', ' 3' or '1_000'."""
    if not (isinstance(text, str) and text.isascii() and text.isdigit()):
        return None
    if len(text.lstrip("0")) > DIGITS:
        return None
    return int(text)


def whole_in(text: str, rng: Range) -> int | None:
    """`text` as a whole number within `rng`; None when it is not one."""
    value = whole(text)
    return value if value is not None and value in rng else None
