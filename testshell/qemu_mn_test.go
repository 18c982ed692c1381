package testshell_test

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/internal/testenv"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/qemu"
	"github.com/troupe-lab/troupe/testshell"
)

// qemuBootTO bounds a QEMU board's boot under TCG.
const qemuBootTO = 60 * time.Second

// newQemuMNRig is an mnRig of a QEMU board (the default images) whose
// shell's Init is told of the side channel's port, as the board actor
// tells it.
func newQemuMNRig(t *testing.T, mn testshell.MultiNode, serve bool) *mnRig {
	return newQemuRig(t, mn, serve, nil)
}

// newQemuRig is newQemuMNRig whose boots start with tmpFiles in the
// guest's /tmp (qemu.Board.BootWithTmpFiles).
func newQemuRig(t *testing.T, mn testshell.MultiNode, serve bool, tmpFiles map[string][]byte) *mnRig {
	t.Helper()
	if err := qemu.Missing(); err != nil {
		testenv.Missing(t, err.Error())
	}
	// Built before the boot's clock starts: the first build takes seconds.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, err := qemu.DefaultImages(ctx, "x86_64", "", tmpFiles)
	require.NoError(t, err)
	b, err := qemu.Open(lab.Board{Name: "vm-mn", DeviceType: "qemu-x86_64", Backend: lab.QemuBackend,
		Qemu: &lab.Qemu{Arch: "x86_64", Memory: lab.DefaultQemuMemory, CPUs: 1}}, qemu.Options{})
	require.NoError(t, err)
	if tmpFiles != nil {
		b.BootWithTmpFiles(tmpFiles)
	}
	return newMNRigOn(t, b, qemuBootTO, mn, serve, testshell.MultiNodePort(qemu.MultiNodePort))
}

// TestQemuHelpersBuiltIn: a QEMU board whose default initramfs carries the
// helpers (as the board actor has it built) boots with them in /tmp: Init
// finds their stamp and types nothing more, and they work; without them
// Init types them (a second command).
func TestQemuHelpersBuiltIn(t *testing.T) {
	underTmp, err := testshell.HelpersUnderTmp()
	require.NoError(t, err)
	commands := regexp.MustCompile(`<TROUPE_END \S+ \d+>`)
	for _, c := range []struct {
		name  string
		files map[string][]byte
		want  int
	}{{"built in", underTmp, 1}, {"typed", nil, 2}} {
		t.Run(c.name, func(t *testing.T) {
			mn := &fakeMN{}
			r := newQemuRig(t, mn, true, c.files)
			assert.Len(t, commands.FindAllString(r.console(), -1), c.want, "Init's commands")
			runMNScript(t, r)
		})
	}
}

// TestQemuSideChannelMultiNode: on a QEMU board the MultiNode helpers send
// their calls on the virtio-serial port that carries the board's side
// channel and read the replies there: nothing crosses the serial console.
func TestQemuSideChannelMultiNode(t *testing.T) {
	mn := &fakeMN{}
	r := newQemuMNRig(t, mn, true)
	con := runMNScript(t, r)
	assert.NotContains(t, con, "_COMPLETE", "no reply on the console")
	assert.Len(t, mn.requests(), 5)
	assert.Equal(t, mnLogged, r.log())
}

// TestQemuConsoleMultiNodeFallback: a QEMU board whose guest has no side
// channel port (none was asked for) makes its calls on the console; so
// does a script that put another file on the channel's descriptor.
func TestQemuConsoleMultiNodeFallback(t *testing.T) {
	for _, c := range []struct {
		name   string
		serve  bool
		prefix string
	}{{"no port", false, ""}, {"descriptor reused", true, "exec 8>/dev/null\n"}} {
		t.Run(c.name, func(t *testing.T) {
			mn := &fakeMN{}
			runConsoleMN(t, newQemuMNRig(t, mn, c.serve), mn, c.prefix)
		})
	}
}
