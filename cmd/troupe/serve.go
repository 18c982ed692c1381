package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/server"
	"github.com/troupe-lab/troupe/store"
	"github.com/troupe-lab/troupe/workers"
)

// cmdServe is `troupe serve`: the lab server (see docs/api.md).
func cmdServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	labFile := fs.String("lab", "", "lab file (default: a built-in lab of 8 sim boards; with --workers: only the workers' boards)")
	data := fs.String("data", "./troupe-data", "directory of the store, results and logs")
	images := fs.String("images", "", "images root: jobs deploy images only from under it (default DATA/images)")
	addr := fs.String("addr", "127.0.0.1:8480", "address to listen on")
	tokenFile := fs.String("token-file", "", "API tokens (without: no auth, loopback only)")
	keep := fs.Int("keep", 0, "keep the newest N ended jobs, deleting older ones with their logs (0: all)")
	keepDays := fs.Int("keep-days", 0, "delete ended jobs, with their logs, D days after they ended (0: never)")
	verbose := fs.Bool("v", false, "debug logs")
	workersAddr := fs.String("workers", "", "address where workers connect (troupe worker --server); \"\": no workers")
	tlsDir := fs.String("tls", "", "lab CA directory (troupe ca init) for the workers' mutual TLS; without: loopback only")
	workerTimeout := fs.Duration("worker-timeout", workers.DefaultLostAfter, "a worker silent this long is lost: its nodes end incomplete and are retried elsewhere")
	var mirrors mirrorFlag
	fs.Var(&mirrors, "lava-mirror", "URL=DIR: LAVA jobs' test definition repositories and images whose URL starts with URL come from DIR (repeatable); the server fetches nothing else")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return usageError(fs, "no arguments expected, got %q", fs.Args())
	}
	if *workerTimeout <= 0 {
		return usageError(fs, "--worker-timeout: want a positive duration, got %s", *workerTimeout)
	}
	if *keep < 0 || *keepDays < 0 {
		fmt.Fprintln(stderr, "troupe serve: --keep and --keep-days must be >= 0")
		return exitInvalid
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg := server.Config{Data: *data, Images: *images, Logger: logger, Keep: *keep, KeepFor: time.Duration(*keepDays) * 24 * time.Hour, LAVAMirrors: mirrors}
	if *labFile != "" {
		l, err := lab.Load(*labFile)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitInvalid
		}
		cfg.Lab = l
		cfg.LAVAMirrors = append(cfg.LAVAMirrors, labMirrors(l)...) // --lava-mirror's first: they win a tie
	} else if *workersAddr != "" {
		// Only the workers' boards.
		cfg.Lab = &lab.Lab{File: "workers", Retries: lab.DefaultRetries, BadAfter: lab.DefaultBadAfter}
	}
	if *tokenFile != "" {
		ts, err := server.LoadTokens(*tokenFile)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitInvalid
		}
		cfg.Tokens = ts
	} else if !workers.Loopback(*addr) {
		fmt.Fprintf(stderr, "troupe serve: refusing to listen on %s without --token-file: anyone could run jobs on the lab; use a loopback address or tokens\n", *addr)
		return exitInvalid
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(stderr, "troupe serve: %v\n", err)
		return exitIncomplete
	}
	var remote *workersRemote
	if *workersAddr != "" {
		// The lab runs in the actor system the workers reach.
		if remote, err = startRemote(*workersAddr, *tlsDir, logger); err != nil {
			_ = ln.Close()
			fmt.Fprintf(stderr, "troupe serve: %v\n", err)
			return exitInvalid
		}
		defer remote.stop()
		cfg.Workers, cfg.System = true, remote.system
	}
	srv, err := server.New(cfg)
	if err != nil {
		_ = ln.Close()
		fmt.Fprintf(stderr, "troupe serve: %v\n", err)
		if errors.Is(err, store.ErrDamaged) {
			return exitInvalid
		}
		return exitIncomplete
	}
	auth := "tokens from " + *tokenFile
	if cfg.Tokens == nil {
		auth = "no auth: loopback only"
	}
	fmt.Fprintf(stdout, "troupe serving on http://%s (%s), data in %s\n", ln.Addr(), auth, *data)

	handler := srv.Handler()
	if remote != nil {
		hub, err := remote.startHub(srv, *workerTimeout, logger)
		if err != nil {
			_ = ln.Close()
			_ = srv.Close()
			fmt.Fprintf(stderr, "troupe serve: %v\n", err)
			return exitInvalid
		}
		handler = srv.WithWorkers(hub)
		fmt.Fprintf(stdout, "workers connect to %s\n", *workersAddr)
	}
	hs := srv.HTTPServer()
	hs.Handler = handler
	served := make(chan error, 1)
	go func() { served <- hs.Serve(srv.Listener(ln)) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	code := exitOK
	select {
	case s := <-sig:
		logger.Info("shutting down", "signal", s.String())
	case err := <-served:
		logger.Error("http server", "err", err)
		code = exitIncomplete
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Streams are long-lived: close what does not end in time.
	if err := hs.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		logger.Error("http shutdown", "err", err)
	}
	_ = hs.Close()
	if err := srv.Close(); err != nil {
		logger.Error("close", "err", err)
		code = exitIncomplete
	}
	logger.Info("stopped")
	return code
}
