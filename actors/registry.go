package actors

import cmap "github.com/orcaman/concurrent-map"

// An actor system's process registry (protoactor's NewProcessRegistry) is
// 1024 concurrent maps of concurrent-map's SHARD_COUNT shards each: at its
// default of 32, 32 768 Go maps, some 33 ms of CPU and megabytes of memory
// per actor system made — a fifth of the harness's CPU in a 1+3-node job
// run by runner.Run, paid by every `troupe run` too. The registry's 1024
// buckets already spread its locks: one shard per bucket is enough.
// Set before any map exists (nothing makes one at package init: protoactor
// makes them in NewActorSystem and in its cluster's PID cache), and never
// changed after, since a map's shard is picked with the current value.
func init() { cmap.SHARD_COUNT = 1 }
