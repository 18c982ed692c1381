package actors

import (
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/assert"
)

// TestActorSystemIsCheap: making an actor system does not allocate its
// registry's 32 768 maps (some 70 000 allocations; a few thousand with one
// shard per bucket).
func TestActorSystemIsCheap(t *testing.T) {
	allocs := testing.AllocsPerRun(3, func() {
		s := actor.NewActorSystem()
		s.Shutdown()
	})
	assert.Less(t, allocs, 10000.0, "allocations per actor system")
}
