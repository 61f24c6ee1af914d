"""plugboard-py-counter: a plugboard source in Python (grpcio).

Streams one CloudEvent every `interval_ms` with an increasing index and
resumes after the host's cursor (the index of the last stored event).
"""

import json
import os
import sys

# The generated stubs and plugboard_plugin.py live beside this file; realpath
# also resolves /proc/self/fd/N when the host runs a checksum-pinned copy.
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))

import grpc  # noqa: E402

import plugboard_plugin  # noqa: E402
from io_cloudevents.v1 import cloudevents_pb2  # noqa: E402
from plugboard.v1 import plugin_pb2, plugin_pb2_grpc, source_pb2, source_pb2_grpc  # noqa: E402

SCHEMA = {
    "type": "object",
    "properties": {
        "interval_ms": {"type": "integer", "minimum": 1, "description": "milliseconds between events"},
        "count": {"type": "integer", "minimum": 0, "description": "events to send, 0 for no end"},
    },
    "additionalProperties": False,
}


class Describe(plugin_pb2_grpc.PluginServicer):
    def Describe(self, request, context):
        return plugin_pb2.PluginInfo(
            name="py-counter",
            version="0.1.0",
            description="counts up, one event per interval (Python, grpcio)",
            kinds=[plugin_pb2.SOURCE],
            config_schema=json.dumps(SCHEMA),
        )


class Counter(source_pb2_grpc.SourceServicer):
    def __init__(self, stop):
        self._stop = stop

    def Stream(self, request, context):
        try:
            config = json.loads(request.config or b"{}")
            interval = int(config.get("interval_ms", 100)) / 1000.0
            count = int(config.get("count", 0))
            index = int(request.resume_cursor) + 1 if request.resume_cursor else 0
        except ValueError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad config or cursor: %s" % e)
        plugboard_plugin.log("info", "stream opened", instance=request.instance, start=index)
        while (count == 0 or index < count) and context.is_active() and not self._stop.is_set():
            event = cloudevents_pb2.CloudEvent(
                id="%s-%d" % (request.instance, index),
                source="/plugboard/py-counter/" + request.instance,
                spec_version="1.0",
                type="dev.plugboard.py.counter",
                text_data=json.dumps({"index": index}),
            )
            event.attributes["datacontenttype"].ce_string = "application/json"
            yield source_pb2.StreamResponse(event=event, cursor=str(index))
            index += 1
            self._stop.wait(interval)

    def HandleExternalRequest(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "py-counter takes no HTTP requests")


def register(server, stop):
    plugin_pb2_grpc.add_PluginServicer_to_server(Describe(), server)
    source_pb2_grpc.add_SourceServicer_to_server(Counter(stop), server)


if __name__ == "__main__":
    plugboard_plugin.serve("py-counter", register)
