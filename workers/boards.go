package workers

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-lab/troupe/actors"
)

// BoardsName is the name of a worker's boards actor (actors.NewWorkerBoards):
// the server's board proxies open its boards at PID{the worker's address,
// BoardsName}.
const BoardsName = "boards"

// resetTimeout bounds releasing every board at a reset (each board's
// release is bounded by the board actor itself).
const resetTimeout = time.Minute

// Boards is a worker's boards actor.
type Boards struct {
	system *actor.ActorSystem
	pid    *actor.PID
}

// StartBoards spawns the worker's boards actor, named BoardsName.
func StartBoards(system *actor.ActorSystem, cfg actors.WorkerBoardsConfig) (*Boards, error) {
	pid, err := system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return actors.NewWorkerBoards(cfg) }), BoardsName)
	if err != nil {
		return nil, fmt.Errorf("worker boards: %w", err)
	}
	return &Boards{system: system, pid: pid}, nil
}

// Reset releases every board the server's earlier sessions hold (powered
// off), waiting for them; for WorkerConfig.Reset.
func (b *Boards) Reset() error {
	if _, err := b.system.Root.RequestFuture(b.pid, &actors.ResetBoards{}, resetTimeout).Result(); err != nil {
		return fmt.Errorf("reset boards: %w", err)
	}
	return nil
}

// Stop releases every board and stops the boards actor.
func (b *Boards) Stop() error { return b.system.Root.StopFuture(b.pid).Wait() }
