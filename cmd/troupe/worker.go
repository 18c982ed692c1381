package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/backend"
	"github.com/troupe-lab/troupe/hardware"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/labca"
	"github.com/troupe-lab/troupe/qemu"
	"github.com/troupe-lab/troupe/server"
	"github.com/troupe-lab/troupe/sim"
	"github.com/troupe-lab/troupe/workers"
	"github.com/troupe-lab/troupe/workers/images"
	"github.com/troupe-lab/troupe/workers/workerpb"
)

// cmdWorker is `troupe worker`: a process that owns the boards of its lab
// file and joins a server's lab.
func cmdWorker(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("worker", stderr)
	server := fs.String("server", "", "the server's --workers address, HOST:PORT")
	labFile := fs.String("lab", "", "lab file of this worker's boards")
	name := fs.String("name", "", "worker name (default: the host name); with --tls, the name of its certificate")
	tlsDir := fs.String("tls", "", "directory with ca.pem and NAME.pem, NAME-key.pem (troupe ca issue); without: loopback only")
	listen := fs.String("listen", "127.0.0.1:0", "address this worker listens on for the server")
	advertise := fs.String("advertise", "", "HOST:PORT the server reaches this worker at (default: --listen's)")
	data := fs.String("data", "./troupe-worker-data", "directory of the boards' sandboxes and of the deploy images fetched from the server (images/, by checksum)")
	verbose := fs.Bool("v", false, "debug logs")
	serverTimeout := fs.Duration("server-timeout", workers.DefaultLostAfter, "a server that answers no heartbeat this long is gone: register again (it is told the worker's running nodes are lost)")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return usageError(fs, "no arguments expected, got %q", fs.Args())
	}
	if *server == "" || *labFile == "" {
		return usageError(fs, "--server and --lab are required")
	}
	if *serverTimeout <= 0 {
		return usageError(fs, "--server-timeout: want a positive duration, got %s", *serverTimeout)
	}
	if *name == "" {
		h, err := os.Hostname()
		if err != nil {
			return usageError(fs, "no --name and no host name: %v", err)
		}
		*name = strings.ToLower(h)
	}
	if err := labca.CheckName(*name); err != nil {
		return usageError(fs, "%v", err)
	}
	if *tlsDir == "" && !workers.Loopback(*server) {
		fmt.Fprintf(stderr, "troupe worker: refusing server %s without --tls: use a loopback address or the lab CA\n", *server)
		return exitInvalid
	}
	l, err := lab.Load(*labFile)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitInvalid
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})).With("worker", *name)

	unsandboxed := l.Sandbox == lab.SandboxNone
	if !unsandboxed && slices.ContainsFunc(l.Boards, func(b lab.Board) bool { return b.Backend == lab.Sim }) {
		if err := sim.CheckSandbox(); err != nil {
			fmt.Fprintf(stderr, "troupe worker: lab %s: %v\n", l.File, err)
			return exitInvalid
		}
	}
	// A worker that died with boards on powers them off before it joins.
	powerOffLeftovers(l.Boards, *data, logger)

	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return logger.With("lib", "protoactor")
	}))
	defer system.Shutdown()
	traffic := workers.NewTraffic(nil)
	r, err := workers.Transport{Listen: *listen, Advertise: *advertise, TLSDir: *tlsDir, Name: *name, Logger: logger, Traffic: traffic}.Start(system)
	if err != nil {
		fmt.Fprintf(stderr, "troupe worker: %v\n", err)
		return exitInvalid
	}
	defer r.Shutdown(false)
	// The deploy images fetched from the server, by checksum.
	cache, err := images.NewCache(filepath.Join(*data, "images"), 0, 0)
	if err != nil {
		fmt.Fprintf(stderr, "troupe worker: %v\n", err)
		return exitIncomplete
	}
	env := backend.Env{Hardware: hardware.Options{Logger: logger}, Networks: qemu.NewNetworks(logger),
		SimNetworks: sim.NewNetworks(), Unsandboxed: unsandboxed, SimLimits: sim.LabLimits(l), Logger: logger}
	boardsActor, err := workers.StartBoards(system, actors.WorkerBoardsConfig{Worker: *name, Boards: l.Boards, Logger: logger, Images: cache,
		// troupe power and troupe console through the server.
		Power:   func(b lab.Board) (actors.WorkerPowerSwitch, error) { return hardware.Switch(b) },
		Console: func(b lab.Board) (io.ReadWriteCloser, error) { return hardware.OpenConsole(b, logger) },
		Open: func(_ string, b lab.Board) (actors.Backend, error) {
			e := env
			e.Dir = filepath.Join(*data, "boards", b.Name)
			return backend.Open(b, e)
		}})
	if err != nil {
		fmt.Fprintf(stderr, "troupe worker: %v\n", err)
		return exitIncomplete
	}
	// Stopped before the remote: every board is released (powered off).
	defer func() { _ = boardsActor.Stop() }()
	refused := make(chan error, 1)
	var once sync.Once
	boards := make([]*workerpb.Board, 0, len(l.Boards))
	for _, b := range l.Boards {
		boards = append(boards, &workerpb.Board{Name: b.Name, DeviceType: b.DeviceType, Tags: b.Tags, Health: string(b.Health)})
	}
	w := workers.StartWorker(system, workers.WorkerConfig{
		Name: *name, Server: *server, Incarnation: fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()),
		Boards: boards, Logger: logger, LostAfter: *serverTimeout, Traffic: traffic,
		Registered: func() {
			once.Do(func() {
				fmt.Fprintf(stdout, "troupe worker %s joined %s with %d boards\n", *name, *server, len(boards))
			})
		},
		Reset: func() {
			if err := boardsActor.Reset(); err != nil {
				logger.Error("release boards before registering again", "err", err)
			}
		},
		Refused: func(err error) {
			select {
			case refused <- err:
			default:
			}
		},
	})
	defer w.Stop()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	select {
	case s := <-sig:
		logger.Info("shutting down", "signal", s.String())
		return exitOK
	case err := <-refused:
		fmt.Fprintf(stderr, "troupe worker: %v\n", err)
		return exitInvalid
	}
}

// powerOffLeftovers powers off every board of the worker that a previous
// run may have left on (a kill -9 runs no cleanup).
func powerOffLeftovers(boards []lab.Board, data string, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for _, b := range boards {
		wg.Go(func() {
			var err error
			switch b.Backend {
			case lab.Sim:
				err = sim.PowerOffLeftover(filepath.Join(data, "boards", b.Name))
			case lab.HardwareBackend:
				var sw interface{ Off(context.Context) error }
				sw, err = hardware.PowerSwitch(b)
				if err == nil && sw != nil {
					err = sw.Off(ctx)
				}
			}
			if err != nil {
				logger.Warn("power off at start", "board", b.Name, "err", err)
			}
		})
	}
	wg.Wait()
}

// workersRemote is the server's end of the workers: the actor system the
// lab runs in, with protoactor remote started on the --workers address.
type workersRemote struct {
	system  *actor.ActorSystem
	remote  *remote.Remote
	hub     *workers.Hub
	traffic *workers.Traffic // when each worker's messages last arrived
}

// startRemote starts the server's actor system and its remote on addr.
func startRemote(addr, tlsDir string, logger *slog.Logger) (*workersRemote, error) {
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return logger.With("lib", "protoactor")
	}))
	traffic := workers.NewTraffic(nil)
	r, err := workers.Transport{Listen: addr, TLSDir: tlsDir, Name: labca.ServerName, Logger: logger, Traffic: traffic}.Start(system)
	if err != nil {
		system.Shutdown()
		return nil, err
	}
	return &workersRemote{system: system, remote: r, traffic: traffic}, nil
}

// startHub starts the hub, whose workers' boards join srv's lab.
func (w *workersRemote) startHub(srv *server.Server, lostAfter time.Duration, logger *slog.Logger) (*workers.Hub, error) {
	hub, err := workers.StartHub(w.system, workers.HubConfig{Logger: logger, LostAfter: lostAfter, Traffic: w.traffic, Joined: srv.WorkerJoined, Lost: srv.WorkerLost, Taken: srv.LabBoards()})
	if err != nil {
		return nil, err
	}
	w.hub = hub
	return hub, nil
}

// stop stops the hub and the remote, after the server (whose lab releases
// the workers' boards through it) is closed.
func (w *workersRemote) stop() {
	if w.hub != nil {
		_ = w.hub.Stop()
	}
	w.remote.Shutdown(false)
	w.system.Shutdown()
}

// printWorkers adds the server's workers and their boards to `troupe
// devices`; a server without --workers has none (404).
func printWorkers(c *client, stdout, stderr io.Writer) int {
	var ws []workers.WorkerStatus
	if err := c.do("GET", "/api/v1/workers", "", nil, &ws); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.code == http.StatusNotFound {
			return exitOK
		}
		return exitFor(stderr, err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nWORKER\tCONNECTION\tADDRESS\tBOARDS")
	for _, w := range ws {
		conn := "online"
		if !w.Connected {
			conn = "offline"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", w.Name, conn, w.Address, strings.Join(w.Boards, ","))
	}
	_ = tw.Flush()
	return exitOK
}
