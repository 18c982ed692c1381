package actors

import "time"

// Clock schedules the timeouts of jobs and actions. Tests use a fake one.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f once after d unless stopped first.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns the current time.
func (RealClock) Now() time.Time { return time.Now() }

// AfterFunc wraps time.AfterFunc.
func (RealClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}
