package report

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// parseJUnit writes r as JUnit and decodes it back with encoding/xml.
func parseJUnit(t *testing.T, r *Results) (junitSuites, string) {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, WriteJUnit(&buf, r))
	var doc junitSuites
	require.NoError(t, xml.Unmarshal(buf.Bytes(), &doc), buf.String())
	return doc, buf.String()
}

func TestJUnitCounts(t *testing.T) {
	doc, out := parseJUnit(t, sample())
	assert.True(t, strings.HasPrefix(out, xml.Header))

	assert.Equal(t, "smoke", doc.Name)
	assert.Equal(t, "1.230", doc.Time)
	assert.Equal(t, 5, doc.Tests)
	assert.Equal(t, 1, doc.Failures)
	assert.Equal(t, 1, doc.Errors)
	assert.Equal(t, 1, doc.Skipped)

	require.Len(t, doc.Suites, 3)
	tests := []struct {
		name                             string
		tests, failures, errors, skipped int
	}{
		{"server-0.net", 2, 0, 0, 0},
		{"client-0.net", 1, 1, 0, 0},
		{"client-0.disk", 2, 0, 1, 1},
	}
	for i, tt := range tests {
		s := doc.Suites[i]
		assert.Equal(t, tt.name, s.Name)
		assert.Equal(t, tt.tests, s.Tests, tt.name)
		assert.Equal(t, tt.failures, s.Failures, tt.name)
		assert.Equal(t, tt.errors, s.Errors, tt.name)
		assert.Equal(t, tt.skipped, s.Skipped, tt.name)
		require.Len(t, s.Cases, tt.tests)
		for _, c := range s.Cases {
			assert.Equal(t, tt.name, c.Classname)
		}
	}
}

func TestJUnitCaseElements(t *testing.T) {
	doc, out := parseJUnit(t, sample())
	server, client, disk := doc.Suites[0], doc.Suites[1], doc.Suites[2]

	ping := server.Cases[0]
	assert.Equal(t, "ping", ping.Name)
	assert.Nil(t, ping.Failure)
	assert.Nil(t, ping.Error)
	assert.Nil(t, ping.Skipped)
	assert.Nil(t, ping.Properties)

	iperf := server.Cases[1]
	require.NotNil(t, iperf.Properties)
	assert.Equal(t, []junitProp{{"measurement", "93.5"}, {"units", "Mbit/s"}}, iperf.Properties.Props)

	require.NotNil(t, client.Cases[0].Failure)
	assert.NotEmpty(t, client.Cases[0].Failure.Message)
	assert.NotNil(t, disk.Cases[0].Skipped)
	assert.Contains(t, out, "<skipped></skipped>")
	require.NotNil(t, disk.Cases[1].Error)
	assert.Equal(t, "result unknown", disk.Cases[1].Error.Message)
}

func TestJUnitInfrastructure(t *testing.T) {
	tests := []struct {
		name      string
		status    string
		wantInfra []string // suites of infrastructure cases
	}{
		{"complete job has none", StatusComplete, nil},
		{"incomplete job", StatusIncomplete, []string{"client-0.troupe", "client-1.troupe"}},
		{"canceled job", StatusCanceled, []string{"client-0.troupe", "client-1.troupe"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Results{
				Job: Job{Name: "j", Status: tt.status},
				Nodes: []Node{
					{Name: "server-0", Status: StatusComplete},
					{Name: "client-0", Status: StatusIncomplete, Error: "board did not boot"},
					{Name: "client-1", Status: StatusCanceled},
				},
				Tests: []Test{{Node: "server-0", Suite: "s", Name: "t", Result: Pass}},
			}
			doc, _ := parseJUnit(t, r)
			var infra []string
			for _, s := range doc.Suites[1:] {
				require.Len(t, s.Cases, 1)
				c := s.Cases[0]
				assert.Equal(t, s.Name, c.Classname)
				assert.Equal(t, "infrastructure", c.Name)
				require.NotNil(t, c.Error)
				assert.Equal(t, 1, s.Errors)
				infra = append(infra, s.Name)
			}
			assert.Equal(t, tt.wantInfra, infra)
			assert.Equal(t, 1+len(tt.wantInfra), doc.Tests)
			assert.Equal(t, len(tt.wantInfra), doc.Errors)
			if len(infra) > 0 {
				assert.Equal(t, "board did not boot", doc.Suites[1].Cases[0].Error.Message)
				assert.Equal(t, "node status: canceled", doc.Suites[2].Cases[0].Error.Message)
			}
		})
	}
}

func TestJUnitEscaping(t *testing.T) {
	r := &Results{
		Job:   Job{Name: `job <&>" 1`, Status: StatusIncomplete},
		Nodes: []Node{{Name: "n", Status: StatusIncomplete, Error: "bad \x00\x1b[31mred\x7f & <b>\ufffe\xff"}},
		Tests: []Test{{Node: "n", Suite: "s<1>", Name: "a\x01b \"q\" & <t>", Result: Pass, Units: "\x08%"}},
	}
	doc, out := parseJUnit(t, r)
	assert.NotContains(t, out, "\x00")
	assert.NotContains(t, out, "\x01")
	assert.NotContains(t, out, "\x1b")
	assert.NotContains(t, out, "\ufffd", "invalid characters are stripped, not replaced")

	assert.Equal(t, `job <&>" 1`, doc.Name)
	assert.Equal(t, "n.s<1>", doc.Suites[0].Name)
	assert.Equal(t, `ab "q" & <t>`, doc.Suites[0].Cases[0].Name)
	assert.Equal(t, "%", doc.Suites[0].Cases[0].Properties.Props[0].Value)
	assert.Equal(t, "bad [31mred\x7f & <b>", doc.Suites[1].Cases[0].Error.Message)
}

func TestJUnitNil(t *testing.T) {
	require.Error(t, WriteJUnit(&bytes.Buffer{}, nil))
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, assert.AnError }

func TestJUnitWriteError(t *testing.T) {
	require.ErrorIs(t, WriteJUnit(failWriter{}, sample()), assert.AnError)
}
