package actors_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/troupe-lab/troupe/report"
)

// TestActionRetries: an action with retries (LAVA's failure_retry) that
// fails on the board runs again, up to its retries; past them the node is
// incomplete.
func TestActionRetries(t *testing.T) {
	job := strings.Replace(fakeJob, "image = \"rootfs.tar\"\n", "image = \"rootfs.tar\"\nretries = 1\n", 1)
	h := newHarness(t, "job.toml", job)
	h.script("client-0", fakeConfig{deployFails: 1})
	h.script("client-1", fakeConfig{deployFails: 2})
	h.start()
	r := h.wait(waitLimit)
	nodes := byNode(r)
	assert.Equal(t, report.StatusComplete, nodes["client-0"].Status, nodes["client-0"].Error)
	assert.Equal(t, report.StatusComplete, nodes["server-0"].Status, nodes["server-0"].Error)
	assert.Equal(t, report.StatusIncomplete, nodes["client-1"].Status)
	assert.Contains(t, nodes["client-1"].Error, "boom")
	assert.Equal(t, 2, h.fake("client-0").count("deploy rootfs.tar"))
	assert.Equal(t, 2, h.fake("client-1").count("deploy rootfs.tar"), "one retry, no more")
	assert.Equal(t, 1, h.fake("server-0").count("deploy rootfs.tar"))
}
