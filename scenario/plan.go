package scenario

import (
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"

	"github.com/troupe-lab/troupe/jobs"
)

// PlannedFault is a fault with its target resolved.
type PlannedFault struct {
	Fault
	// Node is the node the fault hits: Fault.Node, or for a role the node
	// the seed picked; "" when the fault names a Board.
	Node string
	// Seed seeds the random choices of the board that injects the fault
	// (which bytes are noise, which are dropped).
	Seed uint64
}

// Plan is the faults of a scenario with every random choice made.
type Plan struct {
	Seed   uint64
	Faults []PlannedFault // in the scenario's order
}

// Plan resolves the faults of s for a run seeded with seed (usually
// s.Seed): the node of every role fault is picked among nodesOfRole(role)
// and every fault gets its own seed. The same seed and nodes give the same
// plan; the order of the nodes nodesOfRole returns does not matter. The
// error, a jobs.Errors, names every fault whose role has no nodes.
func (s *Scenario) Plan(seed uint64, nodesOfRole func(role string) []string) (Plan, error) {
	p := Plan{Seed: seed}
	var errs jobs.Errors
	for i, f := range s.Faults {
		fs := mix(seed, uint64(i))
		pf := PlannedFault{Fault: f, Node: f.Node, Seed: fs}
		if f.Role != "" {
			var nodes []string
			if nodesOfRole != nil {
				nodes = slices.Clone(nodesOfRole(f.Role))
			}
			if len(nodes) == 0 {
				errs = append(errs, &jobs.Error{File: s.File, Line: f.Line, Key: fmt.Sprintf("fault[%d].role", i),
					Msg: fmt.Sprintf("role %q has no nodes", f.Role)})
				continue
			}
			slices.Sort(nodes)
			// A stream of its own: the node choice does not change the fault's seed.
			pick, _ := bits.Mul64(mix(fs, 0x6e6f6465), uint64(len(nodes))) // "node"
			pf.Node = nodes[pick]
		}
		p.Faults = append(p.Faults, pf)
	}
	if len(errs) > 0 {
		return p, errs
	}
	return p, nil
}

// mix derives a well-spread 64-bit value from a seed and a stream number
// (splitmix64 finalizer over both). It is fixed: plans must not change
// between versions of Go or troupe.
func mix(seed, stream uint64) uint64 {
	z := seed + (stream+1)*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// String describes the plan, one line per fault, such as
// "client-1 (role client): power-loss when test:serve after 500ms (seed 123)".
func (p Plan) String() string {
	lines := make([]string, len(p.Faults))
	for i, f := range p.Faults {
		lines[i] = f.String()
	}
	return strings.Join(lines, "\n")
}

// String describes one planned fault.
func (f PlannedFault) String() string {
	var b strings.Builder
	switch {
	case f.Board != "":
		b.WriteString("board " + f.Board)
	case f.Role != "":
		fmt.Fprintf(&b, "%s (role %s)", f.Node, f.Role)
	default:
		b.WriteString(f.Node)
	}
	b.WriteString(": " + f.Kind)
	switch f.Kind {
	case SlowBoot:
		fmt.Fprintf(&b, " by %s", f.Duration)
	case ConsoleDisconnect:
		if f.Duration > 0 {
			fmt.Fprintf(&b, " for %s", f.Duration)
		} else {
			b.WriteString(" for good")
		}
	case ConsoleNoise:
		fmt.Fprintf(&b, " at %s bytes/s", strconv.FormatFloat(f.Rate, 'g', -1, 64))
	case ConsoleDrop:
		fmt.Fprintf(&b, " with probability %s", strconv.FormatFloat(f.Probability, 'g', -1, 64))
	case ConsoleSlow:
		fmt.Fprintf(&b, " at %d baud", f.Baud)
	}
	when := f.When
	if when == "" {
		when = WhenBoot
	}
	b.WriteString(" when " + when)
	if f.After > 0 {
		fmt.Fprintf(&b, " after %s", f.After)
	}
	fmt.Fprintf(&b, " (seed %d)", f.Seed)
	return b.String()
}
