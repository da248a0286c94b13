package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Window is a deploy window: some days of the week, and a time of day
// range on each of them.
type Window struct {
	Days       [7]bool // by time.Weekday
	From, Till int     // minutes after midnight; From < Till
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// ParseWindow reads "DAYS HH:MM-HH:MM" (see Deployment.Windows).
func ParseWindow(s string) (Window, error) {
	var w Window
	days, hours, ok := strings.Cut(strings.TrimSpace(s), " ")
	if !ok {
		return w, fmt.Errorf("window %q: want \"DAYS HH:MM-HH:MM\"", s)
	}
	for _, part := range strings.Split(days, ",") {
		if part == "*" {
			w.Days = [7]bool{true, true, true, true, true, true, true}
			continue
		}
		first, last, isRange := strings.Cut(part, "-")
		a, okA := dayNames[first]
		b, okB := dayNames[last]
		if !isRange {
			b, okB = a, okA
		}
		if !okA || !okB {
			return w, fmt.Errorf("window %q: %q is not a day (sun, mon, tue, wed, thu, fri, sat), a range or *", s, part)
		}
		for d := a; ; d = (d + 1) % 7 { // ranges may wrap: fri-mon
			w.Days[d] = true
			if d == b {
				break
			}
		}
	}
	from, till, ok := strings.Cut(strings.TrimSpace(hours), "-")
	var err error
	if !ok {
		return w, fmt.Errorf("window %q: want a time range HH:MM-HH:MM", s)
	}
	if w.From, err = clock(from); err == nil {
		w.Till, err = clock(till)
	}
	if err != nil {
		return w, fmt.Errorf("window %q: %v", s, err)
	}
	if w.From >= w.Till {
		return w, fmt.Errorf("window %q: the end is not after the start (split a window across midnight in two)", s)
	}
	return w, nil
}

func clock(s string) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || len(m) != 2 || hh < 0 || hh > 24 || mm < 0 || mm > 59 || (hh == 24 && mm != 0) {
		return 0, fmt.Errorf("%q is not a time HH:MM", s)
	}
	return hh*60 + mm, nil
}

// Location is the deployment's time zone: time_zone, or the host's.
func (d *Deployment) Location() (*time.Location, error) {
	if d.TimeZone == "" {
		return time.Local, nil
	}
	return zone(d.TimeZone)
}

// zone loads an IANA time zone ("Europe/London"; "UTC"; "Local" is the
// host's), with an error naming it.
func zone(name string) (*time.Location, error) {
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q", name)
	}
	return loc, nil
}

// InWindow reports whether t is inside one of the deployment's windows
// (always, if it has none) and, if not, when the next one opens (within a
// week).
func (d *Deployment) InWindow(t time.Time) (bool, time.Time) {
	if len(d.Windows) == 0 {
		return true, time.Time{}
	}
	loc, err := d.Location()
	if err != nil {
		loc = time.Local
	}
	t = t.In(loc)
	var ws []Window
	for _, s := range d.Windows {
		if w, err := ParseWindow(s); err == nil {
			ws = append(ws, w)
		}
	}
	minute := t.Hour()*60 + t.Minute()
	for _, w := range ws {
		if w.Days[t.Weekday()] && minute >= w.From && minute < w.Till {
			return true, time.Time{}
		}
	}
	// The next opening: the earliest window start after t, over 8 days.
	midnight := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
	var next time.Time
	for day := 0; day <= 7; day++ {
		date := midnight.AddDate(0, 0, day)
		for _, w := range ws {
			// On the wall clock, not midnight + From: a DST day is 23 or 25 hours.
			start := time.Date(date.Year(), date.Month(), date.Day(), w.From/60, w.From%60, 0, 0, loc)
			if w.Days[date.Weekday()] && start.After(t) && (next.IsZero() || start.Before(next)) {
				next = start
			}
		}
		if !next.IsZero() {
			break
		}
	}
	return false, next
}
