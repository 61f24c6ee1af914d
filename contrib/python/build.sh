#!/usr/bin/env bash
# Builds the Python contrib plugins: generates grpcio stubs from ../../proto
# with grpcio-tools (from the virtualenv `make test-e2e` creates) and writes
# one executable per plugin into OUT_DIR/bin.
#
#   contrib/python/build.sh VENV OUT_DIR
#
# The CloudEvents proto's package is io.cloudevents.v1, and a Python package
# named `io` would shadow the standard library: the copy compiled here lives
# at io_cloudevents/v1/ (same proto package, so the wire format is unchanged).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROTO="$HERE/../../proto/proto"
VENV="$(cd "${1:?usage: build.sh VENV OUT_DIR}" && pwd)"
OUT_DIR="$(mkdir -p "${2:?usage: build.sh VENV OUT_DIR}" && cd "$2" && pwd)"
SRC="$OUT_DIR/protos"
LIB="$OUT_DIR/lib"

rm -rf "$SRC" "$LIB"
mkdir -p "$SRC/io_cloudevents/v1" "$SRC/plugboard/v1" "$SRC/plugin" "$LIB" "$OUT_DIR/bin"
cp "$PROTO/io/cloudevents/v1/cloudevents.proto" "$SRC/io_cloudevents/v1/"
cp "$PROTO"/plugin/*.proto "$SRC/plugin/"
for f in "$PROTO"/plugboard/v1/*.proto; do
  sed 's|import "io/cloudevents/v1/cloudevents.proto";|import "io_cloudevents/v1/cloudevents.proto";|' "$f" \
    > "$SRC/plugboard/v1/$(basename "$f")"
done
(cd "$SRC" && "$VENV/bin/python" -m grpc_tools.protoc -I . --python_out="$LIB" --grpc_python_out="$LIB" \
  io_cloudevents/v1/cloudevents.proto plugboard/v1/*.proto plugin/*.proto)
cp "$HERE"/plugboard_plugin.py "$HERE"/counter.py "$HERE"/reverse.py "$LIB/"

for plugin in counter reverse; do
  bin="$OUT_DIR/bin/plugboard-py-$plugin"
  printf '#!/bin/sh\nexec "%s/bin/python" "%s/%s.py" "$@"\n' "$VENV" "$LIB" "$plugin" > "$bin"
  chmod +x "$bin"
done
echo "built: $OUT_DIR/bin/plugboard-py-counter $OUT_DIR/bin/plugboard-py-reverse"
