#!/usr/bin/env python3
"""Publishes one task to the platform's task queue from Python, in the
caller's trace, the way the OpenTelemetry Python docs propagate context:
`propagate.inject` into the AMQP headers (pika).

    AMQP_URL=amqp://guest:guest@localhost:5672/%2f python3 publisher.py '{"type": "echo", "payload": {"hi": 1}}'

Prints the task id and the trace id as JSON. The Rust worker processes the
task; its `process task_queue` span is a child of this script's PRODUCER
span `send task_queue`. The message follows the wire format in the README.
"""

import json
import os
import sys
import uuid

import pika
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

trace.set_tracer_provider(TracerProvider())
tracer = trace.get_tracer("python-publisher")


def main():
    task = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {"type": "echo", "payload": {}}
    queue = os.environ.get("TASK_QUEUE", "task_queue")
    task_id = str(uuid.uuid4())
    body = json.dumps({"id": task_id, "type": task["type"], "payload": task.get("payload", {})})

    connection = pika.BlockingConnection(pika.URLParameters(os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/%2f")))
    channel = connection.channel()
    channel.confirm_delivery()
    with tracer.start_as_current_span(f"send {queue}", kind=SpanKind.PRODUCER, attributes={
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "send",
        "messaging.destination.name": queue,
        "messaging.message.id": task_id,
    }) as span:
        headers = {"x-attempt": 1}
        propagate.inject(headers)
        channel.basic_publish(
            exchange="",
            routing_key=queue,
            body=body,
            properties=pika.BasicProperties(
                delivery_mode=2,
                content_type="application/json",
                message_id=task_id,
                headers=headers,
            ),
            mandatory=True,
        )
        context = span.get_span_context()
    connection.close()
    print(json.dumps({
        "id": task_id,
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
    }))


if __name__ == "__main__":
    main()
