package lava_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lava"
)

func FuzzImport(f *testing.F) {
	data, err := os.ReadFile("testdata/iperf-multinode.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(data))
	f.Add(job(""))
	f.Add("job_name: s\ndevice_type: qemu\ntags: [x]\nactions:\n- deploy: {images: {rootfs: {url: 'file:///a/../b'}}}\n- test:\n    definitions:\n    - {from: inline, name: 'a b', parameters: {X: \"it's\"}, repository: {run: {steps: [\"x'''\", \"'\"]}}}\n")
	f.Add("job_name: t\npriority: high\ntimeouts: {job: {days: 1}, action: {seconds: 1}}\nprotocols:\n  lava-multinode:\n    roles: {a-b: {device_type: q, count: 2}}\nactions:\n- boot: {role: [a-b]}\n")
	f.Add("a: &x [*x]\n")
	for _, tc := range unsupported {
		f.Add(tc.src)
	}
	corpus, _ := filepath.Glob("testdata/corpus/*.yaml")
	for _, c := range corpus {
		if data, err := os.ReadFile(c); err == nil {
			f.Add(string(data))
		}
	}
	f.Add(billionLaughs())
	f.Add("x: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[")
	f.Fuzz(func(t *testing.T, src string) {
		var j *jobs.Job
		var err error
		cost := allocated(func() { j, err = lava.Import("dir/job.yaml", []byte(src)) })
		if cost >= maxCost {
			t.Fatalf("importing %d bytes allocated %d", len(src), cost)
		}
		if err != nil {
			var es jobs.Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error is not jobs.Errors: %T %v", err, err)
			}
			for _, e := range es {
				if e.File != "dir/job.yaml" || e.Msg == "" {
					t.Fatalf("error without file or message: %#v", e)
				}
			}
			return
		}
		roundTrip(t, j)
	})
}
