package power

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/gosnmp/gosnmp"
)

// SNMP switches an outlet by setting an integer OID over SNMP v2c, and reads
// it back with a Get of the same OID.
//
// Defaults: Port 161, Community "private", Timeout 5s per request (two
// tries). OnValue and OffValue both zero mean APC's convention, 1 on and 2
// off (sPDUOutletCtl and rPDUOutletControlOutletCommand, whose read-back is
// 1 on, 2 off). State errors on a value that is neither.
type SNMP struct {
	Board     string
	Target    string
	Port      uint16
	Community string
	OID       string
	OnValue   int
	OffValue  int
	Timeout   time.Duration
}

// On sets OID to OnValue.
func (s *SNMP) On(ctx context.Context) error { return wrap(OpOn, s.Board, s.set(ctx, true)) }

// Off sets OID to OffValue.
func (s *SNMP) Off(ctx context.Context) error { return wrap(OpOff, s.Board, s.set(ctx, false)) }

// State gets OID: OnValue is on, OffValue is off.
func (s *SNMP) State(ctx context.Context) (bool, error) {
	on, err := s.get(ctx)
	return on, wrap(OpState, s.Board, err)
}

// Verified is true: State reads the outlet.
func (s *SNMP) Verified() bool { return true }

func (s *SNMP) values() (on, off int, err error) {
	on, off = s.OnValue, s.OffValue
	if on == 0 && off == 0 {
		on, off = 1, 2
	}
	if on == off {
		return 0, 0, fmt.Errorf("snmp: OnValue and OffValue are both %d", on)
	}
	return on, off, nil
}

func (s *SNMP) where() string {
	port := s.Port
	if port == 0 {
		port = 161
	}
	return fmt.Sprintf("snmp %s:%d %s", s.Target, port, s.OID)
}

// session connects a gosnmp client; the caller closes its Conn.
func (s *SNMP) session(ctx context.Context) (*gosnmp.GoSNMP, error) {
	if s.Target == "" || s.OID == "" {
		return nil, errors.New("snmp: Target and OID must be set")
	}
	g := &gosnmp.GoSNMP{
		Target:    s.Target,
		Port:      s.Port,
		Transport: "udp",
		Community: s.Community,
		Version:   gosnmp.Version2c,
		Timeout:   s.Timeout,
		Retries:   1,
		Context:   ctx,
		MaxOids:   gosnmp.MaxOids,
	}
	if g.Port == 0 {
		g.Port = 161
	}
	if g.Community == "" {
		g.Community = "private"
	}
	if g.Timeout <= 0 {
		g.Timeout = 5 * time.Second
	}
	if err := g.Connect(); err != nil {
		return nil, err
	}
	return g, nil
}

func (s *SNMP) set(ctx context.Context, on bool) error {
	onV, offV, err := s.values()
	if err != nil {
		return err
	}
	v := offV
	if on {
		v = onV
	}
	g, err := s.session(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", s.where(), err)
	}
	defer g.Conn.Close()
	res, err := g.Set([]gosnmp.SnmpPDU{{Name: s.OID, Type: gosnmp.Integer, Value: v}})
	if err != nil {
		return fmt.Errorf("%s: set %d: %w", s.where(), v, err)
	}
	if res.Error != gosnmp.NoError {
		return fmt.Errorf("%s: set %d: agent answered %s", s.where(), v, res.Error)
	}
	return nil
}

func (s *SNMP) get(ctx context.Context) (bool, error) {
	onV, offV, err := s.values()
	if err != nil {
		return false, err
	}
	g, err := s.session(ctx)
	if err != nil {
		return false, fmt.Errorf("%s: %w", s.where(), err)
	}
	defer g.Conn.Close()
	res, err := g.Get([]string{s.OID})
	if err != nil {
		return false, fmt.Errorf("%s: get: %w", s.where(), err)
	}
	if res.Error != gosnmp.NoError {
		return false, fmt.Errorf("%s: get: agent answered %s", s.where(), res.Error)
	}
	if len(res.Variables) != 1 {
		return false, fmt.Errorf("%s: get: %d values in the answer", s.where(), len(res.Variables))
	}
	pdu := res.Variables[0]
	switch pdu.Type {
	case gosnmp.Integer, gosnmp.Counter32, gosnmp.Gauge32, gosnmp.Uinteger32, gosnmp.Counter64:
	default:
		return false, fmt.Errorf("%s: get: a %s, not an integer", s.where(), pdu.Type)
	}
	n := gosnmp.ToBigInt(pdu.Value)
	switch {
	case n.Cmp(big.NewInt(int64(onV))) == 0:
		return true, nil
	case n.Cmp(big.NewInt(int64(offV))) == 0:
		return false, nil
	}
	return false, fmt.Errorf("%s: get: value %s is neither on (%d) nor off (%d)", s.where(), n, onV, offV)
}
