#!/usr/bin/env bash
# Builds the Go contrib plugins offline from Debian's packaged Go libraries
# (hashicorp/go-plugin 1.0.1, grpc-go, golang/protobuf with protoc-gen-go
# `plugins=grpc`), in GOPATH mode, with Go code generated from ../../proto by
# protoc at build time. Called by `make test-e2e`, which installs the packages.
#
#   contrib/go/build.sh OUT_DIR    # binaries in OUT_DIR/bin
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROTO="$HERE/../../proto/proto"
OUT_DIR="$(mkdir -p "${1:?usage: build.sh OUT_DIR}" && cd "$1" && pwd)"
GP="$OUT_DIR/gopath"

rm -rf "$GP/src/plugboard.dev" "$GP/src/cloudevents.io" "$GP/src/plugboard-contrib"
mkdir -p "$GP/src/plugboard-contrib" "$OUT_DIR/bin"
# protoc-gen-go 1.3 writes each file under its go_package import path. The
# well-known types map to golang/protobuf 1.3's own packages (protoc 3.21's
# .proto files name google.golang.org/protobuf ones, which Debian's 1.3 lacks).
WKT="Mgoogle/protobuf/any.proto=github.com/golang/protobuf/ptypes/any"
WKT="$WKT,Mgoogle/protobuf/timestamp.proto=github.com/golang/protobuf/ptypes/timestamp"
protoc -I "$PROTO" -I /usr/include --go_out=plugins=grpc,"$WKT":"$GP/src" io/cloudevents/v1/cloudevents.proto
protoc -I "$PROTO" -I /usr/include --go_out=plugins=grpc,"$WKT":"$GP/src" \
  plugboard/v1/plugin.proto plugboard/v1/source.proto plugboard/v1/executor.proto plugboard/v1/sink.proto
cp -r "$HERE/source" "$HERE/executor" "$GP/src/plugboard-contrib/"

export GO111MODULE=off GOPATH="$GP:/usr/share/gocode" GOFLAGS="" GOPROXY=off CGO_ENABLED=0
export GOCACHE="$OUT_DIR/gocache"
cd "$GP/src/plugboard-contrib"
go build -o "$OUT_DIR/bin/plugboard-go-counter" ./source
go build -o "$OUT_DIR/bin/plugboard-go-upper" ./executor
echo "built: $OUT_DIR/bin/plugboard-go-counter $OUT_DIR/bin/plugboard-go-upper"
