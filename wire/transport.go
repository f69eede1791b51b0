package wire

import (
	"google.golang.org/grpc"
)

// Flow-control windows and socket buffers for streams of tens to hundreds
// of megabytes. gRPC's defaults (64 KiB windows grown by bandwidth probing)
// suit small RPCs; a model stream on loopback spends most of its time
// waiting for window updates with them. The windows bound what a peer can
// make the other side buffer per stream and per connection.
const (
	StreamWindow = 2 << 20
	ConnWindow   = 4 << 20
	socketBuffer = 256 << 10
	// readBuffer is smaller: each connection keeps its read buffer for
	// good, and a coordinator has one connection per participant (at 100
	// participants, 256 KiB buffers were 25 MB). TLS records are at most
	// 16 KiB, so 64 KiB still takes four per read.
	readBuffer = 64 << 10
)

// ServerOptions are the transport options of the coordinator's gRPC server.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.MaxSendMsgSize(MaxMessageBytes),
		grpc.InitialWindowSize(StreamWindow),
		grpc.InitialConnWindowSize(ConnWindow),
		grpc.ReadBufferSize(readBuffer),
		grpc.WriteBufferSize(socketBuffer),
	}
}

// DialOptions are the transport options of a participant's connection.
// Its calls use Codec, as the coordinator does: with gRPC's default
// codec, every 256 KiB chunk an agent sent or received took and cleared a
// 1 MiB buffer.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(MaxMessageBytes),
			grpc.MaxCallSendMsgSize(MaxMessageBytes),
			grpc.ForceCodecV2(Codec{}),
		),
		grpc.WithInitialWindowSize(StreamWindow),
		grpc.WithInitialConnWindowSize(ConnWindow),
		grpc.WithReadBufferSize(readBuffer),
		grpc.WithWriteBufferSize(socketBuffer),
	}
}
