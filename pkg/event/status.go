package event

import (
	"time"
	"unicode/utf8"
)

// CommitStatus is a commit status a deployment's worker asks to be set on
// GitHub (queues/status). The worker holds no GitHub token: dh-route,
// which does, sets it, and only on the repository of the deployment whose
// user published the entry.
type CommitStatus struct {
	Envelope
	// Deployment is the deployment whose run the status is about.
	Deployment string `json:"deployment"`
	// Repository is that deployment's repository, "owner/name".
	Repository string `json:"repository"`
	// Commit is the commit whose status is set.
	Commit string `json:"commit"`
	// State is pending, success, failure or error.
	State string `json:"state"`
	// Description is one line (GitHub cuts it to 140 characters).
	Description string `json:"description,omitempty"`
	// TargetURL is the details link, or "" for none.
	TargetURL string `json:"target_url,omitempty"`
	// RunID is the run's id in the history, for the record.
	RunID int64 `json:"run_id,omitempty"`
	// CreatedAt is when the worker asked.
	CreatedAt time.Time `json:"created_at"`
}

// Encode returns the entry's JSON.
func (e *CommitStatus) Encode() ([]byte, error) { return encode(e, &e.Envelope, KindCommitStatus) }

// DecodeCommitStatus parses and checks a commit-status entry.
func DecodeCommitStatus(data []byte) (*CommitStatus, error) {
	return decode[CommitStatus](data, KindCommitStatus)
}

func (e *CommitStatus) check() error {
	switch {
	case !validDeployment(e.Deployment):
		return Errorf("entry has a missing or malformed deployment name %q", e.Deployment)
	case len(e.Repository) > 201 || !validRepository(e.Repository):
		return Errorf("entry has a missing or malformed repository %q", e.Repository)
	case !validCommit(e.Commit):
		return Errorf("entry has a missing or malformed commit %q", e.Commit)
	case e.State != "pending" && e.State != "success" && e.State != "failure" && e.State != "error":
		return Errorf("entry has an unknown state %q (pending, success, failure, error)", e.State)
	case len(e.Description) > 4096 || !utf8.ValidString(e.Description):
		return Errorf("entry has a description that is not UTF-8 or longer than 4096 bytes")
	case len(e.TargetURL) > 2048:
		return Errorf("entry has a target URL longer than 2048 bytes")
	case e.CreatedAt.IsZero():
		return Errorf("entry has no created_at time")
	}
	return nil
}

// RunNotice asks dh-route to send the notifications of a finished run
// (queues/status). It names the run only: dh-route reads what it says
// (commit, subject, author, timings, the failed step, the log's last
// lines) from the database and the run's log, and sends it to the
// deployment's targets, whose secrets the worker never reads.
type RunNotice struct {
	Envelope
	// Deployment is the deployment of the run.
	Deployment string `json:"deployment"`
	// RunID is the run's id in the history.
	RunID int64 `json:"run_id"`
	// State is how it ended: succeeded or failed.
	State string `json:"state"`
	// CreatedAt is when the worker asked.
	CreatedAt time.Time `json:"created_at"`
}

// Encode returns the entry's JSON.
func (e *RunNotice) Encode() ([]byte, error) { return encode(e, &e.Envelope, KindRunNotice) }

// DecodeRunNotice parses and checks a run-notice entry.
func DecodeRunNotice(data []byte) (*RunNotice, error) {
	return decode[RunNotice](data, KindRunNotice)
}

func (e *RunNotice) check() error {
	switch {
	case !validDeployment(e.Deployment):
		return Errorf("entry has a missing or malformed deployment name %q", e.Deployment)
	case e.RunID <= 0:
		return Errorf("entry has no run id")
	case e.State != "succeeded" && e.State != "failed":
		return Errorf("entry has an unknown state %q (succeeded, failed)", e.State)
	case e.CreatedAt.IsZero():
		return Errorf("entry has no created_at time")
	}
	return nil
}
