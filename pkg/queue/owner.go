package queue

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// Owner returns the user id owning e's file: who published it. The file is
// opened without following a symbolic link, its owner taken from that open
// file and its content compared with e.Data, so that owner and content
// belong together. A consumer that accepts entries only from some writers
// checks this (classified DataErr when the file is not what it should be).
func (e *Entry) Owner() (uint32, error) {
	f, err := os.OpenFile(e.Path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return 0, sysexits.New(sysexits.DataErr, fmt.Errorf("open entry: %w", err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return 0, sysexits.Errorf(sysexits.DataErr, "entry %s is not a regular file", e.Path)
	}
	data, err := io.ReadAll(io.LimitReader(f, int64(len(e.Data))+1))
	if err != nil {
		return 0, sysexits.New(sysexits.IOErr, fmt.Errorf("read entry: %w", err))
	}
	if !bytes.Equal(data, e.Data) {
		return 0, sysexits.Errorf(sysexits.DataErr, "entry %s changed while it was read", e.Path)
	}
	return fi.Sys().(*syscall.Stat_t).Uid, nil
}

// UserName is the name of user id uid, or the number if it has none.
func UserName(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return u.Username
	}
	return id
}

// UserID is the user id of name, and whether there is such a user.
func UserID(name string) (uint32, bool) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, false
	}
	id, err := strconv.ParseUint(u.Uid, 10, 32)
	return uint32(id), err == nil
}
