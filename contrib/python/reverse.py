"""plugboard-py-reverse: a plugboard executor in Python (grpcio).

`reverse WORDS...` answers with the words in reverse order.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))

import plugboard_plugin  # noqa: E402
from plugboard.v1 import executor_pb2, executor_pb2_grpc, plugin_pb2, plugin_pb2_grpc  # noqa: E402


class Describe(plugin_pb2_grpc.PluginServicer):
    def Describe(self, request, context):
        return plugin_pb2.PluginInfo(
            name="py-reverse",
            version="0.1.0",
            description="answers with its arguments in reverse order (Python, grpcio)",
            kinds=[plugin_pb2.EXECUTOR],
            config_schema=json.dumps({"type": "object", "additionalProperties": False}),
            command_prefixes=["reverse"],
            help="usage: reverse WORDS...",
        )


class Reverse(executor_pb2_grpc.ExecutorServicer):
    def Execute(self, request, context):
        plugboard_plugin.log("info", "execute", command=request.command, user=request.context.user)
        if not request.args:
            yield executor_pb2.ExecuteResponse(result=executor_pb2.ExecuteResult(exit_code=2, error="usage: reverse WORDS..."))
            return
        text = " ".join(reversed(request.args)) + "\n"
        yield executor_pb2.ExecuteResponse(output=text.encode())
        yield executor_pb2.ExecuteResponse(result=executor_pb2.ExecuteResult(exit_code=0))


def register(server, stop):
    plugin_pb2_grpc.add_PluginServicer_to_server(Describe(), server)
    executor_pb2_grpc.add_ExecutorServicer_to_server(Reverse(), server)


if __name__ == "__main__":
    plugboard_plugin.serve("py-reverse", register)
