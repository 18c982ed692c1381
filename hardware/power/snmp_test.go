package power

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// snmpAgent is a tiny SNMP v2c agent on a loopback UDP socket: it decodes
// requests and encodes answers with gosnmp's own packet code, and keeps
// integer values per OID.
type snmpAgent struct {
	conn      *net.UDPConn
	community string
	done      chan struct{}

	mu       sync.Mutex
	values   map[string]int
	sets     int
	lie      bool                      // accept sets without storing them
	readOnly bool                      // answer sets with noAccess
	raw      map[string]gosnmp.SnmpPDU // answer gets with this instead
}

func startSNMPAgent(t *testing.T, community string) *snmpAgent {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	a := &snmpAgent{conn: conn, community: community, done: make(chan struct{}),
		values: map[string]int{}, raw: map[string]gosnmp.SnmpPDU{}}
	go a.serve()
	t.Cleanup(func() {
		conn.Close()
		<-a.done
	})
	return a
}

func (a *snmpAgent) port() uint16 { return uint16(a.conn.LocalAddr().(*net.UDPAddr).Port) }

func (a *snmpAgent) value(oid string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.values[strings.TrimPrefix(oid, ".")]
}

func (a *snmpAgent) with(fn func(a *snmpAgent)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fn(a)
}

func (a *snmpAgent) serve() {
	defer close(a.done)
	buf := make([]byte, 65535)
	for {
		n, from, err := a.conn.ReadFromUDP(buf)
		if err != nil {
			return // closed
		}
		req, err := (&gosnmp.GoSNMP{}).SnmpDecodePacket(buf[:n])
		if err != nil || req.Community != a.community {
			continue // like a real agent: silence
		}
		resp := a.answer(req)
		out, err := resp.MarshalMsg()
		if err != nil {
			continue
		}
		_, _ = a.conn.WriteToUDP(out, from)
	}
}

func (a *snmpAgent) answer(req *gosnmp.SnmpPacket) *gosnmp.SnmpPacket {
	a.mu.Lock()
	defer a.mu.Unlock()
	resp := &gosnmp.SnmpPacket{Version: gosnmp.Version2c, Community: req.Community,
		PDUType: gosnmp.GetResponse, RequestID: req.RequestID}
	for i, v := range req.Variables {
		key := strings.TrimPrefix(v.Name, ".")
		switch req.PDUType {
		case gosnmp.SetRequest:
			a.sets++
			if a.readOnly {
				resp.Error, resp.ErrorIndex = gosnmp.NoAccess, uint8(i+1)
			} else if !a.lie {
				a.values[key] = v.Value.(int)
			}
			resp.Variables = append(resp.Variables, v)
		case gosnmp.GetRequest:
			if r, ok := a.raw[key]; ok {
				r.Name = v.Name
				resp.Variables = append(resp.Variables, r)
				continue
			}
			val, ok := a.values[key]
			if !ok {
				resp.Variables = append(resp.Variables, gosnmp.SnmpPDU{Name: v.Name, Type: gosnmp.NoSuchInstance})
				continue
			}
			resp.Variables = append(resp.Variables, gosnmp.SnmpPDU{Name: v.Name, Type: gosnmp.Integer, Value: val})
		}
	}
	return resp
}

const outletOID = ".1.3.6.1.4.1.318.1.1.4.4.2.1.3.4"

func TestSNMPSwitchesAndReadsBack(t *testing.T) {
	ctx := testCtx(t)
	a := startSNMPAgent(t, "private")
	s := &SNMP{Board: "apc-01", Target: "127.0.0.1", Port: a.port(), OID: outletOID, Timeout: time.Second}
	var _ Switch = s
	assert.True(t, s.Verified())

	require.NoError(t, s.On(ctx))
	assert.Equal(t, 1, a.value(outletOID), "APC's on by default")
	on, err := s.State(ctx)
	require.NoError(t, err)
	assert.True(t, on)

	require.NoError(t, s.Off(ctx))
	assert.Equal(t, 2, a.value(outletOID))
	on, err = s.State(ctx)
	require.NoError(t, err)
	assert.False(t, on)
}

func TestSNMPCustomValuesAndCommunity(t *testing.T) {
	ctx := testCtx(t)
	a := startSNMPAgent(t, "lab")
	s := &SNMP{Board: "apc-01", Target: "127.0.0.1", Port: a.port(), Community: "lab", OID: outletOID,
		OnValue: 5, OffValue: 0, Timeout: time.Second}
	require.NoError(t, s.On(ctx))
	assert.Equal(t, 5, a.value(outletOID))
	require.NoError(t, s.Off(ctx))
	on, err := s.State(ctx)
	require.NoError(t, err)
	assert.False(t, on)
}

func TestSNMPLyingAgentCaughtByVerify(t *testing.T) {
	ctx := testCtx(t)
	a := startSNMPAgent(t, "private")
	a.with(func(a *snmpAgent) { a.values[strings.TrimPrefix(outletOID, ".")] = 2; a.lie = true })
	s := &SNMP{Board: "apc-01", Target: "127.0.0.1", Port: a.port(), OID: outletOID, Timeout: time.Second}
	err := Verify(s, "apc-01", 1, 200*time.Millisecond).On(ctx)
	require.Error(t, err)
	assert.Equal(t, "power on apc-01: the PDU answered OK but the outlet is still off (2 tries)", err.Error())
	a.with(func(a *snmpAgent) { assert.Equal(t, 2, a.sets) })
}

func TestSNMPErrors(t *testing.T) {
	ctx := testCtx(t)
	a := startSNMPAgent(t, "private")
	where := "snmp 127.0.0.1:" + strconv.Itoa(int(a.port())) + " " + outletOID
	s := &SNMP{Board: "apc-01", Target: "127.0.0.1", Port: a.port(), OID: outletOID, Timeout: 300 * time.Millisecond}

	// No value yet: noSuchInstance.
	_, err := s.State(ctx)
	require.Error(t, err)
	assert.Equal(t, "power state apc-01: "+where+": get: a NoSuchInstance, not an integer", err.Error())

	a.with(func(a *snmpAgent) { a.values[strings.TrimPrefix(outletOID, ".")] = 9 })
	_, err = s.State(ctx)
	require.Error(t, err)
	assert.Equal(t, "power state apc-01: "+where+": get: value 9 is neither on (1) nor off (2)", err.Error())

	a.with(func(a *snmpAgent) { a.readOnly = true })
	err = s.On(ctx)
	require.Error(t, err)
	assert.Equal(t, "power on apc-01: "+where+": set 1: agent answered NoAccess", err.Error())

	// A wrong community gets no answer at all.
	s.Community = "public"
	start := time.Now()
	err = s.Off(ctx)
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "power off apc-01: "+where+": set 2: "), err.Error())
	assert.Contains(t, err.Error(), "timeout")
	assert.Less(t, time.Since(start), 5*time.Second)
	var pe *Error
	assert.True(t, errors.As(err, &pe))

	bad := &SNMP{Board: "apc-01", Target: "127.0.0.1", OID: outletOID, OnValue: 3, OffValue: 3}
	assert.Equal(t, "power on apc-01: snmp: OnValue and OffValue are both 3", bad.On(ctx).Error())
}
