#!/usr/bin/env python3
"""CPU time of `SQLiteStore.apply` per QoS 1 message to a persistent session.

Batches shaped as the journal makes them under the `qos1p` scenario: per message
a body and a session holding written, and (one batch later, when the subscriber's
PUBACK came) both deleted; 100 messages per batch, 10 subscriber sessions.  No
broker, no sockets: only the store's own cost, as CPU time (best of 3), which a
busy machine disturbs far less than a throughput figure.

    python benchmarks/store_apply.py            # 20,000 messages
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from starling.store import MessageRecord, Operation, SQLiteStore


def batches(messages: int, per_batch: int) -> list[list[Operation]]:
    out: list[list[Operation]] = []
    acked: list[tuple[str, int]] = []
    message_id = 0
    for _ in range(messages // per_batch):
        ops: list[Operation] = []
        to_ack, acked = acked, []
        for i in range(per_batch):
            message_id += 1
            client = f"sub-{i % 10}"
            ops.append(("message_put", MessageRecord(message_id, f"lg/pair/{i % 10}", b"x" * 64,
                                                     1, False, b"\x00", f"pub-{i % 10}", None,
                                                     1.7e9, None)))
            ops.append(("session_message_put", client, message_id, message_id, 1, 0,
                        i + 1, 0))
            acked.append((client, message_id))
            if to_ack:
                done_client, done_id = to_ack.pop(0)
                ops.append(("session_message_delete", done_client, done_id))
                ops.append(("message_delete", done_id))
        out.append(ops)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--messages", type=int, default=20000)
    p.add_argument("--batch", type=int, default=100)
    args = p.parse_args()
    work = batches(args.messages, args.batch)
    best = float("inf")
    for _ in range(3):
        with tempfile.TemporaryDirectory() as tmp:
            store = SQLiteStore(Path(tmp) / "starling.db")
            store.open()
            start = time.process_time()
            for ops in work:
                store.apply(ops)
            best = min(best, time.process_time() - start)
            store.close()
    print(f"SQLiteStore.apply: {best / args.messages * 1e6:.2f} us CPU per message "
          f"({args.messages} messages, {args.batch} per batch, best of 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
