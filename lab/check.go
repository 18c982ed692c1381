package lab

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/scheduler"
)

// UnsatisfiableError means that a lab can never run a job, however many of
// its boards are free.
type UnsatisfiableError struct {
	Job   string
	Lab   string
	Lines []string // one per problem
}

func (e *UnsatisfiableError) Error() string {
	return fmt.Sprintf("lab %s cannot run job %s: %s", e.Lab, e.Job, strings.Join(e.Lines, "; "))
}

// Check reports whether l could run j if all its boards were free, by the
// scheduler's one feasibility rule (scheduler.MayServe): boards the lab file
// puts in health bad or retired do not count. If not, it returns an
// *UnsatisfiableError.
func (l *Lab) Check(j *jobs.Job) error {
	err := scheduler.Never(scheduler.State{Boards: l.SchedulerBoards()}, SchedulerJob(j.Name, j, time.Time{}))
	var ne *scheduler.NeverError
	if errors.As(err, &ne) {
		return &UnsatisfiableError{Job: j.Name, Lab: l.File, Lines: ne.Lines}
	}
	return err
}

// SchedulerBoards are l's boards as the scheduler sees them, in lab order,
// with the health the lab file gives them ("": unknown).
func (l *Lab) SchedulerBoards() []scheduler.Board {
	bs := make([]scheduler.Board, 0, len(l.Boards))
	for _, b := range l.Boards {
		h := scheduler.Health(b.Health)
		if h == "" {
			h = scheduler.Unknown
		}
		bs = append(bs, scheduler.Board{Name: b.Name, DeviceType: b.DeviceType, Tags: b.Tags, Health: h})
	}
	return bs
}

// SchedulerJob is j as the scheduler places it, under the given ID.
func SchedulerJob(id string, j *jobs.Job, submitted time.Time) scheduler.Job {
	sj := scheduler.Job{ID: id, Name: j.Name, Priority: j.Priority, Submitted: submitted, Timeout: j.Timeout}
	for _, r := range j.Roles {
		if r.Guest() {
			continue // a guest logs in to its host's board: it takes none
		}
		sj.Roles = append(sj.Roles, scheduler.Role{Name: r.Name, DeviceType: r.DeviceType, Count: r.Count, Tags: r.Tags})
	}
	return sj
}
