// Package coordinator holds the deterministic decision logic of the MultiNode
// coordinator of one group of nodes: which blocking calls (wait, wait-all,
// sync) complete or fail, when, and with which reply.
//
// A Group is a plain value driven by one actor: it starts no goroutines, reads
// no clock (the caller passes the time in), does no I/O and takes no locks.
// The actor feeds it requests (Handle), node endings (Ended) and timer ticks
// (Tick), and pushes every returned Reply to its node at once; nothing polls.
// NextDeadline tells the actor when to call Tick next.
//
// # Calls
//
// Send(ID, kv...) is non-blocking: the sender gets an OK reply at once. The
// pairs stay available for the life of the group, for waiters that come
// later. A node sending the same ID again replaces its earlier pairs for that
// ID, so a retried send is idempotent. A send does not touch the sender's own
// pending call, if any.
//
// Wait(ID) completes when any OTHER node has sent ID (at once if one already
// has). Reply.Data holds the pairs of every other node that has sent ID so
// far. It fails when every other node has ended without sending ID:
//
//	wait 'ready': no node can send it any more: server-0 died during test 'serve'
//
// (all the ended nodes with their reasons, comma-separated). In a group of one
// it fails at once: "wait 'ready': no other node in the group".
//
// WaitAll(ID, role) completes when every OTHER node (of role, if not empty)
// has sent ID; Data holds their pairs. It completes at once when there are no
// such nodes. It fails as soon as one of them ends without having sent ID:
//
//	wait-all 'done' (role client): node client-2 died during test 'probe'
//
// Nodes that sent ID and then ended still count as having sent it.
//
// Sync(ID) is a barrier. The caller arrives; when every member of the group
// has arrived at ID, the call completes for all of them at once (Data empty).
// Sync IDs are a namespace of their own, independent of send IDs. A barrier
// fails for every node waiting at it as soon as any member that is not
// waiting at it ends (a node that ends while waiting at it withdraws first):
//
//	sync 'ready': node client-2 died during test 'serve'
//
// Sync IDs are single-use: once a barrier has completed, every member took
// part in it, and a later Sync with that ID from any member is treated as a
// retry and gets the same OK reply at once. Scripts that need a barrier again
// must use a new ID (e.g. "step-1", "step-2").
//
// Every reply names its node, kind and ID. Data of Wait and WaitAll replies is
// sorted by sender name, then in the order the sender gave the pairs; a sender
// with no pairs contributes nothing. Replies that are due at once (to several
// nodes) come sorted by node name; a node may get two in one batch only when
// its overdue call times out before its new request is answered.
//
// # Ending nodes
//
// Ended(node, reason) records that a node can never send or arrive again
// (died, failed, raised, finished its actions); the reason completes the
// sentence "<node> <reason>", e.g. "died during test 'serve'". The ended
// node's own pending call, if any, is dropped without a reply (there is no
// one left to read it). Every other pending call that can now never complete
// fails at once — peers learn about a death immediately instead of waiting for
// their timeout. The same checks apply to later calls: a Wait, WaitAll or Sync
// that depends on an ended node fails at once with the same kind of message.
// Requests from an ended node are errors.
//
// # Timeouts
//
// Each blocking call has its own Timeout (> 0); its deadline is its arrival
// time plus Timeout. Tick fails every pending call whose deadline is <= now:
//
//	sync 'ready' timed out after 2m0s: waiting for client-1, client-2
//	wait-all 'done' (role client) timed out after 30s: waiting for client-1
//	wait 'ready' timed out after 30s: no other node sent it
//
// (the nodes that had not arrived / not sent, sorted). Handle and Ended first
// do what Tick(now) would, so a call never completes after its deadline even
// if the actor's timer is late. A node whose sync timed out no longer counts
// as arrived; the other nodes at that barrier keep waiting (their own timeouts
// apply) and the node may arrive again.
//
// # Retries and replacement
//
// A node is a shell running one helper at a time, so it has at most one
// pending blocking call. A request identical in (node, kind, ID, role) to the
// node's pending call does not create a second call and gets no reply now:
// the pending call will answer. A retry of a call that already completed
// successfully gets the same reply again at once (the last OK reply per
// (node, kind, ID, role) is kept). Failed calls are not cached: a retry after
// a timeout waits again (with a new deadline), and a retry after a failure
// caused by an ended node fails again at once, since that node stays ended.
// A different blocking call from a node that has a pending one replaces it:
// the old call gets no reply and, if it was a sync, the node no longer counts
// as arrived at that barrier.
//
// # Errors
//
// Handle returns an error (wrapping ErrBadRequest) only for a bad request:
// unknown or ended node, unknown kind, empty ID, Data on a non-send call, Role
// on a call other than WaitAll, unknown role, a Timeout <= 0 on a blocking call
// or < 0 on a send (a send's Timeout is otherwise ignored). A bad request
// changes nothing. Everything else — including failures — is a Reply with
// OK false and a human-readable Err.
package coordinator
