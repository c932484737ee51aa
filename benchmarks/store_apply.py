#!/usr/bin/env python3
"""CPU time of `SQLiteStore.apply` per QoS 1 message to a persistent session.

Batches shaped as the journal makes them under the `qos1p` scenario: per message
(held by one session) its row written, and one batch later, when the subscriber's
PUBACK came, deleted; 100 messages per batch, 10 subscriber sessions.  With
`--shared`, the form of a message several sessions hold (and of every message
before schema 3): a body and a holding written, both deleted.  No broker, no
sockets: only the store's own cost, as CPU time (best of 3), which a busy machine
disturbs far less than a throughput figure.

    python benchmarks/store_apply.py            # 20,000 messages
    python benchmarks/store_apply.py --shared   # body + holding per message
    python benchmarks/store_apply.py --callgrind -n 5000   # instructions, not seconds

`--callgrind` runs one pass under valgrind and counts the instructions of the
`apply` calls only (a client request starts and stops the count): the same
figure on a busy machine as on a quiet one.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(1, str(Path(__file__).resolve().parent))

from starling.store import MessageRecord, Operation, SQLiteStore


def batches(messages: int, per_batch: int, shared: bool) -> list[list[Operation]]:
    out: list[list[Operation]] = []
    acked: list[tuple[str, int]] = []
    message_id = 0
    for _ in range(messages // per_batch):
        ops: list[Operation] = []
        to_ack, acked = acked, []
        for i in range(per_batch):
            message_id += 1
            client = f"sub-{i % 10}"
            body = MessageRecord(message_id, f"lg/pair/{i % 10}", b"x" * 64, 1, False, b"\x00",
                                 f"pub-{i % 10}", None, 1.7e9, None)
            if shared:
                ops.append(("message_put", body))
                ops.append(("session_message_put", client, message_id, message_id, 1, 0,
                            i + 1, 0))
            else:
                ops.append(("single_put", client, 1, 0, i + 1, 0, body))
            acked.append((client, message_id))
            if to_ack:
                done_client, done_id = to_ack.pop(0)
                if shared:
                    ops.append(("session_message_delete", done_client, done_id))
                    ops.append(("message_delete", done_id))
                else:
                    ops.append(("single_delete", done_id))
        out.append(ops)
    return out


def cpu_time(work: list[list[Operation]]) -> float:
    """Seconds of CPU for `apply` of every batch, best of 3, each on a fresh file."""
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
    return best


def counted_pass(work: list[list[Operation]]) -> None:
    """One pass with callgrind counting only the `apply` calls (run under valgrind)."""
    from profile_conn import callgrind_helper

    cg = callgrind_helper()
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "starling.db")
        store.open()
        cg.cg_start()
        for ops in work:
            store.apply(ops)
        cg.cg_stop()
        store.close()


def instructions(argv: list[str]) -> int:
    """Instructions of one counted pass: this script again, under callgrind."""
    from profile_conn import under_callgrind, window_dumps

    _, out_dir = under_callgrind(__file__, ["--counted-pass",
                                            *[a for a in argv if a != "--callgrind"]])
    try:
        return sum(total for _, total in window_dumps(out_dir))
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--messages", type=int, default=20000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--shared", action="store_true",
                   help="a body and a holding per message (the form before schema 3)")
    p.add_argument("--callgrind", action="store_true",
                   help="instructions per message (one pass under valgrind) instead of CPU time")
    p.add_argument("--counted-pass", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    work = batches(args.messages, args.batch, args.shared)
    form = "body + holding" if args.shared else "single row"
    if args.counted_pass:
        counted_pass(work)
    elif args.callgrind:
        count = instructions(sys.argv[1:])
        print(f"SQLiteStore.apply ({form}): {count / args.messages:,.0f} instructions per "
              f"message ({args.messages} messages, {args.batch} per batch, callgrind)")
    else:
        best = cpu_time(work)
        print(f"SQLiteStore.apply ({form}): {best / args.messages * 1e6:.2f} us CPU per "
              f"message ({args.messages} messages, {args.batch} per batch, best of 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
