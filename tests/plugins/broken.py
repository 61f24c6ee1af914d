"""A deliberately broken plugboard plugin for `plugboard plugin check` tests.

BROKEN_MODE picks the one thing it gets wrong; everything else is right (it
follows contrib/python/plugboard_plugin.py). Modes:

  ignores-cookie         serves even when run without the magic cookie
  wrong-version          answers app protocol version 2 whatever was offered
  socket-outside         listens outside PLUGIN_UNIX_SOCKET_DIR (in a subdirectory)
  not-serving            health "plugin" is NOT_SERVING
  bad-describe           version "one" is not semver
  schema-rejects-config  its config schema rejects the empty config {}
  invalid-event          streams an event without id
  no-result              Execute ends its stream without a result
  ignores-shutdown       keeps running after GRPCController/Shutdown
  stdout-noise           prints to stdout after the handshake
  no-automtls            ignores PLUGIN_CLIENT_CERT (plaintext, empty field 6)
  no-stdio               serves no plugin.GRPCStdio
  plain-logs             logs plain text instead of hclog JSON on stderr
"""

import json
import os
import sys
import tempfile
import threading
import time
from concurrent import futures

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))

import grpc  # noqa: E402
from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # noqa: E402

import plugboard_plugin as pp  # noqa: E402
from io_cloudevents.v1 import cloudevents_pb2  # noqa: E402
from plugboard.v1 import executor_pb2, executor_pb2_grpc, plugin_pb2, plugin_pb2_grpc  # noqa: E402
from plugboard.v1 import source_pb2, source_pb2_grpc  # noqa: E402
from plugin import grpc_controller_pb2_grpc, grpc_stdio_pb2_grpc  # noqa: E402

MODE = os.environ.get("BROKEN_MODE", "")


class Describe(plugin_pb2_grpc.PluginServicer):
    def Describe(self, request, context):
        schema = {"type": "object", "additionalProperties": False}
        if MODE == "schema-rejects-config":
            schema = {"type": "object", "required": ["url"]}
        return plugin_pb2.PluginInfo(
            name="broken",
            version="one" if MODE == "bad-describe" else "0.1.0",
            kinds=[plugin_pb2.SOURCE, plugin_pb2.EXECUTOR],
            config_schema=json.dumps(schema),
            command_prefixes=["broken"],
        )


class Source(source_pb2_grpc.SourceServicer):
    def Stream(self, request, context):
        i = 0
        while context.is_active():
            event = cloudevents_pb2.CloudEvent(
                id="" if MODE == "invalid-event" else "e-%d" % i,
                source="/broken",
                spec_version="1.0",
                type="dev.plugboard.broken",
            )
            yield source_pb2.StreamResponse(event=event, cursor=str(i))
            i += 1
            time.sleep(0.05)


class Executor(executor_pb2_grpc.ExecutorServicer):
    def Execute(self, request, context):
        yield executor_pb2.ExecuteResponse(output=b"partial output\n")
        if MODE != "no-result":
            yield executor_pb2.ExecuteResponse(result=executor_pb2.ExecuteResult(exit_code=0))


class Controller(grpc_controller_pb2_grpc.GRPCControllerServicer):
    def __init__(self, stop):
        self.stop = stop

    def Shutdown(self, request, context):
        if MODE != "ignores-shutdown":
            self.stop.set()
        from plugin import grpc_controller_pb2

        return grpc_controller_pb2.Empty()


def main():
    if MODE != "ignores-cookie" and os.environ.get(pp.COOKIE_KEY) != pp.COOKIE_VALUE:
        sys.stderr.write(pp.NOT_A_PLUGIN)
        sys.exit(1)
    version = 2 if MODE == "wrong-version" else pp.negotiate_version(os.environ.get("PLUGIN_PROTOCOL_VERSIONS"))
    stop = threading.Event()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    plugin_pb2_grpc.add_PluginServicer_to_server(Describe(), server)
    source_pb2_grpc.add_SourceServicer_to_server(Source(), server)
    executor_pb2_grpc.add_ExecutorServicer_to_server(Executor(), server)
    h = health.HealthServicer()
    h.set("plugin", health_pb2.HealthCheckResponse.NOT_SERVING if MODE == "not-serving" else health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(h, server)
    grpc_controller_pb2_grpc.add_GRPCControllerServicer_to_server(Controller(stop), server)
    if MODE != "no-stdio":
        grpc_stdio_pb2_grpc.add_GRPCStdioServicer_to_server(pp._Stdio(stop), server)

    socket_dir = os.environ.get("PLUGIN_UNIX_SOCKET_DIR") or tempfile.mkdtemp()
    if MODE == "socket-outside":
        # Not directly in the private directory (a subdirectory of it, so the
        # host still cleans it up).
        socket_dir = os.path.join(socket_dir, "elsewhere")
        os.makedirs(socket_dir, exist_ok=True)
    path = os.path.join(socket_dir, "plugin%d.sock" % os.getpid())
    cert_field = ""
    client_pem = os.environ.get("PLUGIN_CLIENT_CERT", "")
    if client_pem.strip() and MODE != "no-automtls":
        import base64

        key_pem, cert_pem, cert_der = pp._self_signed_certificate()
        creds = grpc.ssl_server_credentials([(key_pem, cert_pem)], root_certificates=client_pem.encode(), require_client_auth=True)
        server.add_secure_port("unix:" + path, creds)
        cert_field = base64.b64encode(cert_der).decode().rstrip("=")
    else:
        server.add_insecure_port("unix:" + path)
    server.start()
    sys.stdout.write("1|%d|unix|%s|grpc|%s\n" % (version, path, cert_field))
    sys.stdout.flush()
    if MODE == "plain-logs":
        sys.stderr.write("starting up, plain text\n")
        sys.stderr.flush()
    if MODE == "stdout-noise":
        print("debug: this goes to stdout, where nobody reads it")
        sys.stdout.flush()
    while not stop.wait(1.0):
        pass
    server.stop(grace=0.5).wait()
    sys.exit(0)


if __name__ == "__main__":
    main()
