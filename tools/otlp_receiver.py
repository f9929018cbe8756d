#!/usr/bin/env python3
"""An OTLP/HTTP receiver for the telemetry tests (tests/telemetry.rs): takes what an
OpenTelemetry exporter posts to /v1/traces and /v1/metrics, decodes the protobuf with the
OpenTelemetry project's own message definitions (opentelemetry-proto from PyPI), and appends each
export as one JSON line (the protobuf JSON mapping with trace and span ids in hex, plus "signal"
and the raw body in hex, so a test can look for text anywhere in what was sent) to the file given.

Usage: otlp_receiver.py OUT.jsonl   prints "listening on PORT" once ready (port chosen by the OS),
then serves on 127.0.0.1 until killed. Answers 200 with an empty Export*ServiceResponse, as a
collector does; 400 for a body that does not decode, 404 for other paths.
"""
import base64
import http.server
import json
import sys

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

SIGNALS = {
    "/v1/traces": ("traces", ExportTraceServiceRequest, ExportTraceServiceResponse),
    "/v1/metrics": ("metrics", ExportMetricsServiceRequest, ExportMetricsServiceResponse),
}


IDS = {"traceId", "spanId", "parentSpanId"}


def hex_ids(node):
    """The protobuf JSON mapping writes bytes as base64; trace and span ids read as hex (the form
    W3C traceparent and every tracing UI use)."""
    if isinstance(node, dict):
        return {
            k: base64.b64decode(v).hex() if k in IDS and isinstance(v, str) else hex_ids(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [hex_ids(v) for v in node]
    return node


def main():
    out_path = sys.argv[1]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            signal = SIGNALS.get(self.path)
            if signal is None:
                self.send_error(404)
                return
            name, request_type, response_type = signal
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if self.headers.get("content-type") != "application/x-protobuf":
                self.send_error(415, "expected application/x-protobuf")
                return
            message = request_type()
            try:
                message.ParseFromString(body)
            except Exception as e:  # noqa: BLE001 - any decoding failure is the sender's
                self.send_error(400, f"not a {request_type.__name__}: {e}")
                return
            record = {"signal": name, "raw": body.hex(), "body": hex_ids(MessageToDict(message))}
            with open(out_path, "a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")
            answer = response_type().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
