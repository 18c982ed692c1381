package lab_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
)

func FuzzParseLab(f *testing.F) {
	f.Add([]byte(labFile))
	f.Add([]byte("board = [{name = \"a\", device_type = \"x\", tags = [\"u\"]}]\n"))
	f.Add([]byte("[[board]]\nname = 'a'\ndevice_type = \"\"\n"))
	f.Add([]byte("[[board]]\nname = \"vm\"\ndevice_type = \"qemu-x86_64\"\nbackend = \"qemu\"\n"))
	// Job paths are relative to the lab file, here the package directory.
	f.Add([]byte("retries = 0\nbad_after = 2\n" + labFile + "[[health_check]]\ndevice_type = \"sim\"\njob = \"testdata/health-sim.toml\"\nevery = 3\ninterval = \"1h\"\n"))
	f.Add([]byte(labFile + "[[health_check]]\ndevice_type = \"rpi4\"\njob = \"testdata/health-sim.toml\"\n"))
	f.Add([]byte("sandbox_processes = 64\nsandbox_file_size = 1048576\n" + labFile))
	f.Add([]byte("[[board]]\nname = \"b-1\"\ndevice_type = \"x\"\nbackend = \"hardware\"\n[board.console]\nkind = \"tcp\"\naddress = \"h:1\"\nmode = \"rfc2217\"\nbaud = 9600\nparity = \"odd\"\nstop_bits = 2\nflow_control = \"rtscts\"\nreconnect = \"3s\"\n[board.power]\nkind = \"manual\"\ncycle_delay = \"1s\"\nretries = 1\nsettle = \"1s\"\n[board.boot]\nmethod = \"u-boot\"\ninterrupt = \"Hit\"\ninterrupt_string = \" \"\nuboot_prompt = \"=> $\"\ncommands = [\"boot\"]\npassword = \"pw\"\nshell_prompt = \"# $\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var l *lab.Lab
		var err error
		cost := allocated(func() { l, err = lab.Parse("lab.toml", data) })
		require.Less(t, cost, uint64(maxCost), "parsing %d bytes allocated %d", len(data), cost)
		if err != nil {
			var errs jobs.Errors
			require.ErrorAs(t, err, &errs)
			return
		}
		require.NotEmpty(t, l.Boards)
		names := map[string]bool{}
		for _, b := range l.Boards {
			assert.NotEmpty(t, b.Name)
			assert.NotEmpty(t, b.DeviceType)
			// A board has a known backend, and the part of the file for it.
			switch b.Backend {
			case lab.Sim:
				assert.Nil(t, b.Hardware)
				assert.Nil(t, b.Qemu)
			case lab.QemuBackend:
				assert.NotNil(t, b.Qemu)
			case lab.HardwareBackend:
				require.NotNil(t, b.Hardware)
				hw := b.Hardware
				if hw.Console.Kind == "serial" || hw.Console.Mode == "rfc2217" {
					assert.Positive(t, hw.Console.Baud)
					assert.Contains(t, []int{1, 2}, hw.Console.StopBits)
				}
				if hw.Console.Kind == "tcp" {
					assert.Positive(t, hw.Console.Reconnect)
				}
				assert.GreaterOrEqual(t, hw.Power.Retries, 0)
				assert.Positive(t, hw.Power.Settle)
				assert.GreaterOrEqual(t, hw.Power.CycleDelay, time.Duration(0))
				assert.NotEmpty(t, hw.Boot.ShellPrompt)
			default:
				t.Errorf("board %s: unknown backend %q", b.Name, b.Backend)
			}
			assert.Positive(t, b.Line)
			assert.False(t, names[b.Name], "duplicate %q", b.Name)
			names[b.Name] = true
		}
		assert.GreaterOrEqual(t, l.Retries, 0)
		assert.GreaterOrEqual(t, l.BadAfter, 1)
		// Sandbox limits: unset (0, the defaults) or within their bounds.
		if l.SandboxProcesses != 0 {
			assert.GreaterOrEqual(t, l.SandboxProcesses, lab.MinSandboxProcesses)
		}
		if l.SandboxFileSize != 0 {
			assert.GreaterOrEqual(t, l.SandboxFileSize, int64(lab.MinSandboxFileSize))
		}
		types := map[string]bool{}
		for _, hc := range l.HealthChecks {
			assert.True(t, hasType(l, hc.DeviceType), "no board of type %q", hc.DeviceType)
			assert.False(t, types[hc.DeviceType], "two health checks for %q", hc.DeviceType)
			types[hc.DeviceType] = true
			require.NotNil(t, hc.Job)
			require.Len(t, hc.Job.Roles, 1)
			assert.Equal(t, 1, hc.Job.Roles[0].Count)
			assert.Equal(t, hc.DeviceType, hc.Job.Roles[0].DeviceType)
			assert.GreaterOrEqual(t, hc.Every, 0)
			assert.GreaterOrEqual(t, hc.Interval, time.Duration(0))
			assert.Positive(t, hc.Line)
			got, ok := l.HealthCheck(hc.DeviceType)
			assert.True(t, ok)
			assert.Equal(t, hc, got)
		}
	})
}

// maxCost is what parsing any hostile lab file may allocate in total.
const maxCost = 64 << 20

// allocated is the memory f allocates, in total.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func hasType(l *lab.Lab, dt string) bool {
	for _, b := range l.Boards {
		if b.DeviceType == dt {
			return true
		}
	}
	return false
}
