package coordinator_test

import (
	"fmt"
	"testing"
	"time"

	c "github.com/troupe-lab/troupe/coordinator"
)

// fuzzMembers is the small group the fuzz target drives.
var fuzzMembers = []c.Member{
	{Name: "server-0", Role: "server"},
	{Name: "client-0", Role: "client"},
	{Name: "client-1", Role: "client"},
	{Name: "mon-0", Role: "mon"},
}

type fuzzKey struct {
	kind     c.Kind
	id, role string
}

// FuzzGroup decodes the bytes into requests, endings and ticks over a small
// group and checks the invariants after every event, against a model of the
// call each node is waiting on.
func FuzzGroup(f *testing.F) {
	f.Add([]byte{3, 0, 0, 0, 10, 3, 1, 0, 0, 10, 3, 2, 0, 0, 10, 3, 3, 0, 0, 10})
	f.Add([]byte{1, 1, 0, 0, 5, 4, 0, 0, 0, 0, 0, 2, 1, 0, 0})
	f.Add([]byte{2, 0, 1, 2, 3, 0, 1, 1, 0, 0, 5, 0, 0, 0, 200, 4, 2, 0, 0, 0})
	f.Add([]byte{3, 0, 2, 0, 1, 5, 0, 0, 0, 255, 3, 0, 2, 0, 1, 6, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := c.New(fuzzMembers)
		if err != nil {
			t.Fatal(err)
		}
		roles := []string{"", "server", "client", "mon"}
		ids := []string{"a", "b", "c"}
		members := map[string]bool{}
		for _, m := range fuzzMembers {
			members[m.Name] = true
		}
		waiting := map[string]fuzzKey{} // the model: each node's pending call
		ended := map[string]bool{}
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

		check := func(what string, out []c.Reply, sender string) {
			sends := 0
			for i, r := range out {
				if !members[r.Node] {
					t.Fatalf("%s: reply to non-member %q", what, r.Node)
				}
				if i > 0 && out[i-1].Node > r.Node {
					t.Fatalf("%s: replies not sorted: %v", what, out)
				}
				if r.OK == (r.Err != "") {
					t.Fatalf("%s: OK %v with Err %q", what, r.OK, r.Err)
				}
				if r.Kind == c.Send {
					if r.Node != sender || !r.OK {
						t.Fatalf("%s: bad send reply %+v", what, r)
					}
					sends++
					continue
				}
				k, ok := waiting[r.Node]
				if !ok {
					t.Fatalf("%s: %s got a reply with no call waiting (second reply?): %+v", what, r.Node, r)
				}
				if k.kind != r.Kind || k.id != r.ID {
					t.Fatalf("%s: %s waits for %v, got %+v", what, r.Node, k, r)
				}
				delete(waiting, r.Node)
			}
			if sender != "" && sends != 1 {
				t.Fatalf("%s: %d send replies", what, sends)
			}
			if g.Pending() < 0 || g.Pending() != len(waiting) {
				t.Fatalf("%s: Pending() = %d, model %d (%v)", what, g.Pending(), len(waiting), waiting)
			}
			d, ok := g.NextDeadline()
			if ok != (g.Pending() > 0) || (ok && !d.After(now)) {
				t.Fatalf("%s: NextDeadline %v %v at %v with %d pending", what, d, ok, now, g.Pending())
			}
		}

		for i := 0; i+4 < len(data); i += 5 {
			op, a, b2, r, v := data[i]%8, int(data[i+1]), int(data[i+2]), int(data[i+3]), data[i+4]
			node := fuzzMembers[a%len(fuzzMembers)].Name
			id := ids[b2%len(ids)]
			now = now.Add(time.Duration(v%16) * time.Second)
			timeout := time.Duration(1+int(v)%40) * time.Second
			what := fmt.Sprintf("event %d (op %d node %s id %s)", i/5, op, node, id)
			// Expire first, as the actor's timer would, so the model sees
			// timeouts separately from the request's own replies.
			check(what+" tick", g.Tick(now), "")
			switch op {
			case 0, 1, 2, 3, 7:
				req := c.Request{Node: node, ID: id, Timeout: timeout}
				switch op {
				case 0:
					req.Kind = c.Send
					for j := 0; j < r%3; j++ {
						req.Data = append(req.Data, c.KV{Key: fmt.Sprint("k", j), Value: fmt.Sprint(v)})
					}
				case 1:
					req.Kind = c.Wait
				case 2:
					req.Kind = c.WaitAll
					req.Role = roles[r%len(roles)]
				case 3:
					req.Kind = c.Sync
				case 7: // sometimes invalid
					req.Kind = c.Kind([]string{"wait", "sync", "bogus", "wait-all"}[r%4])
					if v%2 == 0 {
						req.Timeout = 0
					}
					if v%3 == 0 {
						req.Role = "nope"
					}
				}
				before := g.Pending()
				out, err := g.Handle(now, req)
				if err != nil {
					if len(out) != 0 || g.Pending() != before {
						t.Fatalf("%s: error %v changed state", what, err)
					}
					if !ended[node] && op != 7 {
						t.Fatalf("%s: unexpected error %v", what, err)
					}
					continue
				}
				if ended[node] {
					t.Fatalf("%s: request from ended node accepted", what)
				}
				sender := ""
				if req.Kind == c.Send {
					sender = node
				} else {
					waiting[node] = fuzzKey{req.Kind, req.ID, req.Role}
				}
				check(what, out, sender)
			case 4, 5:
				ended[node] = true
				delete(waiting, node) // dropped without a reply
				check(what, g.Ended(now, node, "died during test 'x'"), "")
			case 6:
				if d, ok := g.NextDeadline(); ok {
					now = d
					out := g.Tick(now)
					if len(out) == 0 {
						t.Fatalf("%s: tick at NextDeadline released nothing", what)
					}
					check(what, out, "")
				}
			}
		}
		for _, m := range fuzzMembers {
			delete(waiting, m.Name)
			check("final end "+m.Name, g.Ended(now, m.Name, "finished its actions"), "")
		}
		if g.Pending() != 0 {
			t.Fatalf("all ended but %d pending", g.Pending())
		}
	})
}
