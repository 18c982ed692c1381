// Package testenv decides what a test does when this machine lacks a tool
// it needs (chromium, QEMU, pdudaemon, ser2net, ...): skip where that is
// allowed, fail where every test must run.
package testenv

import (
	"os"
	"testing"
)

// RequireTools is the environment variable that turns a missing tool into
// a failure. `make test` exports it (=1), so a run that must test
// everything can never pass by skipping.
const RequireTools = "TROUPE_REQUIRE_TOOLS"

// Missing ends tb because a tool it needs is missing; what says which and
// how to install it. It fails tb when TROUPE_REQUIRE_TOOLS=1, else skips it.
func Missing(tb testing.TB, what string) {
	tb.Helper()
	if os.Getenv(RequireTools) == "1" {
		tb.Fatalf("%s (%s=1: every tool is required)", what, RequireTools)
		return
	}
	tb.Skip(what)
}
