package config

import (
	"testing"
	"time"
)

func TestWindows(t *testing.T) {
	for _, bad := range []string{"mon 9:00", "funday 09:00-10:00", "mon 17:00-09:00", "mon 09:00-25:00", "mon-fri", "mon 09:0-10:00"} {
		if _, err := ParseWindow(bad); err == nil {
			t.Errorf("ParseWindow(%q) = nil; want an error", bad)
		}
	}
	d := &Deployment{Windows: []string{"mon-fri 09:00-17:00", "sat 10:00-12:00"}, TimeZone: "Europe/London"}
	loc, err := d.Location()
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	for _, tc := range []struct {
		now  string
		in   bool
		next string
	}{
		{"2026-11-23 10:00", true, ""},                  // Monday
		{"2026-11-23 17:00", false, "2026-11-24 09:00"}, // Monday evening → Tuesday
		{"2026-11-27 18:30", false, "2026-11-28 10:00"}, // Friday evening → Saturday
		{"2026-11-28 12:00", false, "2026-11-30 09:00"}, // Saturday noon → Monday
		{"2026-11-29 08:00", false, "2026-11-30 09:00"}, // Sunday
		// DST days: the opening is 09:00 on the wall clock, not midnight + 9 h.
		{"2027-03-27 12:00", false, "2027-03-29 09:00"}, // Saturday before the spring change → Monday
		{"2027-03-28 00:30", false, "2027-03-29 09:00"}, // the spring change (Sunday) → Monday
		{"2026-10-24 12:00", false, "2026-10-26 09:00"}, // Saturday before the autumn change → Monday
	} {
		in, next := d.InWindow(at(tc.now))
		if in != tc.in || (tc.next != "" && !next.Equal(at(tc.next))) {
			t.Errorf("InWindow(%s) = %v, %v; want %v, %s", tc.now, in, next, tc.in, tc.next)
		}
	}
	// A window opening on the DST day itself.
	sunday := &Deployment{Windows: []string{"sun 09:00-17:00"}, TimeZone: "Europe/London"}
	for _, tc := range []struct{ now, next string }{
		{"2027-03-28 00:30", "2027-03-28 09:00"}, // spring forward at 01:00
		{"2026-10-25 00:30", "2026-10-25 09:00"}, // fall back at 02:00
	} {
		if _, next := sunday.InWindow(at(tc.now)); !next.Equal(at(tc.next)) {
			t.Errorf("sun window: InWindow(%s) next = %v; want %s", tc.now, next, tc.next)
		}
	}
	// In UTC, 09:30 London time in winter is 09:30 UTC; in summer 08:30 UTC.
	if in, _ := d.InWindow(time.Date(2026, 7, 6, 8, 30, 0, 0, time.UTC)); !in {
		t.Errorf("08:30 UTC on a July Monday is 09:30 in London; want inside the window")
	}
	if in, _ := (&Deployment{}).InWindow(time.Now()); !in {
		t.Errorf("a deployment without windows is always open")
	}
	if _, err := (&Deployment{TimeZone: "Mars/Olympus"}).Location(); err == nil {
		t.Errorf("an unknown time zone is accepted")
	}
}
