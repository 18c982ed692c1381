package lava

import "testing"

// FuzzTestDefinition: the reader of test definition files (from: git)
// never panics and either reads a definition or says why not.
func FuzzTestDefinition(f *testing.F) {
	f.Add("metadata: {name: x}\nparams: {A: 1}\ninstall: {deps: [a], steps: [b]}\nrun: {steps: [c]}\nparse: {pattern: '(?P<test_case_id>\\S+) (?P<result>\\S+)', fixupdict: {PASS: pass}}\n")
	f.Add("run: {steps: []}\n")
	f.Add("parse: {pattern: '('}\n")
	f.Add("a: &x [*x]\n")
	f.Fuzz(func(t *testing.T, src string) {
		im := &importer{file: "job.yaml"}
		td, ok := im.testDefinition("repo@c:def.yaml", []byte(src))
		if ok != (len(im.errs) == 0) {
			t.Fatalf("ok %v with %d errors", ok, len(im.errs))
		}
		if !ok && td.steps != nil && len(im.errs) == 0 {
			t.Fatal("refused without a reason")
		}
	})
}
