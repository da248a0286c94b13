package nginx

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/durable"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// Manifest is what dh-nginx knows it installed for one deployment:
// state_dir/nginx/DEPLOYMENT.json. Only files in a manifest are ever
// changed or removed.
type Manifest struct {
	Deployment string `json:"deployment"`
	// Commit is the commit last converged to.
	Commit string `json:"commit,omitempty"`
	// Files maps each installed file's absolute path to the SHA-256 of
	// the content dh-nginx wrote.
	Files     map[string]string `json:"files"`
	UpdatedAt time.Time         `json:"updated_at"`
}

// journal is written before conf.d is touched and removed once the new
// files passed the test (or were restored): while it exists, the files it
// names may be half-changed, and rollback puts the previous ones back.
type journal struct {
	Deployment string   `json:"deployment"`
	Commit     string   `json:"commit"`
	Changes    []change `json:"changes"`
}

// change is one file about to be written or removed.
type change struct {
	Path    string      `json:"path"`    // the installed file
	Existed bool        `json:"existed"` // whether it existed before
	Mode    fs.FileMode `json:"mode"`    // its permission bits, if it existed
	Backup  string      `json:"backup"`  // its previous content, if it existed
	Remove  bool        `json:"remove"`  // removed rather than written
	data    []byte      // the new content
}

func digest(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// stateDir is state_dir/nginx.
func (in *Installer) stateDir() string { return filepath.Join(in.cfg.StateDir, "nginx") }

func (in *Installer) manifestPath(d string) string {
	return filepath.Join(in.stateDir(), d+".json")
}
func (in *Installer) journalPath(d string) string {
	return filepath.Join(in.stateDir(), d+".journal")
}
func (in *Installer) backupDir(d string) string {
	return filepath.Join(in.stateDir(), d+".backup")
}
func (in *Installer) reloadFlag() string { return filepath.Join(in.stateDir(), "reload-pending") }

// LoadManifest returns the deployment's manifest (an empty one if it has
// none yet).
func (in *Installer) LoadManifest(deployment string) (*Manifest, error) {
	m := &Manifest{Deployment: deployment, Files: map[string]string{}}
	data, err := os.ReadFile(in.manifestPath(deployment))
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, queue.Stop(fmt.Errorf("read manifest: %w", err))
	}
	if err := json.Unmarshal(data, m); err != nil {
		return nil, sysexits.Errorf(sysexits.Software, "manifest %s is corrupt: %v", in.manifestPath(deployment), err)
	}
	if m.Files == nil {
		m.Files = map[string]string{}
	}
	return m, nil
}

func (in *Installer) saveManifest(m *Manifest) error {
	m.UpdatedAt = time.Now().UTC()
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return durable.WriteFile(in.manifestPath(m.Deployment), append(data, '\n'), 0o640)
}

// apply writes and removes the files of j, after saving what was there
// and the journal itself durably. On error the caller rolls back.
func (in *Installer) apply(j *journal) error {
	bdir := in.backupDir(j.Deployment)
	if err := os.RemoveAll(bdir); err != nil {
		return queue.Stop(fmt.Errorf("clear backups: %w", err))
	}
	if err := os.MkdirAll(bdir, 0o750); err != nil {
		return queue.Stop(fmt.Errorf("create backups: %w", err))
	}
	if err := durable.SyncDir(filepath.Dir(bdir)); err != nil {
		return err
	}
	for i := range j.Changes {
		c := &j.Changes[i]
		fi, err := os.Lstat(c.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			c.Existed = false
			continue
		case err != nil:
			return queue.Stop(fmt.Errorf("back up %s: %w", c.Path, err))
		case !fi.Mode().IsRegular():
			return sysexits.Errorf(sysexits.DataErr, "%s is not a regular file", c.Path)
		}
		old, err := os.ReadFile(c.Path)
		if err != nil {
			return queue.Stop(fmt.Errorf("back up %s: %w", c.Path, err))
		}
		c.Existed, c.Mode = true, fi.Mode().Perm()
		c.Backup = filepath.Join(bdir, strconv.Itoa(i))
		if err := durable.Stage(c.Backup, old, 0o640); err != nil {
			return err
		}
	}
	if err := durable.SyncDir(bdir); err != nil {
		return err
	}
	data, err := json.Marshal(j)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(in.journalPath(j.Deployment), data, 0o640); err != nil {
		return err
	}

	// The journal is on disk: conf.d may change now.
	dirs := map[string]bool{}
	for _, c := range j.Changes {
		dirs[filepath.Dir(c.Path)] = true
		switch {
		case c.Remove:
			if err := os.Remove(c.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return queue.Stop(fmt.Errorf("remove %s: %w", c.Path, err))
			}
		case c.Existed:
			if err := overwrite(c.Path, c.data); err != nil {
				return err
			}
		default:
			if err := create(c.Path, c.data, 0o644); err != nil {
				return err
			}
		}
	}
	return syncDirs(dirs)
}

// rollback restores the files a journal names exactly as they were: the
// previous content written back in place (so the file keeps its owner;
// a removed file is created again with its old mode), and files that did
// not exist removed. It is idempotent, so a crash during it is repaired
// by running it again. The journal and the backups are removed last.
func (in *Installer) rollback(j *journal) error {
	dirs := map[string]bool{}
	for i := len(j.Changes) - 1; i >= 0; i-- {
		c := j.Changes[i]
		dirs[filepath.Dir(c.Path)] = true
		if !c.Existed {
			if err := os.Remove(c.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return queue.Stop(fmt.Errorf("restore %s: %w", c.Path, err))
			}
			continue
		}
		old, err := os.ReadFile(c.Backup)
		if err != nil {
			return queue.Stop(fmt.Errorf("restore %s: read backup: %w", c.Path, err))
		}
		if _, err := os.Lstat(c.Path); errors.Is(err, fs.ErrNotExist) {
			if err := create(c.Path, old, c.Mode); err != nil {
				return err
			}
		} else if err := overwrite(c.Path, old); err != nil {
			return err
		}
	}
	if err := syncDirs(dirs); err != nil {
		return err
	}
	return in.clearJournal(j.Deployment)
}

// clearJournal removes the journal, then the backups.
func (in *Installer) clearJournal(d string) error {
	if err := durable.Remove(in.journalPath(d)); err != nil {
		return err
	}
	if err := os.RemoveAll(in.backupDir(d)); err != nil {
		return queue.Stop(fmt.Errorf("remove backups: %w", err))
	}
	return nil
}

// recoverJournal rolls back an install of the deployment that a crash
// interrupted, if any, and reports whether there was one.
func (in *Installer) recoverJournal(d string) (bool, error) {
	data, err := os.ReadFile(in.journalPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, queue.Stop(fmt.Errorf("read journal: %w", err))
	}
	var j journal
	if err := json.Unmarshal(data, &j); err != nil {
		// durable.WriteFile never leaves a partial journal.
		return false, sysexits.Errorf(sysexits.Software, "journal %s is corrupt: %v", in.journalPath(d), err)
	}
	in.log.Warn("restoring the files of an install that was interrupted", "deployment", d, "commit", j.Commit, "files", len(j.Changes))
	return true, in.rollback(&j)
}

// overwrite replaces an existing file's content in place: the same inode,
// so its owner, group, mode and ACL stay as they are.
func overwrite(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return ioFailure(fmt.Errorf("write %s: %w", path, err))
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return queue.Stop(fmt.Errorf("write %s: %w", path, err))
	}
	return nil
}

// create makes a new file at path, never replacing one: the content is
// staged under a name nginx's "*.conf" includes do not match, synced, then
// linked into place with RENAME_NOREPLACE.
func create(path string, data []byte, mode fs.FileMode) error {
	tmp := filepath.Join(filepath.Dir(path), ".dh-nginx-"+filepath.Base(path)+".tmp")
	os.Remove(tmp)
	if err := durable.Stage(tmp, data, mode); err != nil {
		return err
	}
	// Stage's mode went through the umask.
	if err := os.Chmod(tmp, mode); err != nil {
		os.Remove(tmp)
		return queue.Stop(err)
	}
	if err := durable.Link(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

func syncDirs(dirs map[string]bool) error {
	names := make([]string, 0, len(dirs))
	for d := range dirs {
		names = append(names, d)
	}
	slices.Sort(names)
	for _, d := range names {
		if err := durable.SyncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// ioFailure is the outcome of a failed file operation: it stops dh-nginx
// (never carry on after a failed write), unless permission was refused,
// which fails the entry alone.
func ioFailure(err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return err
	}
	return queue.Stop(err)
}
