package actors_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/workers/workerpb"
)

// fakeSwitch is a board's power switch on a worker.
type fakeSwitch struct {
	mu  sync.Mutex
	on  bool
	ops []string
}

func (s *fakeSwitch) set(op string, on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ops = append(s.ops, op)
	s.on = on
	return nil
}

func (s *fakeSwitch) On(context.Context) error  { return s.set("on", true) }
func (s *fakeSwitch) Off(context.Context) error { return s.set("off", false) }
func (s *fakeSwitch) State(context.Context) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.on, nil
}

func (s *fakeSwitch) done() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ops...)
}

// opsLab is a lab whose worker w1 has the hardware board "hw" (a fake
// switch, a console whose other end is board) and the sim board "sim".
type opsLab struct {
	lab    *actors.Lab
	system *actor.ActorSystem
	boards *actor.PID // w1's boards actor
	sw     *fakeSwitch
	board  chan net.Conn // the board's end of each console attached
}

func newOpsLab(t *testing.T) *opsLab {
	t.Helper()
	o := &opsLab{sw: &fakeSwitch{}, board: make(chan net.Conn, 4)}
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	o.lab = actors.StartLab(system, actors.LabConfig{Lab: &lab.Lab{File: "workers"}, Workers: true,
		Open: func(string, lab.Board) (actors.Backend, error) { return nil, os.ErrNotExist }})
	bs := []lab.Board{{Name: "hw", DeviceType: "bbb", Backend: lab.HardwareBackend, Hardware: &lab.Hardware{}}, {Name: "sim", DeviceType: "sim", Backend: lab.Sim}}
	pid := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return actors.NewWorkerBoards(actors.WorkerBoardsConfig{Worker: "w1", Boards: bs,
			Open:  func(string, lab.Board) (actors.Backend, error) { return nil, os.ErrNotExist },
			Power: func(lab.Board) (actors.WorkerPowerSwitch, error) { return o.sw, nil },
			Console: func(lab.Board) (io.ReadWriteCloser, error) {
				server, board := net.Pipe()
				o.board <- board
				return server, nil
			}})
	}))
	o.system, o.boards = system, pid
	o.lab.BoardsJoined("w1", pid, bs)
	t.Cleanup(func() {
		assert.NoError(t, o.lab.Stop())
		system.Shutdown()
		goleak.VerifyNone(t, leakOptions...)
	})
	return o
}

func power(t *testing.T, l *actors.Lab, board, action string) (bool, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return l.WorkerPower(ctx, board, action)
}

// TestWorkerPower: the power of a worker's board is switched and read on
// its worker; a board without a switch is refused (bad input); once the
// worker is lost the error names it.
func TestWorkerPower(t *testing.T) {
	o := newOpsLab(t)
	on, err := power(t, o.lab, "hw", "status")
	require.NoError(t, err)
	assert.False(t, on)
	on, err = power(t, o.lab, "hw", "on")
	require.NoError(t, err)
	assert.True(t, on)
	on, err = power(t, o.lab, "hw", "cycle")
	require.NoError(t, err)
	assert.True(t, on)
	on, err = power(t, o.lab, "hw", "off")
	require.NoError(t, err)
	assert.False(t, on)
	assert.Equal(t, []string{"on", "off", "on", "off"}, o.sw.done())

	_, err = power(t, o.lab, "sim", "on")
	require.ErrorIs(t, err, actors.ErrRefused)
	assert.Contains(t, err.Error(), "board sim: not a hardware board (backend sim)")
	_, err = power(t, o.lab, "nope", "on")
	require.ErrorIs(t, err, actors.ErrNotWorkerBoard)

	// A board in a node's session is the job's: refused until released.
	_, err = o.system.Root.RequestFuture(o.boards, &workerpb.OpenBoard{Session: "node-1", Job: "j", Node: "a-0", Board: "hw"}, 10*time.Second).Result()
	require.NoError(t, err)
	_, err = power(t, o.lab, "hw", "on")
	require.ErrorIs(t, err, actors.ErrRefused)
	assert.Contains(t, err.Error(), "board hw is in a job's session on worker w1")
	_, err = o.lab.WorkerConsole("hw")
	require.ErrorIs(t, err, actors.ErrRefused)
	_, err = o.system.Root.RequestFuture(o.boards, &workerpb.CloseBoard{Session: "node-1"}, 10*time.Second).Result()
	require.NoError(t, err)
	_, err = power(t, o.lab, "hw", "status")
	require.NoError(t, err, "released")

	o.lab.WorkerLost("w1")
	_, err = power(t, o.lab, "hw", "status")
	var lost *actors.WorkerLostError
	require.ErrorAs(t, err, &lost)
	assert.Equal(t, "device hw: its worker w1 is lost (offline)", err.Error())
}

// readUntil reads r until want has come, within 10 s.
func readUntil(t *testing.T, r io.Reader, want string) {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		var all []byte
		buf := make([]byte, 256)
		for {
			n, err := r.Read(buf)
			all = append(all, buf[:n]...)
			if string(all) == want || len(all) >= len(want) || err != nil {
				got <- string(all)
				return
			}
		}
	}()
	select {
	case s := <-got:
		require.Equal(t, want, s)
	case <-time.After(10 * time.Second):
		t.Fatalf("no %q", want)
	}
}

// TestWorkerConsole: the console of a worker's board streams both ways
// through the server's end; power can be switched meanwhile; closing it
// releases the console on the worker; a second console on the same board
// is refused while one is attached; a lost worker ends it naming the
// worker.
func TestWorkerConsole(t *testing.T) {
	o := newOpsLab(t)
	con, err := o.lab.WorkerConsole("hw")
	require.NoError(t, err)
	board := <-o.board
	_, err = board.Write([]byte("bbb login: "))
	require.NoError(t, err)
	readUntil(t, con, "bbb login: ")
	_, err = con.Write([]byte("root\n"))
	require.NoError(t, err)
	readUntil(t, board, "root\n")

	on, err := power(t, o.lab, "hw", "on")
	require.NoError(t, err, "power beside an attached console")
	assert.True(t, on)
	_, err = o.lab.WorkerConsole("hw")
	require.ErrorIs(t, err, actors.ErrRefused)
	assert.Contains(t, err.Error(), "board hw is in session")
	_, err = o.lab.WorkerConsole("sim")
	require.ErrorIs(t, err, actors.ErrRefused)
	assert.Contains(t, err.Error(), "board sim: not a hardware board (backend sim)")

	require.NoError(t, con.Close())
	_ = board.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = board.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "the worker closed the console")

	// Attached again once released; then the worker is lost.
	var again io.ReadWriteCloser
	deadline := time.Now().Add(10 * time.Second)
	for again == nil {
		if again, err = o.lab.WorkerConsole("hw"); err != nil {
			require.ErrorIs(t, err, actors.ErrRefused)
			require.True(t, time.Now().Before(deadline), "the console was not released: %v", err)
			again = nil
			time.Sleep(20 * time.Millisecond)
		}
	}
	<-o.board
	o.lab.WorkerLost("w1")
	_, err = again.Read(make([]byte, 10))
	var lost *actors.WorkerLostError
	require.True(t, errors.As(err, &lost), "%v", err)
	assert.Equal(t, "w1", lost.Worker)
	require.NoError(t, again.Close())
}
