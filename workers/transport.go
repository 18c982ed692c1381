// Package workers joins the boards of many hosts into one lab: a hub actor
// on the server takes the registrations and heartbeats of worker
// processes, each of which owns the boards of its lab file. They talk over
// protoactor's own remote (gRPC), with mutual TLS from the lab CA (package
// labca); every message crossing is protobuf (package workerpb).
package workers

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/troupe-lab/troupe/labca"
)

// Transport is one end of the remote: where it listens and, with TLSDir,
// the lab CA directory it takes its certificate (Name's) from.
type Transport struct {
	Listen string // host:port; port 0 picks one
	// Advertise is the host:port peers reach this end at; "": Listen's
	// (with the port picked).
	Advertise string
	TLSDir    string // "": no TLS, loopback addresses only
	Name      string // labca.ServerName on the server, the worker's name on a worker
	Logger    *slog.Logger
	// Traffic, if set, records the arrival of every batch of messages
	// under its peer's name: on the server the worker's (its
	// certificate's; without TLS the one its messages name), on a worker
	// labca.ServerName (only the server talks to a worker).
	Traffic *Traffic
}

// Start starts protoactor remote for system. On the server it accepts
// workers of the lab CA and checks that each message a worker sends names
// that worker (its certificate's name); on a worker it accepts only the
// server. Without TLS it refuses a non-loopback address.
func (t Transport) Start(system *actor.ActorSystem) (*remote.Remote, error) {
	host, portStr, err := net.SplitHostPort(t.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", t.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: bad port", t.Listen)
	}
	if t.TLSDir == "" {
		for _, a := range []string{t.Listen, t.Advertise} {
			if a != "" && !Loopback(a) {
				return nil, fmt.Errorf("refusing %s without --tls: anyone could join the lab; use a loopback address or the lab CA", a)
			}
		}
	}
	// remote.Start panics on a port it cannot take: check first.
	ln, err := net.Listen("tcp", t.Listen)
	if err != nil {
		return nil, fmt.Errorf("workers transport: %w", err)
	}
	if port == 0 {
		port = ln.Addr().(*net.TCPAddr).Port
	}
	_ = ln.Close()
	opts := []remote.ConfigOption{}
	if t.Advertise != "" {
		opts = append(opts, remote.WithAdvertisedHost(t.Advertise))
	}
	logger := t.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if t.TLSDir != "" {
		var accept func(string) bool
		if t.Name != labca.ServerName {
			accept = func(p string) bool { return p == labca.ServerName }
		}
		cfg, err := labca.Config(t.TLSDir, t.Name, accept, logger)
		if err != nil {
			return nil, err
		}
		creds := loggedCreds{TransportCredentials: credentials.NewTLS(cfg), logger: logger}
		opts = append(opts,
			remote.WithServerOptions(grpc.Creds(creds), grpc.StreamInterceptor(t.watch(logger))),
			remote.WithDialOptions(grpc.WithTransportCredentials(creds)))
	} else {
		if t.Traffic != nil {
			opts = append(opts, remote.WithServerOptions(grpc.StreamInterceptor(t.watch(logger))))
		}
		opts = append(opts, remote.WithDialOptions(grpc.WithTransportCredentials(insecure.NewCredentials())))
	}
	r := remote.NewRemote(system, remote.Configure(host, port, opts...))
	r.Start()
	return r, nil
}

// Loopback tells whether addr (host:port) is a loopback address.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loggedCreds logs every refused incoming handshake (a peer without a
// certificate, or with one of another CA).
type loggedCreds struct {
	credentials.TransportCredentials
	logger *slog.Logger
}

func (c loggedCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	out, info, err := c.TransportCredentials.ServerHandshake(conn)
	if err != nil {
		c.logger.Warn("TLS peer refused", "peer", conn.RemoteAddr().String(), "err", err)
	}
	return out, info, err
}

func (c loggedCreds) Clone() credentials.TransportCredentials {
	return loggedCreds{TransportCredentials: c.TransportCredentials.Clone(), logger: c.logger}
}

// named is a workerpb message that names its worker.
type named interface{ GetWorker() string }

// watch wraps the remote's incoming streams: with TLS, a message from a
// peer with a certificate that names another worker ends the peer's
// stream (logged); every batch that arrives is recorded in t.Traffic.
func (t Transport) watch(logger *slog.Logger) grpc.StreamServerInterceptor {
	tls, traffic := t.TLSDir != "", t.Traffic
	peerName := ""
	if t.Name != labca.ServerName {
		peerName = labca.ServerName // a worker hears only from the server
	}
	return func(srv interface{}, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		p, ok := peer.FromContext(ss.Context())
		if !ok {
			return status.Error(codes.Unauthenticated, "no peer")
		}
		cs := &checkedStream{ServerStream: ss, name: peerName, addr: p.Addr.String(), logger: logger, traffic: traffic}
		if tls {
			info, ok := p.AuthInfo.(credentials.TLSInfo)
			if !ok {
				return status.Error(codes.Unauthenticated, "no TLS")
			}
			name := labca.PeerName(info.State)
			if name == "" {
				logger.Warn("worker refused: no certificate", "peer", p.Addr.String())
				return status.Error(codes.Unauthenticated, "no certificate")
			}
			cs.name, cs.check = name, true
		}
		return handler(srv, cs)
	}
}

// checkedStream is one peer's incoming stream. With check, name is its
// certificate's and every message must name that worker if it names one;
// without, name is the peer's once known.
type checkedStream struct {
	grpc.ServerStream
	name, addr string
	check      bool
	logger     *slog.Logger
	traffic    *Traffic
}

// errImpostor: a worker's message names another worker.
var errImpostor = errors.New("message names another worker")

func (s *checkedStream) RecvMsg(m interface{}) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	rm, ok := m.(*remote.RemoteMessage)
	if !ok {
		return nil
	}
	batch := rm.GetMessageBatch()
	if batch == nil {
		return nil
	}
	if err := s.checkBatch(batch); err != nil {
		return err
	}
	if s.traffic != nil && s.name != "" {
		s.traffic.Seen(s.name)
	}
	return nil
}

// checkBatch checks the names of a batch's messages (with TLS), or learns
// the peer's name from them (without).
func (s *checkedStream) checkBatch(batch *remote.MessageBatch) error {
	if !s.check && s.name != "" {
		return nil
	}
	for _, env := range batch.Envelopes {
		if int(env.TypeId) >= len(batch.TypeNames) || env.TypeId < 0 {
			return status.Error(codes.InvalidArgument, "bad type id")
		}
		tn := batch.TypeNames[env.TypeId]
		if !strings.HasPrefix(tn, "troupe.workers.") {
			continue
		}
		msg, err := remote.Deserialize(env.MessageData, tn, env.SerializerId)
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "%s: %v", tn, err)
		}
		n, ok := msg.(named)
		if !ok {
			continue
		}
		if !s.check {
			s.name = n.GetWorker()
			return nil
		}
		if n.GetWorker() != s.name {
			s.logger.Warn("worker refused: its message names another worker", "certificate", s.name, "claims", n.GetWorker(), "message", tn, "peer", s.addr)
			return status.Errorf(codes.PermissionDenied, "%v: certificate %q, message %q", errImpostor, s.name, n.GetWorker())
		}
	}
	return nil
}
