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
		return dataErr("entry has a missing or malformed deployment name %q", e.Deployment)
	case len(e.Repository) > 201 || !validRepository(e.Repository):
		return dataErr("entry has a missing or malformed repository %q", e.Repository)
	case !validCommit(e.Commit):
		return dataErr("entry has a missing or malformed commit %q", e.Commit)
	case e.State != "pending" && e.State != "success" && e.State != "failure" && e.State != "error":
		return dataErr("entry has an unknown state %q (pending, success, failure, error)", e.State)
	case len(e.Description) > 4096 || !utf8.ValidString(e.Description):
		return dataErr("entry has a description that is not UTF-8 or longer than 4096 bytes")
	case len(e.TargetURL) > 2048:
		return dataErr("entry has a target URL longer than 2048 bytes")
	case e.CreatedAt.IsZero():
		return dataErr("entry has no created_at time")
	}
	return nil
}
