// plugboard-go-counter: a plugboard source written with hashicorp/go-plugin.
//
// It streams one CloudEvent every `interval` with an increasing index and
// resumes after the host's cursor (the index of the last stored event).
// go-plugin does the handshake, health ("plugin" SERVING), AutoMTLS and
// GRPCController/Shutdown; this file only registers plugboard's services.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ce "cloudevents.io/genproto/v1"
	pb "plugboard.dev/proto/plugboard/v1"
)

// plugboard's handshake: the same cookie and app protocol version in every language.
var handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "PLUGBOARD_PLUGIN",
	MagicCookieValue: "7c2e5d0a-1f4b-4c8e-9a3d-5b6f0e2c8d41",
}

const schema = `{
  "type": "object",
  "properties": {
    "interval": {"type": "string", "description": "Go duration between events, e.g. \"100ms\""},
    "count": {"type": "integer", "minimum": 0, "description": "events to send, 0 for no end"}
  },
  "additionalProperties": false
}`

type config struct {
	Interval string `json:"interval"`
	Count    uint64 `json:"count"`
}

type describer struct{}

func (describer) Describe(context.Context, *pb.DescribeRequest) (*pb.PluginInfo, error) {
	return &pb.PluginInfo{
		Name:         "go-counter",
		Version:      "0.1.0",
		Description:  "counts up, one event per interval (Go, hashicorp/go-plugin)",
		Kinds:        []pb.PluginKind{pb.PluginKind_SOURCE},
		ConfigSchema: schema,
	}, nil
}

type source struct{ log hclog.Logger }

func (s source) Stream(req *pb.StreamRequest, stream pb.Source_StreamServer) error {
	cfg := config{Interval: "100ms"}
	if len(req.Config) > 0 {
		if err := json.Unmarshal(req.Config, &cfg); err != nil {
			return status.Errorf(codes.InvalidArgument, "config: %v", err)
		}
	}
	interval, err := time.ParseDuration(cfg.Interval)
	if err != nil || interval <= 0 {
		return status.Errorf(codes.InvalidArgument, "config: interval %q is not a positive duration", cfg.Interval)
	}
	next := uint64(0)
	if req.ResumeCursor != "" {
		last, err := strconv.ParseUint(req.ResumeCursor, 10, 64)
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "resume cursor %q is not an index", req.ResumeCursor)
		}
		next = last + 1
	}
	s.log.Info("stream opened", "instance", req.Instance, "from", next)
	for i := next; cfg.Count == 0 || i < cfg.Count; i++ {
		event := &ce.CloudEvent{
			Id:          fmt.Sprintf("%s-%d", req.Instance, i),
			Source:      "/plugboard/go-counter/" + req.Instance,
			SpecVersion: "1.0",
			Type:        "dev.plugboard.go.counter",
			Attributes: map[string]*ce.CloudEvent_CloudEventAttributeValue{
				"datacontenttype": {Attr: &ce.CloudEvent_CloudEventAttributeValue_CeString{CeString: "application/json"}},
			},
			Data: &ce.CloudEvent_TextData{TextData: fmt.Sprintf(`{"index":%d}`, i)},
		}
		if err := stream.Send(&pb.StreamResponse{Event: event, Cursor: strconv.FormatUint(i, 10)}); err != nil {
			return err
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-time.After(interval):
		}
	}
	return nil
}

func (source) HandleExternalRequest(context.Context, *pb.ExternalRequest) (*pb.ExternalResponse, error) {
	return nil, status.Error(codes.Unimplemented, "go-counter takes no HTTP requests")
}

// grpcPlugin registers plugboard's services on go-plugin's gRPC server.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	log hclog.Logger
}

func (p *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterPluginServer(s, describer{})
	pb.RegisterSourceServer(s, source{log: p.log})
	return nil
}

func (p *grpcPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (interface{}, error) {
	return nil, fmt.Errorf("go-counter is a plugin, not a host")
}

func main() {
	// hclog JSON on stderr: plugboard re-logs it under the plugin's name.
	logger := hclog.New(&hclog.LoggerOptions{Name: "go-counter", Level: hclog.Info, Output: os.Stderr, JSONFormat: true})
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: handshake,
		Plugins:         map[string]plugin.Plugin{"source": &grpcPlugin{log: logger}},
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          logger,
	})
}
