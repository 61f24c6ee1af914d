"""Serve a plugboard plugin from Python the way hashicorp/go-plugin does.

This follows go-plugin's guide for non-Go plugins (serve gRPC locally, health
service "plugin" SERVING, print one handshake line on stdout) plus what a real
go-plugin host also does and plugboard relies on:

* the magic cookie: run by hand, print go-plugin's message and exit 1;
* version negotiation from PLUGIN_PROTOCOL_VERSIONS;
* a Unix socket in PLUGIN_UNIX_SOCKET_DIR (private, made by the host);
* AutoMTLS when PLUGIN_CLIENT_CERT is set: our own certificate in field 6,
  TLS that accepts only the host's certificate;
* plugin.GRPCController/Shutdown (stop and exit 0) and plugin.GRPCStdio;
* hclog JSON logs on stderr, and nothing on stdout after the handshake.

Generated stubs (grpcio-tools, from plugboard's proto/ directory) must be on
sys.path; `make test-e2e` generates them.
"""

import base64
import datetime
import json
import os
import signal
import sys
import tempfile
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from plugin import grpc_controller_pb2, grpc_controller_pb2_grpc, grpc_stdio_pb2_grpc

COOKIE_KEY = "PLUGBOARD_PLUGIN"
COOKIE_VALUE = "7c2e5d0a-1f4b-4c8e-9a3d-5b6f0e2c8d41"
APP_PROTOCOL_VERSIONS = [1]
NOT_A_PLUGIN = (
    "This binary is a plugin. These are not meant to be executed directly.\n"
    "Please execute the program that consumes these plugins, which will\n"
    "load any plugins automatically\n"
)

_module = "python"


def log(level, message, **fields):
    """One hclog JSON line on stderr (@timestamp with six fractional digits)."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    entry = {"@level": level, "@message": message, "@module": _module, "@timestamp": now}
    entry.update({k: v for k, v in fields.items() if not k.startswith("@")})
    sys.stderr.write(json.dumps(entry) + "\n")
    sys.stderr.flush()


def negotiate_version(offered):
    """Highest version both sides speak; else our lowest (the host reports it)."""
    theirs = set()
    for part in (offered or "").split(","):
        try:
            theirs.add(int(part))
        except ValueError:
            pass
    for version in sorted(APP_PROTOCOL_VERSIONS, reverse=True):
        if version in theirs:
            return version
    return min(APP_PROTOCOL_VERSIONS)


def _self_signed_certificate():
    """A fresh P-256 key and certificate for `localhost` (AutoMTLS)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(seconds=30))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM), cert.public_bytes(serialization.Encoding.DER)


class _Controller(grpc_controller_pb2_grpc.GRPCControllerServicer):
    def __init__(self, stop):
        self._stop = stop

    def Shutdown(self, request, context):
        log("debug", "shutdown requested by the host")
        self._stop.set()
        return grpc_controller_pb2.Empty()


class _Stdio(grpc_stdio_pb2_grpc.GRPCStdioServicer):
    """Nothing is forwarded (logs go to stderr); hold the stream open."""

    def __init__(self, stop):
        self._stop = stop

    def StreamStdio(self, request, context):
        # Send the headers now: the host's call completes while we hold the stream.
        context.send_initial_metadata(())
        while context.is_active() and not self._stop.wait(0.5):
            pass
        return
        yield  # a server-streaming method is a generator


def serve(name, register):
    """Checks the cookie, serves until Shutdown or SIGTERM, then exits 0.

    `register(server, stop)` adds the plugin's services to the grpc server;
    `stop` is a threading.Event set when the plugin must stop (long-lived
    streams should end when it is set).
    """
    global _module
    _module = name
    if os.environ.get(COOKIE_KEY) != COOKIE_VALUE:
        sys.stderr.write(NOT_A_PLUGIN)
        sys.exit(1)
    version = negotiate_version(os.environ.get("PLUGIN_PROTOCOL_VERSIONS"))
    stop = threading.Event()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    register(server, stop)

    health_servicer = health.HealthServicer()
    health_servicer.set("plugin", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    grpc_controller_pb2_grpc.add_GRPCControllerServicer_to_server(_Controller(stop), server)
    grpc_stdio_pb2_grpc.add_GRPCStdioServicer_to_server(_Stdio(stop), server)

    socket_dir = os.environ.get("PLUGIN_UNIX_SOCKET_DIR") or tempfile.mkdtemp(prefix="plugboard-")
    path = os.path.join(socket_dir, "plugin%d.sock" % os.getpid())
    cert_field = ""
    client_pem = os.environ.get("PLUGIN_CLIENT_CERT", "")
    if client_pem.strip():
        key_pem, cert_pem, cert_der = _self_signed_certificate()
        credentials = grpc.ssl_server_credentials(
            [(key_pem, cert_pem)], root_certificates=client_pem.encode(), require_client_auth=True
        )
        server.add_secure_port("unix:" + path, credentials)
        # DER, standard base64 without padding: the line cannot carry newlines.
        cert_field = base64.b64encode(cert_der).decode().rstrip("=")
    else:
        server.add_insecure_port("unix:" + path)
    server.start()

    # Like Go plugins: Ctrl-C in the host's terminal is for the host; SIGTERM stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    sys.stdout.write("1|%d|unix|%s|grpc|%s\n" % (version, path, cert_field))
    sys.stdout.flush()
    # From now on stdout is not ours: a stray print() goes to the log instead.
    sys.stdout = sys.stderr
    log("debug", "plugin address", network="unix", address=path)

    while not stop.wait(1.0):
        pass
    server.stop(grace=0.5).wait()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sys.exit(0)
