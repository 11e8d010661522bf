#!/usr/bin/env python3
"""Consumes tasks from the platform's task queue in Python, continuing each
task's trace the way the OpenTelemetry Python docs do: `propagate.extract`
from the AMQP headers (pika), then a CONSUMER span `process task_queue`.

    AMQP_URL=amqp://guest:guest@localhost:5672/%2f python3 consumer.py --count 1

Prints one JSON line per task (its id, type, the trace id and the parent
span id it continued) and acknowledges it. Stops after --count tasks, or
after --timeout seconds without one.
"""

import argparse
import json
import os

import pika
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

trace.set_tracer_provider(TracerProvider())
tracer = trace.get_tracer("python-consumer")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=30)
    args = parser.parse_args()
    queue = os.environ.get("TASK_QUEUE", "task_queue")
    connection = pika.BlockingConnection(pika.URLParameters(os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/%2f")))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=1)
    seen = 0
    for method, properties, body in channel.consume(queue, inactivity_timeout=args.timeout):
        if method is None:
            break
        carrier = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in (properties.headers or {}).items()}
        parent = propagate.extract(carrier)
        task = json.loads(body)
        with tracer.start_as_current_span(f"process {queue}", context=parent, kind=SpanKind.CONSUMER, attributes={
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "process",
            "messaging.destination.name": queue,
            "messaging.message.id": properties.message_id or "",
        }) as span:
            context = span.get_span_context()
            parent_span = trace.get_current_span(parent).get_span_context()
            print(json.dumps({
                "id": task["id"],
                "type": task["type"],
                "trace_id": format(context.trace_id, "032x"),
                "parent_span_id": format(parent_span.span_id, "016x"),
            }), flush=True)
        channel.basic_ack(method.delivery_tag)
        seen += 1
        if seen >= args.count:
            break
    channel.cancel()
    connection.close()


if __name__ == "__main__":
    main()
