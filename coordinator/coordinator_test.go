package coordinator_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	c "github.com/troupe-lab/troupe/coordinator"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

const tmo = 30 * time.Second

// newGroup is server-0 (server) and client-0..client-2 (client), given in an
// unsorted order.
func newGroup(t *testing.T) *c.Group {
	t.Helper()
	g, err := c.New([]c.Member{
		{Name: "client-2", Role: "client"},
		{Name: "server-0", Role: "server"},
		{Name: "client-0", Role: "client"},
		{Name: "client-1", Role: "client"},
	})
	require.NoError(t, err)
	return g
}

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

func send(node, id string, kv ...string) c.Request {
	r := c.Request{Node: node, Kind: c.Send, ID: id}
	for i := 0; i+1 < len(kv); i += 2 {
		r.Data = append(r.Data, c.KV{Key: kv[i], Value: kv[i+1]})
	}
	return r
}
func wait(node, id string) c.Request {
	return c.Request{Node: node, Kind: c.Wait, ID: id, Timeout: tmo}
}
func waitAll(node, id, role string) c.Request {
	return c.Request{Node: node, Kind: c.WaitAll, ID: id, Role: role, Timeout: tmo}
}
func syncReq(node, id string) c.Request {
	return c.Request{Node: node, Kind: c.Sync, ID: id, Timeout: 2 * time.Minute}
}

func ok(node string, k c.Kind, id string, data ...c.Message) c.Reply {
	return c.Reply{Node: node, Kind: k, ID: id, OK: true, Data: data}
}
func failed(node string, k c.Kind, id, err string) c.Reply {
	return c.Reply{Node: node, Kind: k, ID: id, Err: err}
}
func msg(sender, k, v string) c.Message { return c.Message{Sender: sender, Key: k, Value: v} }

// step is one event fed to a group, with the replies it must return.
type step struct {
	at    int        // seconds after t0
	req   *c.Request // Handle
	ended [2]string  // Ended: node, reason
	tick  bool       // Tick
	want  []c.Reply  // nil = no reply
	pend  int        // Pending() after the step
}

func h(r c.Request) *c.Request { return &r }

func runSteps(t *testing.T, g *c.Group, steps []step) {
	t.Helper()
	for i, s := range steps {
		var got []c.Reply
		switch {
		case s.req != nil:
			var err error
			got, err = g.Handle(at(s.at), *s.req)
			require.NoError(t, err, "step %d", i)
		case s.ended[0] != "":
			got = g.Ended(at(s.at), s.ended[0], s.ended[1])
		case s.tick:
			got = g.Tick(at(s.at))
		default:
			t.Fatalf("step %d: empty", i)
		}
		if len(s.want) == 0 {
			assert.Empty(t, got, "step %d", i)
		} else {
			assert.Equal(t, s.want, got, "step %d", i)
		}
		assert.Equal(t, s.pend, g.Pending(), "step %d: pending", i)
	}
}

func TestScenarios(t *testing.T) {
	const S, C0, C1, C2 = "server-0", "client-0", "client-1", "client-2"
	tests := []struct {
		name  string
		steps []step
	}{
		{"send is immediate and OK", []step{
			{req: h(send(S, "ready", "ip", "10.0.0.1")), want: []c.Reply{ok(S, c.Send, "ready")}},
		}},
		{"late waiter: send before wait", []step{
			{req: h(send(S, "ready", "ip", "10.0.0.1", "port", "5201")), want: []c.Reply{ok(S, c.Send, "ready")}},
			{at: 5, req: h(wait(C1, "ready")), want: []c.Reply{ok(C1, c.Wait, "ready", msg(S, "ip", "10.0.0.1"), msg(S, "port", "5201"))}},
		}},
		{"late sender: wait before send releases all waiters sorted", []step{
			{req: h(wait(C2, "ready")), pend: 1},
			{at: 1, req: h(wait(C0, "ready")), pend: 2},
			{at: 2, req: h(send(S, "ready", "ip", "x")), want: []c.Reply{
				ok(C0, c.Wait, "ready", msg(S, "ip", "x")),
				ok(C2, c.Wait, "ready", msg(S, "ip", "x")),
				ok(S, c.Send, "ready"),
			}},
		}},
		{"wait ignores the waiter's own send", []step{
			{req: h(send(C0, "ready", "a", "1")), want: []c.Reply{ok(C0, c.Send, "ready")}},
			{req: h(wait(C0, "ready")), pend: 1},
			{req: h(send(C1, "ready", "b", "2")), want: []c.Reply{
				ok(C0, c.Wait, "ready", msg(C1, "b", "2")),
				ok(C1, c.Send, "ready"),
			}},
		}},
		{"wait data: all other senders, by sender then order; resend replaces", []step{
			{req: h(send(C2, "id", "k", "2")), want: []c.Reply{ok(C2, c.Send, "id")}},
			{req: h(send(C0, "id", "k", "old")), want: []c.Reply{ok(C0, c.Send, "id")}},
			{req: h(send(C0, "id", "z", "1", "a", "2")), want: []c.Reply{ok(C0, c.Send, "id")}},
			{req: h(send(C1, "id")), want: []c.Reply{ok(C1, c.Send, "id")}},
			{req: h(wait(S, "id")), want: []c.Reply{ok(S, c.Wait, "id", msg(C0, "z", "1"), msg(C0, "a", "2"), msg(C2, "k", "2"))}},
		}},
		{"wait-all everyone", []step{
			{req: h(waitAll(S, "done", "")), pend: 1},
			{req: h(send(C0, "done", "r", "0")), want: []c.Reply{ok(C0, c.Send, "done")}, pend: 1},
			{req: h(send(C1, "done")), want: []c.Reply{ok(C1, c.Send, "done")}, pend: 1},
			{req: h(send(C2, "done", "r", "2")), want: []c.Reply{
				ok(C2, c.Send, "done"),
				ok(S, c.WaitAll, "done", msg(C0, "r", "0"), msg(C2, "r", "2")),
			}},
		}},
		{"wait-all role filter ignores other roles", []step{
			{req: h(send(C0, "done", "r", "0")), want: []c.Reply{ok(C0, c.Send, "done")}},
			{req: h(waitAll(C1, "done", "server")), pend: 1},
			{req: h(waitAll(S, "done", "client")), pend: 2},
			{req: h(send(C1, "done", "r", "1")), want: []c.Reply{ok(C1, c.Send, "done")}, pend: 2},
			{req: h(send(C2, "done", "r", "2")), want: []c.Reply{
				ok(C2, c.Send, "done"),
				ok(S, c.WaitAll, "done", msg(C0, "r", "0"), msg(C1, "r", "1"), msg(C2, "r", "2")),
			}, pend: 1},
			{req: h(send(S, "done", "s", "x")), want: []c.Reply{
				ok(C1, c.WaitAll, "done", msg(S, "s", "x")),
				ok(S, c.Send, "done"),
			}},
		}},
		{"wait-all own role excludes self", []step{
			{req: h(send(C1, "done")), want: []c.Reply{ok(C1, c.Send, "done")}},
			{req: h(waitAll(C0, "done", "client")), pend: 1},
			{req: h(send(S, "done")), want: []c.Reply{ok(S, c.Send, "done")}, pend: 1},
			{req: h(send(C2, "done", "k", "v")), want: []c.Reply{
				ok(C0, c.WaitAll, "done", msg(C2, "k", "v")),
				ok(C2, c.Send, "done"),
			}},
		}},
		{"wait-all with no other nodes of the role completes at once", []step{
			{req: h(waitAll(S, "done", "server")), want: []c.Reply{ok(S, c.WaitAll, "done")}},
		}},
		{"sync releases everyone at once, sorted", []step{
			{req: h(syncReq(S, "go")), pend: 1},
			{req: h(syncReq(C2, "go")), pend: 2},
			{req: h(syncReq(C0, "go")), pend: 3},
			{req: h(syncReq(C1, "go")), want: []c.Reply{
				ok(C0, c.Sync, "go"), ok(C1, c.Sync, "go"), ok(C2, c.Sync, "go"), ok(S, c.Sync, "go"),
			}},
		}},
		{"sync ids are independent of send ids", []step{
			{req: h(send(S, "go")), want: []c.Reply{ok(S, c.Send, "go")}},
			{req: h(send(C0, "go")), want: []c.Reply{ok(C0, c.Send, "go")}},
			{req: h(send(C1, "go")), want: []c.Reply{ok(C1, c.Send, "go")}},
			{req: h(syncReq(C2, "go")), pend: 1},
		}},
		{"death during pending sync fails every arrived node", []step{
			{req: h(syncReq(S, "go")), pend: 1},
			{req: h(syncReq(C0, "go")), pend: 2},
			{at: 3, ended: [2]string{C2, "died during test 'serve'"}, want: []c.Reply{
				failed(C0, c.Sync, "go", "sync 'go': node client-2 died during test 'serve'"),
				failed(S, c.Sync, "go", "sync 'go': node client-2 died during test 'serve'"),
			}},
		}},
		{"death of an arrived node fails the others too", []step{
			{req: h(syncReq(S, "go")), pend: 1},
			{req: h(syncReq(C0, "go")), pend: 2},
			{ended: [2]string{C0, "raised 'no link'"}, want: []c.Reply{
				failed(S, c.Sync, "go", "sync 'go': node client-0 raised 'no link'"),
			}},
		}},
		{"death during pending wait-all", []step{
			{req: h(send(C0, "done")), want: []c.Reply{ok(C0, c.Send, "done")}},
			{req: h(waitAll(S, "done", "client")), pend: 1},
			{ended: [2]string{C0, "finished its actions"}, pend: 1}, // already sent: fine
			{ended: [2]string{C2, "died during test 'probe'"}, want: []c.Reply{
				failed(S, c.WaitAll, "done", "wait-all 'done' (role client): node client-2 died during test 'probe'"),
			}},
		}},
		{"death of a node outside the wait-all role changes nothing", []step{
			{req: h(waitAll(C0, "done", "client")), pend: 1},
			{ended: [2]string{S, "died"}, pend: 1},
		}},
		{"wait still succeeds while another node can send", []step{
			{req: h(wait(C0, "ready")), pend: 1},
			{ended: [2]string{S, "died during test 'serve'"}, pend: 1},
			{ended: [2]string{C1, "finished its actions"}, pend: 1},
			{at: 4, req: h(send(C2, "ready", "k", "v")), want: []c.Reply{
				ok(C0, c.Wait, "ready", msg(C2, "k", "v")),
				ok(C2, c.Send, "ready"),
			}},
		}},
		{"wait fails when every other node ended without sending", []step{
			{req: h(wait(C0, "ready")), pend: 1},
			{ended: [2]string{S, "died during test 'serve'"}, pend: 1},
			{ended: [2]string{C2, "finished its actions"}, pend: 1},
			{ended: [2]string{C1, "died during boot"}, want: []c.Reply{
				failed(C0, c.Wait, "ready", "wait 'ready': no node can send it any more: client-1 died during boot, client-2 finished its actions, server-0 died during test 'serve'"),
			}},
		}},
		{"wait succeeds from a node that sent, then ended", []step{
			{req: h(send(S, "ready", "ip", "1")), want: []c.Reply{ok(S, c.Send, "ready")}},
			{ended: [2]string{S, "finished its actions"}},
			{req: h(wait(C0, "ready")), want: []c.Reply{ok(C0, c.Wait, "ready", msg(S, "ip", "1"))}},
		}},
		{"death before a later call fails it at once", []step{
			{ended: [2]string{C2, "died during test 'probe'"}},
			{req: h(syncReq(S, "go")), want: []c.Reply{failed(S, c.Sync, "go", "sync 'go': node client-2 died during test 'probe'")}},
			{req: h(waitAll(S, "done", "client")), want: []c.Reply{failed(S, c.WaitAll, "done", "wait-all 'done' (role client): node client-2 died during test 'probe'")}},
			{req: h(waitAll(C0, "done", "")), want: []c.Reply{failed(C0, c.WaitAll, "done", "wait-all 'done': node client-2 died during test 'probe'")}},
			{req: h(wait(S, "ready")), pend: 1}, // others can still send
		}},
		{"ended node's own pending call is dropped without a reply", []step{
			{req: h(wait(C0, "ready")), pend: 1},
			{ended: [2]string{C0, "died"}},
		}},
		{"timeouts via tick list the missing nodes", []step{
			{req: h(syncReq(S, "go")), pend: 1},          // deadline 120
			{at: 10, req: h(syncReq(C0, "go")), pend: 2}, // deadline 130
			{at: 20, req: h(wait(C1, "ready")), pend: 3}, // deadline 50
			{at: 25, req: h(send(S, "done")), want: []c.Reply{ok(S, c.Send, "done")}, pend: 3},
			{at: 30, req: h(waitAll(C2, "done", "")), pend: 4}, // deadline 60
			{at: 49, tick: true, pend: 4},
			{at: 60, tick: true, pend: 2, want: []c.Reply{
				failed(C1, c.Wait, "ready", "wait 'ready' timed out after 30s: no other node sent it"),
				failed(C2, c.WaitAll, "done", "wait-all 'done' timed out after 30s: waiting for client-0, client-1"),
			}},
			{at: 120, tick: true, pend: 1, want: []c.Reply{
				failed(S, c.Sync, "go", "sync 'go' timed out after 2m0s: waiting for client-1, client-2"),
			}},
			{at: 500, tick: true, want: []c.Reply{
				failed(C0, c.Sync, "go", "sync 'go' timed out after 2m0s: waiting for client-1, client-2, server-0"),
			}},
		}},
		{"wait-all role timeout message", []step{
			{req: h(send(C1, "done")), want: []c.Reply{ok(C1, c.Send, "done")}},
			{req: h(waitAll(S, "done", "client")), pend: 1},
			{at: 30, tick: true, want: []c.Reply{
				failed(S, c.WaitAll, "done", "wait-all 'done' (role client) timed out after 30s: waiting for client-0, client-2"),
			}},
		}},
		{"handle expires overdue calls before a late send", []step{
			{req: h(wait(C0, "ready")), pend: 1},
			{at: 31, req: h(send(S, "ready")), want: []c.Reply{
				failed(C0, c.Wait, "ready", "wait 'ready' timed out after 30s: no other node sent it"),
				ok(S, c.Send, "ready"),
			}},
		}},
		{"a timed-out sync withdraws; the node may arrive again", []step{
			{req: h(syncReq(S, "go")), pend: 1},
			{at: 60, req: h(syncReq(C0, "go")), pend: 2},
			{at: 120, tick: true, pend: 1, want: []c.Reply{
				failed(S, c.Sync, "go", "sync 'go' timed out after 2m0s: waiting for client-1, client-2"),
			}},
			{at: 121, req: h(syncReq(S, "go")), pend: 2},
			{at: 122, req: h(syncReq(C1, "go")), pend: 3},
			{at: 123, req: h(syncReq(C2, "go")), want: []c.Reply{
				ok(C0, c.Sync, "go"), ok(C1, c.Sync, "go"), ok(C2, c.Sync, "go"), ok(S, c.Sync, "go"),
			}},
		}},
		{"retry of a pending call: no second call, no reply", []step{
			{req: h(syncReq(S, "go")), pend: 1},
			{at: 1, req: h(syncReq(S, "go")), pend: 1},
			{req: h(wait(C0, "ready")), pend: 2},
			{at: 2, req: h(wait(C0, "ready")), pend: 2},
			{at: 3, req: h(send(C1, "ready")), want: []c.Reply{
				ok(C0, c.Wait, "ready"), ok(C1, c.Send, "ready"),
			}, pend: 1},
			// the retry kept the first deadline (t0+2m)
			{at: 120, tick: true, want: []c.Reply{
				failed(S, c.Sync, "go", "sync 'go' timed out after 2m0s: waiting for client-0, client-1, client-2"),
			}},
		}},
		{"retry of a completed call gets the same reply", []step{
			{req: h(syncReq(S, "go")), pend: 1},
			{req: h(syncReq(C0, "go")), pend: 2},
			{req: h(syncReq(C1, "go")), pend: 3},
			{req: h(syncReq(C2, "go")), want: []c.Reply{
				ok(C0, c.Sync, "go"), ok(C1, c.Sync, "go"), ok(C2, c.Sync, "go"), ok(S, c.Sync, "go"),
			}},
			{at: 9, req: h(syncReq(C1, "go")), want: []c.Reply{ok(C1, c.Sync, "go")}},
			{req: h(send(S, "ready", "v", "1")), want: []c.Reply{ok(S, c.Send, "ready")}},
			{req: h(wait(C0, "ready")), want: []c.Reply{ok(C0, c.Wait, "ready", msg(S, "v", "1"))}},
			{req: h(send(S, "ready", "v", "2")), want: []c.Reply{ok(S, c.Send, "ready")}},
			{req: h(wait(C0, "ready")), want: []c.Reply{ok(C0, c.Wait, "ready", msg(S, "v", "1"))}},
		}},
		{"a different call replaces the pending one", []step{
			{req: h(wait(C0, "ready")), pend: 1},
			{req: h(syncReq(C0, "go")), pend: 1},
			{req: h(send(S, "ready")), want: []c.Reply{ok(S, c.Send, "ready")}, pend: 1}, // old wait: no reply
			{req: h(wait(C0, "other")), pend: 1},                                         // replaces the sync: client-0 no longer arrived
			{req: h(syncReq(S, "go")), pend: 2},
			{req: h(syncReq(C1, "go")), pend: 3},
			{req: h(syncReq(C2, "go")), pend: 4},
			{at: 30, tick: true, pend: 3, want: []c.Reply{
				failed(C0, c.Wait, "other", "wait 'other' timed out after 30s: no other node sent it"),
			}},
		}},
		{"send does not replace the sender's pending call", []step{
			{req: h(wait(C0, "ready")), pend: 1},
			{req: h(send(C0, "x")), want: []c.Reply{ok(C0, c.Send, "x")}, pend: 1},
			{req: h(send(C1, "ready")), want: []c.Reply{ok(C0, c.Wait, "ready"), ok(C1, c.Send, "ready")}},
		}},
		{"failures are not cached: retry after timeout waits again", []step{
			{req: h(wait(C0, "ready")), pend: 1},
			{at: 30, tick: true, want: []c.Reply{failed(C0, c.Wait, "ready", "wait 'ready' timed out after 30s: no other node sent it")}},
			{at: 31, req: h(wait(C0, "ready")), pend: 1},
			{at: 32, req: h(send(S, "ready")), want: []c.Reply{ok(C0, c.Wait, "ready"), ok(S, c.Send, "ready")}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { runSteps(t, newGroup(t), tc.steps) })
	}
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name    string
		members []c.Member
	}{
		{"empty", nil},
		{"duplicate", []c.Member{{"a-0", "a"}, {"b-0", "b"}, {"a-0", "b"}}},
		{"empty name", []c.Member{{"", "a"}}},
		{"empty role", []c.Member{{"a-0", ""}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.New(tc.members)
			assert.Error(t, err)
		})
	}
}

func TestBadRequests(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  c.Request
		want string
	}{
		{"unknown node", c.Request{Node: "nobody", Kind: c.Wait, ID: "x", Timeout: tmo}, `unknown node "nobody"`},
		{"ended node", c.Request{Node: "client-2", Kind: c.Send, ID: "x"}, "node client-2 has ended (died)"},
		{"unknown kind", c.Request{Node: "server-0", Kind: "shout", ID: "x", Timeout: tmo}, "unknown call kind"},
		{"empty id", c.Request{Node: "server-0", Kind: c.Sync, Timeout: tmo}, "empty id"},
		{"data on wait", c.Request{Node: "server-0", Kind: c.Wait, ID: "x", Data: []c.KV{{"k", "v"}}, Timeout: tmo}, "carries data"},
		{"data on sync", c.Request{Node: "server-0", Kind: c.Sync, ID: "x", Data: []c.KV{{"k", "v"}}, Timeout: tmo}, "carries data"},
		{"role on wait", c.Request{Node: "server-0", Kind: c.Wait, ID: "x", Role: "client", Timeout: tmo}, "with a role"},
		{"unknown role", c.Request{Node: "server-0", Kind: c.WaitAll, ID: "x", Role: "router", Timeout: tmo}, `unknown role "router"`},
		{"zero timeout", c.Request{Node: "server-0", Kind: c.Sync, ID: "x"}, "timeout 0s must be positive"},
		{"negative timeout", c.Request{Node: "server-0", Kind: c.Wait, ID: "x", Timeout: -time.Second}, "must be positive"},
		{"negative timeout on send", c.Request{Node: "server-0", Kind: c.Send, ID: "x", Timeout: -time.Second}, "must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGroup(t)
			g.Ended(t0, "client-2", "died")
			// a pending call that must survive the bad request
			_, err := g.Handle(t0, wait("client-0", "y"))
			require.NoError(t, err)
			got, err := g.Handle(at(100), tc.req) // even past the deadline: nothing changes
			require.Error(t, err)
			assert.True(t, errors.Is(err, c.ErrBadRequest))
			assert.Contains(t, err.Error(), tc.want)
			assert.Nil(t, got)
			assert.Equal(t, 1, g.Pending())
		})
	}
	g := newGroup(t)
	_, err := g.Handle(t0, c.Request{Node: "server-0", Kind: c.Send, ID: "x"})
	assert.NoError(t, err, "send needs no timeout")
}

func TestNextDeadline(t *testing.T) {
	g := newGroup(t)
	_, ok := g.NextDeadline()
	assert.False(t, ok)
	mustHandle(t, g, at(0), syncReq("server-0", "go"))  // 120
	mustHandle(t, g, at(10), wait("client-0", "ready")) // 40
	mustHandle(t, g, at(20), c.Request{Node: "client-1", Kind: c.Wait, ID: "r", Timeout: 10 * time.Second})
	d, ok := g.NextDeadline()
	require.True(t, ok)
	assert.Equal(t, at(30), d)
	assert.Len(t, g.Tick(d), 1)
	d, _ = g.NextDeadline()
	assert.Equal(t, at(40), d)
	mustHandle(t, g, at(41), send("client-2", "ready")) // expires client-0's wait first
	d, _ = g.NextDeadline()
	assert.Equal(t, at(120), d)
	g.Ended(at(50), "client-2", "died") // fails the sync
	_, ok = g.NextDeadline()
	assert.False(t, ok)
	assert.Zero(t, g.Pending())
}

func mustHandle(t *testing.T, g *c.Group, now time.Time, r c.Request) []c.Reply {
	t.Helper()
	out, err := g.Handle(now, r)
	require.NoError(t, err)
	return out
}

func TestSingleMemberGroup(t *testing.T) {
	g, err := c.New([]c.Member{{"solo-0", "solo"}})
	require.NoError(t, err)
	assert.Equal(t, []c.Reply{ok("solo-0", c.Sync, "go")}, mustHandle(t, g, t0, syncReq("solo-0", "go")))
	assert.Equal(t, []c.Reply{ok("solo-0", c.WaitAll, "x")}, mustHandle(t, g, t0, waitAll("solo-0", "x", "")))
	assert.Equal(t, []c.Reply{failed("solo-0", c.Wait, "x", "wait 'x': no other node in the group")},
		mustHandle(t, g, t0, wait("solo-0", "x")))
	assert.Zero(t, g.Pending())
}

func TestRepliesDoNotAlias(t *testing.T) {
	g := newGroup(t)
	mustHandle(t, g, t0, send("server-0", "r", "k", "v"))
	out := mustHandle(t, g, t0, wait("client-0", "r"))
	out[0].Data[0].Value = "changed"
	again := mustHandle(t, g, t0, wait("client-0", "r"))
	assert.Equal(t, "v", again[0].Data[0].Value)
}

func TestEndedUnknownOrTwice(t *testing.T) {
	g := newGroup(t)
	mustHandle(t, g, t0, syncReq("server-0", "go"))
	assert.Empty(t, g.Ended(t0, "nobody", "died"))
	assert.Len(t, g.Ended(t0, "client-0", "died"), 1)
	assert.Empty(t, g.Ended(t0, "client-0", "died again"))
}

func TestLargeSyncOrder(t *testing.T) {
	const n = 1000
	ms := make([]c.Member, n)
	for i := range ms {
		ms[i] = c.Member{Name: nodeName(n - 1 - i), Role: "r"}
	}
	g, err := c.New(ms)
	require.NoError(t, err)
	start := time.Now()
	var out []c.Reply
	for i := range n {
		out = mustHandle(t, g, t0, syncReq(ms[i].Name, "go"))
	}
	elapsed := time.Since(start)
	require.Len(t, out, n)
	for i := 1; i < n; i++ {
		assert.Less(t, out[i-1].Node, out[i].Node)
	}
	assert.Zero(t, g.Pending())
	t.Logf("1000-member sync: %v", elapsed)
}
