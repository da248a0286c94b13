package config

import (
	"fmt"
	"os/user"
	"slices"
	"strconv"
)

// Queues is the [queues] table: who may write each queue, and how much
// queues/main and the deployment queues may hold before their publishers
// hold back (dh-receive answers 503, dh-route leaves the delivery in
// queues/main). See queues/README.md.
type Queues struct {
	// MinFreeBytes is the free space of queue_dir's file system below
	// which dh-receive answers 503 and dh-route leaves deliveries in
	// queues/main; 0 disables the floor. Keep it below
	// receive.min_free_bytes, so that /healthz warns first. Default
	// 67108864 (64 MiB).
	MinFreeBytes int64 `toml:"min_free_bytes"`

	// Main limits queues/main (dh-receive → dh-route). Defaults:
	// max_entries 10000, max_bytes 1073741824 (1 GiB), writers
	// ["dh-receive"].
	Main QueueLimits `toml:"main"`

	// Deployments limits each deployment's queue (dh-route → dh-deploy@NAME).
	// Defaults: max_entries 1000, max_bytes 268435456 (256 MiB), writers
	// ["dh-route"].
	Deployments QueueLimits `toml:"deployments"`

	// Nginx names the writers of queues/nginx besides the nginx
	// deployments' own users, which are always writers. Default writers
	// ["dh-cert"].
	Nginx QueueWriters `toml:"nginx"`

	// Cert names the writers of queues/cert. Default writers ["dh-nginx"].
	Cert QueueWriters `toml:"cert"`
}

// QueueLimits is a [queues.main] or [queues.deployments] table.
type QueueLimits struct {
	// MaxEntries is the most entries the queue may hold (failed/ not
	// counted); 0 is no limit.
	MaxEntries int64 `toml:"max_entries"`

	// MaxBytes is the most bytes its entries may take together; 0 is no
	// limit.
	MaxBytes int64 `toml:"max_bytes"`

	// Writers are the users whose entries the queue's consumer takes,
	// besides root and the consumer's own user; an entry owned by anyone
	// else goes to failed/ unread. A user named here must exist (Load
	// checks); of the defaults, those missing on the host are left out. A
	// reload (SIGHUP) takes effect at the consumer's next scan.
	Writers []string `toml:"writers"`
}

// QueueWriters is a [queues.nginx] or [queues.cert] table.
type QueueWriters struct {
	// Writers: as QueueLimits.Writers.
	Writers []string `toml:"writers"`
}

func defaultQueues() Queues {
	return Queues{
		MinFreeBytes: 64 << 20,
		Main:         QueueLimits{MaxEntries: 10000, MaxBytes: 1 << 30},
		Deployments:  QueueLimits{MaxEntries: 1000, MaxBytes: 256 << 20},
	}
}

// defaultWriters are the writers of each kind of queue when the file
// names none: the stage users of DESIGN.md's privilege table.
var defaultWriters = map[string][]string{
	MainQueue: {"dh-receive"}, NginxQueue: {"dh-cert"}, CertQueue: {"dh-nginx"}, "": {"dh-route"},
}

// Limits are a queue's backlog limits, as queue.Limits (a conversion).
type Limits struct {
	MaxEntries   int64
	MaxBytes     int64
	MinFreeBytes int64
}

// QueueLimits returns the limits of the queue name: MainQueue or a
// deployment's. The other queues have none but the free-space floor.
func (c *Config) QueueLimits(name string) Limits {
	l := Limits{MinFreeBytes: c.Queues.MinFreeBytes}
	switch name {
	case NginxQueue, CertQueue, StatusQueue:
	case MainQueue:
		l.MaxEntries, l.MaxBytes = c.Queues.Main.MaxEntries, c.Queues.Main.MaxBytes
	default:
		l.MaxEntries, l.MaxBytes = c.Queues.Deployments.MaxEntries, c.Queues.Deployments.MaxBytes
	}
	return l
}

// QueueWriters returns the user ids of the writers of the queue name
// (MainQueue, NginxQueue, CertQueue, StatusQueue or a deployment's), for
// its consumer: the [queues] writers given (Load checked that they
// exist), or the defaults that exist on this host; for queues/nginx also
// the nginx deployments' users that exist. queues/status is written by
// every deployment's user (that exists), and by no one else: dh-route
// then checks that an entry is about its owner's own deployment.
func (c *Config) QueueWriters(name string) []int {
	if name == StatusQueue {
		var uids []int
		for _, n := range c.DeploymentNames() {
			if d := c.Deployments[n]; d != nil {
				if uid, ok := UserID(d.RunsAs()); ok && !slices.Contains(uids, uid) {
					uids = append(uids, uid)
				}
			}
		}
		return uids
	}
	given := c.Queues.writers(name)
	var uids []int
	for _, u := range given {
		if uid, ok := UserID(u); ok {
			uids = append(uids, uid)
		}
	}
	if given == nil {
		names := defaultWriters[name]
		if names == nil {
			names = defaultWriters[""]
		}
		for _, u := range names {
			if uid, ok := UserID(u); ok {
				uids = append(uids, uid)
			}
		}
	}
	if name == NginxQueue {
		for _, n := range c.DeploymentNames() {
			if d := c.Deployments[n]; d != nil && d.Kind == KindNginx {
				if uid, ok := UserID(d.RunsAs()); ok && !slices.Contains(uids, uid) {
					uids = append(uids, uid)
				}
			}
		}
	}
	return uids
}

// writers is the writers key of the queue name's table.
func (q *Queues) writers(name string) []string {
	switch name {
	case MainQueue:
		return q.Main.Writers
	case NginxQueue:
		return q.Nginx.Writers
	case CertQueue:
		return q.Cert.Writers
	}
	return q.Deployments.Writers
}

// checkWriters makes sure every user a writers key names exists (Load
// calls it: a user is a fact of the host, not of the file).
func (c *Config) checkWriters() error {
	for _, key := range []string{MainQueue, "deployments", NginxQueue, CertQueue} {
		for i, u := range c.Queues.writers(key) {
			if _, ok := UserID(u); !ok {
				return (problem{key: k("queues", key, "writers"), sub: "[" + strconv.Itoa(i) + "]",
					msg: fmt.Sprintf("no user %q on this host", u), hint: "create the user, or take it out of the list"}).err(c.File, 0)
			}
		}
	}
	return nil
}

// UserID is the user id of the user name, and whether there is one.
func UserID(name string) (int, bool) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, false
	}
	uid, err := strconv.Atoi(u.Uid)
	return uid, err == nil
}

func (q *Queues) validate(ck *checker) {
	for _, f := range []struct {
		key []string
		v   int64
	}{
		{k("queues", "min_free_bytes"), q.MinFreeBytes},
		{k("queues", "main", "max_entries"), q.Main.MaxEntries},
		{k("queues", "main", "max_bytes"), q.Main.MaxBytes},
		{k("queues", "deployments", "max_entries"), q.Deployments.MaxEntries},
		{k("queues", "deployments", "max_bytes"), q.Deployments.MaxBytes},
	} {
		if f.v < 0 {
			ck.add(f.key, "must not be negative (0 is no limit)")
		}
	}
	for key, ws := range map[string][]string{"main": q.Main.Writers, "deployments": q.Deployments.Writers,
		"nginx": q.Nginx.Writers, "cert": q.Cert.Writers} {
		for i, w := range ws {
			if len(w) > 32 || !userRE.MatchString(w) {
				ck.addSub(k("queues", key, "writers"), "["+strconv.Itoa(i)+"]", "%q is not a user name", w)
			}
		}
	}
}
