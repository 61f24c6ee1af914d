// plugboard-go-upper: a plugboard executor written with hashicorp/go-plugin.
//
// `upper WORDS...` answers with the words in upper case. go-plugin does the
// handshake, health, AutoMTLS and Shutdown; this file registers plugboard's
// Plugin and Executor services.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "plugboard.dev/proto/plugboard/v1"
)

var handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "PLUGBOARD_PLUGIN",
	MagicCookieValue: "7c2e5d0a-1f4b-4c8e-9a3d-5b6f0e2c8d41",
}

type describer struct{}

func (describer) Describe(context.Context, *pb.DescribeRequest) (*pb.PluginInfo, error) {
	return &pb.PluginInfo{
		Name:            "go-upper",
		Version:         "0.1.0",
		Description:     "answers with its arguments in upper case (Go, hashicorp/go-plugin)",
		Kinds:           []pb.PluginKind{pb.PluginKind_EXECUTOR},
		ConfigSchema:    `{"type": "object", "additionalProperties": false}`,
		CommandPrefixes: []string{"upper"},
		Help:            "usage: upper WORDS...",
	}, nil
}

type executor struct{ log hclog.Logger }

func (e executor) Execute(req *pb.ExecuteRequest, stream pb.Executor_ExecuteServer) error {
	e.log.Info("execute", "command", req.Command, "user", req.GetContext().GetUser())
	if len(req.Args) == 0 {
		return stream.Send(&pb.ExecuteResponse{Response: &pb.ExecuteResponse_Result{
			Result: &pb.ExecuteResult{ExitCode: 2, Error: "usage: upper WORDS..."},
		}})
	}
	out := strings.ToUpper(strings.Join(req.Args, " ")) + "\n"
	if err := stream.Send(&pb.ExecuteResponse{Response: &pb.ExecuteResponse_Output{Output: []byte(out)}}); err != nil {
		return err
	}
	return stream.Send(&pb.ExecuteResponse{Response: &pb.ExecuteResponse_Result{Result: &pb.ExecuteResult{}}})
}

type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	log hclog.Logger
}

func (p *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterPluginServer(s, describer{})
	pb.RegisterExecutorServer(s, executor{log: p.log})
	return nil
}

func (p *grpcPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (interface{}, error) {
	return nil, fmt.Errorf("go-upper is a plugin, not a host")
}

func main() {
	logger := hclog.New(&hclog.LoggerOptions{Name: "go-upper", Level: hclog.Info, Output: os.Stderr, JSONFormat: true})
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: handshake,
		Plugins:         map[string]plugin.Plugin{"executor": &grpcPlugin{log: logger}},
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          logger,
	})
}
