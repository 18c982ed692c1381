package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/lava"
)

// mirrorFlag is --lava-mirror URL=DIR, repeatable: test definition
// repositories whose URL starts with URL are fetched from DIR instead.
type mirrorFlag []lava.Mirror

func (m *mirrorFlag) String() string {
	parts := make([]string, len(*m))
	for i, x := range *m {
		parts[i] = x.Prefix + "=" + x.Dir
	}
	return strings.Join(parts, ",")
}

func (m *mirrorFlag) Set(s string) error {
	x, err := lava.ParseMirror(s)
	if err != nil {
		return err
	}
	*m = append(*m, x)
	return nil
}

// standInNotice says, once, which device types of js the built-in sim lab
// stands in for with simulated boards (a run without --lab).
func standInNotice(w io.Writer, js []*jobs.Job) {
	var types []string
	for _, j := range js {
		for _, r := range j.Roles {
			if r.DeviceType != lab.Sim && !slices.Contains(types, r.DeviceType) {
				types = append(types, r.DeviceType)
			}
		}
	}
	if len(types) == 0 {
		return
	}
	slices.Sort(types)
	noun := "device type"
	if len(types) > 1 {
		noun = "device types"
	}
	fmt.Fprintf(w, "troupe: no --lab: %s %s stood in for by simulated boards of the built-in sim lab\n", noun, strings.Join(types, ", "))
}
