"""The aiokafka side of the benchmark (run by kafka-bench, from the venv run.sh makes).

Same semantics as the Rust variants: a fresh group reads the topic from the start, one
message at a time (`async for`, as guillotina_kafka's consumers did), reading the payload
length. At-least-once like the framework: auto-commit is OFF; after each message its
partition's next offset is recorded, and the recorded offsets are committed every 5 s
(librdkafka's auto.commit.interval.ms default) and at the end - the same as librdkafka's
offset store + background auto-commit.

Prints one JSON line: messages, bytes, seconds (first message -> N-th), msgs_per_sec,
mb_per_sec. With --hold it then prints HOLD and waits for stdin to close, so the parent
can read VmHWM from /proc/<pid>/status.
"""

import argparse
import asyncio
import json
import sys
import time

from aiokafka import AIOKafkaConsumer, TopicPartition


async def consume(args):
    consumer = AIOKafkaConsumer(
        args.topic,
        bootstrap_servers=args.brokers,
        group_id=args.group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=min(3000, args.session_timeout_ms // 3),
    )
    await consumer.start()
    count = 0
    nbytes = 0
    first = last = None
    pending = {}
    next_commit = time.monotonic() + 5.0
    try:
        async for msg in consumer:
            if first is None:
                first = time.perf_counter()
            count += 1
            nbytes += len(msg.value) if msg.value is not None else 0
            # The message is done: record its partition's next offset for the commit.
            pending[TopicPartition(msg.topic, msg.partition)] = msg.offset + 1
            if count >= args.messages:
                last = time.perf_counter()
                break
            if count % 1024 == 0 and time.monotonic() >= next_commit:
                await consumer.commit(pending)
                pending = {}
                next_commit = time.monotonic() + 5.0
        if pending:
            await consumer.commit(pending)
    finally:
        await consumer.stop()
    seconds = last - first
    return {
        "messages": count,
        "bytes": nbytes,
        "seconds": seconds,
        "msgs_per_sec": (count - 1) / seconds,
        "mb_per_sec": nbytes * (count - 1) / count / seconds / 1e6,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--session-timeout-ms", type=int, default=6000)
    parser.add_argument("--hold", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(consume(args))
    import aiokafka

    result["aiokafka"] = aiokafka.__version__
    print(json.dumps(result), flush=True)
    if args.hold:
        print("HOLD", flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
