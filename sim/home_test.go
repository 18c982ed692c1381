package sim

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/troupe-lab/troupe/console"
)

// plant is what a job leaves on its board for the next one: files in HOME
// and /tmp, a directory nobody may read, write or enter, and a symlink to
// a host directory (which the wipe must not follow).
func plant(outside string) string {
	return `echo mine > "$HOME/secret" && echo mine > /tmp/secret && ` +
		`mkdir -p "$HOME/locked/in" /tmp/locked && echo x > "$HOME/locked/in/f" && ` +
		`chmod 000 "$HOME/locked/in" "$HOME/locked" /tmp/locked && ` +
		`ln -s ` + outside + ` "$HOME/out" && echo planted`
}

// seen lists what a job finds in its HOME and /tmp.
const seen = `find "$HOME" /tmp -mindepth 1 | sort`

// jobOn opens the board in dir for a job, powers it on and logs in; the
// board is closed at the end of the test unless the caller does it first.
func jobOn(t *testing.T, dir string) (*Board, *console.Console) {
	t.Helper()
	b, err := New(Options{Name: "home", Dir: dir})
	require.NoError(t, err)
	c := console.New(b.Console(), console.Options{})
	t.Cleanup(func() {
		assert.NoError(t, b.Close())
		_ = c.Close()
	})
	require.NoError(t, b.On(ctxT(t, waitTO)))
	login(t, b, c)
	return b, c
}

// outsideDir is a host directory with a file, reachable by a symlink the
// board plants: it must survive the wipe.
func outsideDir(t *testing.T) string {
	t.Helper()
	outside := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(outside, "keep"), []byte("host's"), 0o600))
	return outside
}

// TestHomeStartsEmptyForEveryJob: what a job leaves in its board's HOME and
// /tmp, an unremovable directory included, is gone for the next job on
// that board, and gone from the host once the job's board is closed.
func TestHomeStartsEmptyForEveryJob(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "home")
	outside := outsideDir(t)

	b, c := jobOn(t, dir)
	require.Equal(t, "planted\n", run(t, b, c, plant(outside)))
	require.FileExists(t, filepath.Join(b.Root(), "secret"))
	require.NoError(t, b.Close())
	assert.NoDirExists(t, filepath.Join(dir, rootName), "the job's files outlive its board")
	assert.FileExists(t, filepath.Join(outside, "keep"), "the wipe followed a symlink")

	b, c = jobOn(t, dir)
	assert.Equal(t, "/root/tmp\n", run(t, b, c, seen))
}

// TestHomeStartsEmptyAfterHarnessKilled: a harness killed (SIGKILL) with a
// board on leaves its job's files behind; the next job on that board sees
// none of them, whether PowerOffLeftover ran at start-up or not.
func TestHomeStartsEmptyAfterHarnessKilled(t *testing.T) {
	if dir := os.Getenv("TROUPE_HOME_HARNESS"); dir != "" {
		b, c := jobOn(t, dir)
		run(t, b, c, plant(os.Getenv("TROUPE_HOME_OUTSIDE")))
		fmt.Println("PLANTED")
		select {} // until killed
	}
	outside := outsideDir(t)
	for _, leftover := range []bool{true, false} {
		t.Run(fmt.Sprintf("PowerOffLeftover=%v", leftover), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "home")
			killedWithBoardOn(t, dir, outside)
			require.FileExists(t, filepath.Join(dir, rootName, "secret"), "the killed job's files")
			// A sandboxed board's processes died with its harness: no
			// power-on token is left for PowerOffLeftover to act on.
			require.NoFileExists(t, filepath.Join(dir, tokenFile))
			if leftover {
				require.NoError(t, PowerOffLeftover(dir))
				assert.NoDirExists(t, filepath.Join(dir, rootName))
			}
			b, c := jobOn(t, dir)
			assert.Equal(t, "/root/tmp\n", run(t, b, c, seen))
			assert.FileExists(t, filepath.Join(outside, "keep"), "the wipe followed a symlink")
		})
	}
}

// killedWithBoardOn runs a harness (this test binary) that opens the board
// in dir, plants files on it and is killed with SIGKILL, its board on.
func killedWithBoardOn(t *testing.T, dir, outside string) {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run", "^TestHomeStartsEmptyAfterHarnessKilled$", "-test.timeout", "1m")
	cmd.Env = append(os.Environ(), "TROUPE_HOME_HARNESS="+dir, "TROUPE_HOME_OUTSIDE="+outside, "GORACE=atexit_sleep_ms=0")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var got []byte
	buf := make([]byte, 4096)
	deadline := time.Now().Add(waitTO)
	for !regexp.MustCompile(`(?m)^PLANTED$`).Match(got) && time.Now().Before(deadline) {
		n, err := out.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	require.Regexp(t, `(?m)^PLANTED$`, string(got), "the harness did not plant its files")
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
}

// TestOpenUpUnlocksEveryDirectory: directories the board made unreadable
// (which stop a wipe by a harness that is not root) are given back to
// their owner, but not through a symlink.
func TestOpenUpUnlocksEveryDirectory(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	require.NoError(t, os.Chmod(outside, 0o500))
	t.Cleanup(func() { _ = os.Chmod(outside, 0o700) })
	root := filepath.Join(dir, rootName)
	require.NoError(t, os.MkdirAll(filepath.Join(root, "a", "b"), 0o755))
	require.NoError(t, os.Symlink(outside, filepath.Join(root, "a", "out")))
	for _, p := range []string{filepath.Join(root, "a", "b"), filepath.Join(root, "a"), root} {
		require.NoError(t, os.Chmod(p, 0))
	}
	d, err := os.OpenRoot(dir)
	require.NoError(t, err)
	defer d.Close()
	require.NoError(t, openUp(d, rootName))
	for _, p := range []string{root, filepath.Join(root, "a"), filepath.Join(root, "a", "b")} {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		assert.Equal(t, fs.FileMode(0o700), fi.Mode().Perm(), p)
	}
	fi, err := os.Stat(outside)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o500), fi.Mode().Perm(), "followed a symlink")
	require.NoError(t, clearRoot(dir))
	assert.NoDirExists(t, root)
}

// TestSpreadBoards: the boards' work directory is marked as the top of
// directory hierarchies where the file system has the flag (ext4), and
// keeps its other flags; where it has none, the error says so.
func TestSpreadBoards(t *testing.T) {
	dir := t.TempDir()
	flags := func() (uint32, error) {
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		require.NoError(t, err)
		defer unix.Close(fd)
		return unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	}
	before, err := flags()
	serr := SpreadBoards(dir)
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) {
		assert.ErrorIs(t, serr, err, "a file system without flags")
		return
	}
	require.NoError(t, err)
	require.NoError(t, serr)
	after, err := flags()
	require.NoError(t, err)
	assert.NotZero(t, after&topDirFlag, "marked as the top of hierarchies")
	assert.Equal(t, before, after&^topDirFlag, "other flags kept")
	require.NoError(t, SpreadBoards(dir))
	again, err := flags()
	require.NoError(t, err)
	assert.Equal(t, after, again)
	assert.Error(t, SpreadBoards(filepath.Join(dir, "missing")))
}
