// Package crashfs is a FUSE file system for power-loss tests: it keeps
// everything in memory and can cut the power, after which only what a
// program made durable with fsync(2), fdatasync(2) or a directory fsync is
// still there.
//
// The model is strict, stricter than ext4 in data=ordered mode:
//
//   - A file's content (and size) survives a cut only as it was at the last
//     fsync or fdatasync of that file. A file that was never synced comes
//     back empty; one written after its last sync comes back as it was then.
//   - A file's mode and owner survive as they were at its last fsync (or,
//     never synced, as it was created).
//   - A name (create, mkdir, link, rename, unlink, rmdir) survives only if
//     its directory was fsynced after the change: a directory comes back
//     with the entries it had at its last fsync. A rename between two
//     directories needs both; with only the new one synced the file comes
//     back under both names, with only the old one under neither.
//   - syncfs(2) and sync(2) make nothing durable: the kernel does not pass
//     them to a FUSE daemon (only virtiofs gets them), so here, as on any
//     FUSE file system, a program relying on them loses data.
//
// Cut drops the power: from then on every operation fails with EIO and the
// durable state is frozen. Remount (after the test killed the programs
// that had files open) unmounts and mounts, at the same path, a fresh file
// system holding exactly the durable state. Crash does both.
//
// Mount mounts one under a short /tmp directory with allow_other and
// default_permissions (the kernel checks modes and owners, so stages can
// run as their own users), and unmounts it when the test ends. It needs
// root, /dev/fuse and fusermount3 (Debian's fuse3). Not supported: xattrs
// and ACLs, POSIX and flock locks are the kernel's local ones, hard links to
// directories, RENAME_EXCHANGE, special files.
package crashfs

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// FS is a mounted crash file system.
type FS struct {
	dir string

	mu    sync.Mutex // guards srv and fs between Cut, Remount and Close
	srv   *fuse.Server
	fs    *memFS
	cuts  int
	count Counts // of earlier mounts
}

// Counts are the durability calls the file system received.
type Counts struct {
	Fsyncs     int // fsync and fdatasync of files
	DirFsyncs  int // fsync of directories
	AfterCut   int // operations refused with EIO after a cut
	Remounts   int
	Operations int // every request, for a sanity check that the mount is used
}

// Mount mounts an empty crash file system on a new directory /tmp/crashfs.*
// and unmounts it (and removes the directory) when the test ends.
func Mount(t testing.TB) *FS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("crashfs mounts a FUSE file system with allow_other: run the test as root (CI does)")
	}
	testenv.Command(t, "fusermount3")
	f := &FS{dir: testenv.ShortTempDir(t, "crashfs")}
	if err := f.mount(newMemFS()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	})
	return f
}

// Dir is the mount point.
func (f *FS) Dir() string { return f.dir }

func (f *FS) mount(m *memFS) error {
	srv, err := fuse.NewServer(m, f.dir, &fuse.MountOptions{
		AllowOther: true,
		// The kernel checks permissions from the modes and owners this
		// file system reports, as on a disk.
		Options:            []string{"default_permissions"},
		FsName:             "crashfs",
		Name:               "crashfs",
		DisableXAttrs:      true,
		DisableReadDirPlus: true,
		MaxBackground:      64,
	})
	if err != nil {
		return fmt.Errorf("mount crashfs on %s: %w", f.dir, err)
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		srv.Unmount()
		return fmt.Errorf("mount crashfs on %s: %w", f.dir, err)
	}
	f.srv, f.fs = srv, m
	return nil
}

// Cut cuts the power: everything not made durable is lost, and every
// operation from now on fails with EIO until Remount. Kill the programs
// using the file system next, then Remount.
func (f *FS) Cut() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fs.cut()
	f.cuts++
}

// Remount unmounts the cut file system and mounts, on the same directory, a
// fresh one holding only the durable state at the cut. Every program with
// a file or its working directory on the mount must have exited.
func (f *FS) Remount() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.fs.isCut() {
		return fmt.Errorf("crashfs: Remount without Cut")
	}
	recovered := f.fs.recover()
	f.add(f.fs.counts())
	if err := f.unmount(); err != nil {
		return err
	}
	f.count.Remounts++
	return f.mount(recovered)
}

// Crash is Cut then Remount, for a test whose writers have stopped.
func (f *FS) Crash(t testing.TB) {
	t.Helper()
	f.Cut()
	if err := f.Remount(); err != nil {
		t.Fatal(err)
	}
}

// Counts returns the durability calls received since Mount.
func (f *FS) Counts() Counts {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.count
	n := f.fs.counts()
	c.Fsyncs += n.Fsyncs
	c.DirFsyncs += n.DirFsyncs
	c.AfterCut += n.AfterCut
	c.Operations += n.Operations
	return c
}

func (f *FS) add(n Counts) {
	f.count.Fsyncs += n.Fsyncs
	f.count.DirFsyncs += n.DirFsyncs
	f.count.AfterCut += n.AfterCut
	f.count.Operations += n.Operations
}

// Close unmounts the file system.
func (f *FS) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.srv == nil {
		return nil
	}
	return f.unmount()
}

// unmount unmounts and waits for the server to stop. A busy mount (a
// process still has a file open) is detached lazily so that no stale mount
// outlives the test, and reported.
func (f *FS) unmount() error {
	srv := f.srv
	f.srv = nil
	if err := srv.Unmount(); err != nil {
		out, lerr := exec.Command("fusermount3", "-u", "-z", f.dir).CombinedOutput()
		if lerr != nil {
			return fmt.Errorf("unmount %s: %v; lazy unmount: %v: %s", f.dir, err, lerr, out)
		}
		return fmt.Errorf("unmount %s: %v (detached lazily: something still used it)", f.dir, err)
	}
	srv.Wait()
	return nil
}

// inode is a file or directory: its state now (volatile) and as it would
// be found after a cut (dur).
type inode struct {
	ino    uint64
	mode   uint32 // type and permission bits
	uid    uint32
	gid    uint32
	nlink  uint32
	mtime  time.Time
	data   []byte            // regular file
	target string            // symlink
	kids   map[string]*inode // directory
	dur    durableState
}

// durableState is what of an inode survives a cut.
type durableState struct {
	mode, uid, gid uint32
	mtime          time.Time
	data           []byte
	kids           map[string]*inode
}

func (n *inode) isDir() bool { return n.mode&syscall.S_IFMT == syscall.S_IFDIR }

// syncData is fdatasync: the content, as of now, survives.
func (n *inode) syncData() {
	n.dur.data = slices.Clone(n.data)
	n.dur.mtime = n.mtime
}

// syncAll is fsync: content or entries, mode and owner survive.
func (n *inode) syncAll() {
	n.syncData()
	n.dur.mode, n.dur.uid, n.dur.gid = n.mode, n.uid, n.gid
	if n.isDir() {
		n.dur.kids = maps.Clone(n.kids)
	}
}

func (n *inode) attr(out *fuse.Attr) {
	out.Ino = n.ino
	out.Mode = n.mode
	out.Nlink = n.nlink
	out.Owner = fuse.Owner{Uid: n.uid, Gid: n.gid}
	out.Size = uint64(len(n.data))
	if n.mode&syscall.S_IFMT == syscall.S_IFLNK {
		out.Size = uint64(len(n.target))
	}
	if n.isDir() {
		out.Size = 4096
	}
	out.Blocks = (out.Size + 511) / 512
	out.Blksize = 4096
	out.SetTimes(&n.mtime, &n.mtime, &n.mtime)
}

// memFS is one mount's state: the raw FUSE protocol served from memory.
type memFS struct {
	fuse.RawFileSystem

	mu      sync.Mutex
	inodes  map[uint64]*inode // by node id (= inode number); never forgotten
	nextIno uint64
	dirs    map[uint64][]fuse.DirEntry // open directory handles: their listing
	nextFh  uint64
	down    bool // the power is cut
	n       Counts
}

func newMemFS() *memFS {
	m := &memFS{RawFileSystem: fuse.NewDefaultRawFileSystem(), inodes: map[uint64]*inode{}, nextIno: fuse.FUSE_ROOT_ID, dirs: map[uint64][]fuse.DirEntry{}}
	root := m.newInode(syscall.S_IFDIR|0o755, 0, 0)
	// The root is there from mkfs on.
	root.syncAll()
	return m
}

func (m *memFS) String() string { return "crashfs" }

func (m *memFS) newInode(mode, uid, gid uint32) *inode {
	n := &inode{ino: m.nextIno, mode: mode, uid: uid, gid: gid, nlink: 1, mtime: time.Now()}
	m.nextIno++
	if n.isDir() {
		n.kids = map[string]*inode{}
		n.nlink = 2
	}
	// Created but never synced: after a cut, a durable name (if any) finds
	// it empty, with the mode it was created with.
	n.dur = durableState{mode: n.mode, uid: uid, gid: gid, mtime: n.mtime, kids: map[string]*inode{}}
	m.inodes[n.ino] = n
	return n
}

func (m *memFS) cut() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.down = true
}

func (m *memFS) isCut() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.down
}

func (m *memFS) counts() Counts {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n
}

// recover builds the file system found after the cut: the inodes
// reachable from the root through durable entries, each with its durable
// state, link counts recounted.
func (m *memFS) recover() *memFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := &memFS{RawFileSystem: fuse.NewDefaultRawFileSystem(), inodes: map[uint64]*inode{}, nextIno: m.nextIno, dirs: map[uint64][]fuse.DirEntry{}}
	var walk func(old *inode) *inode
	walk = func(old *inode) *inode {
		if n, ok := r.inodes[old.ino]; ok {
			n.nlink++
			return n
		}
		d := old.dur
		n := &inode{ino: old.ino, mode: d.mode, uid: d.uid, gid: d.gid, nlink: 1, mtime: d.mtime,
			data: slices.Clone(d.data), target: old.target}
		r.inodes[n.ino] = n
		if n.isDir() {
			n.nlink = 2
			n.kids = map[string]*inode{}
			for name, k := range d.kids {
				c := walk(k)
				n.kids[name] = c
				if c.isDir() {
					n.nlink++
				}
			}
		}
		n.syncAll()
		return n
	}
	walk(m.inodes[fuse.FUSE_ROOT_ID])
	return r
}

// op starts an operation: it takes the lock and fails with EIO once the
// power is cut. The caller unlocks when ok.
func (m *memFS) op() (ok bool) {
	m.mu.Lock()
	m.n.Operations++
	if m.down {
		m.n.AfterCut++
		m.mu.Unlock()
		return false
	}
	return true
}

func (m *memFS) node(id uint64) (*inode, fuse.Status) {
	n, ok := m.inodes[id]
	if !ok {
		return nil, fuse.ENOENT
	}
	return n, fuse.OK
}

func (m *memFS) dir(id uint64) (*inode, fuse.Status) {
	n, st := m.node(id)
	if st == fuse.OK && !n.isDir() {
		return nil, fuse.ENOTDIR
	}
	return n, st
}

func (m *memFS) entry(n *inode, out *fuse.EntryOut) {
	out.NodeId = n.ino
	out.Generation = 1
	out.SetEntryTimeout(time.Second)
	out.SetAttrTimeout(time.Second)
	n.attr(&out.Attr)
}

func (m *memFS) Lookup(_ <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	if !m.op() {
		return fuse.EIO
	}
	defer m.mu.Unlock()
	d, st := m.dir(h.NodeId)
	if st != fuse.OK {
		return st
	}
	n, ok := d.kids[name]
	if !ok {
		return fuse.ENOENT
	}
	m.entry(n, out)
	return fuse.OK
}

func (m *memFS) GetAttr(_ <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	if !m.op() {
		return fuse.EIO
	}
	defer m.mu.Unlock()
	n, st := m.node(in.NodeId)
	if st != fuse.OK {
		return st
	}
	out.SetTimeout(time.Second)
	n.attr(&out.Attr)
	return fuse.OK
}

func (m *memFS) SetAttr(_ <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	if !m.op() {
		return fuse.EIO
	}
	defer m.mu.Unlock()
	n, st := m.node(in.NodeId)
	if st != fuse.OK {
		return st
	}
	if in.Valid&fuse.FATTR_MODE != 0 {
		n.mode = n.mode&syscall.S_IFMT | in.Mode&0o7777
	}
	if in.Valid&fuse.FATTR_UID != 0 {
		n.uid = in.Uid
	}
	if in.Valid&fuse.FATTR_GID != 0 {
		n.gid = in.Gid
	}
	if in.Valid&fuse.FATTR_SIZE != 0 {
		if n.isDir() {
			return fuse.EISDIR
		}
		n.data = resize(n.data, int(in.Size))
	}
	switch {
	case in.Valid&fuse.FATTR_MTIME_NOW != 0:
		n.mtime = time.Now()
	case in.Valid&fuse.FATTR_MTIME != 0:
		n.mtime = time.Unix(int64(in.Mtime), int64(in.Mtimensec))
	case in.Valid&fuse.FATTR_SIZE != 0:
		n.mtime = time.Now()
	}
	out.SetTimeout(time.Second)
	n.attr(&out.Attr)
	return fuse.OK
}

func resize(b []byte, size int) []byte {
	if size <= len(b) {
		return b[:size]
	}
	return append(b, make([]byte, size-len(b))...)
}

// add links a new inode into d. A directory with the setgid bit gives its
// group to what is made in it, and its setgid bit to new directories.
func (m *memFS) add(d *inode, name string, h *fuse.InHeader, mode uint32) (*inode, fuse.Status) {
	if _, ok := d.kids[name]; ok {
		return nil, fuse.Status(syscall.EEXIST)
	}
	gid := h.Gid
	if d.mode&syscall.S_ISGID != 0 {
		gid = d.gid
		if mode&syscall.S_IFMT == syscall.S_IFDIR {
			mode |= syscall.S_ISGID
		}
	}
	n := m.newInode(mode, h.Uid, gid)
	d.kids[name] = n
	d.mtime = time.Now()
	if n.isDir() {
		d.nlink++
	}
	return n, fuse.OK
}

func (m *memFS) Mkdir(_ <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	if !m.op() {
		return fuse.EIO
	}
	defer m.mu.Unlock()
	return m.addEntry(in.NodeId, name, &in.InHeader, syscall.S_IFDIR|in.Mode&0o7777, "", out)
}

// addEntry adds a node named name, of mode, to the directory parent and
// fills out with its entry (Mkdir, Mknod, Symlink). A symbolic link's
// target is written with the inode, as ext4 keeps a short one.
func (m *memFS) addEntry(parent uint64, name string, h *fuse.InHeader, mode uint32, target string, out *fuse.EntryOut) fuse.Status {
	d, st := m.dir(parent)
	if st != fuse.OK {
		return st
	}
	n, st := m.add(d, name, h, mode)
	if st != fuse.OK {
		return st
	}
	n.target = target
	m.entry(n, out)
	return fuse.OK
}

func (m *memFS) Mknod(_ <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	if !m.op() {
		return fuse.EIO
	}
	defer m.mu.Unlock()
	if in.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return fuse.Status(syscall.EOPNOTSUPP)
	}
	return m.addEntry(in.NodeId, name, &in.InHeader, in.Mode, "", out)
}

func (m *memFS) Create(_ <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	if !m.op() {
		return fuse.EIO
	}
	defer m.mu.Unlock()
	d, st := m.dir(in.NodeId)
	if st != fuse.OK {
		return st
	}
	n, ok := d.kids[name]
	switch {
	case ok && in.Flags&syscall.O_EXCL != 0:
		return fuse.Status(syscall.EEXIST)
	case ok && n.isDir():
		return fuse.EISDIR
	case ok:
		if in.Flags&syscall.O_TRUNC != 0 {
			n.data = nil
			n.mtime = time.Now()
		}
	default:
		if n, st = m.add(d, name, &in.InHeader, syscall.S_IFREG|in.Mode&0o7777); st != fuse.OK {
			return st
		}
	}
	m.entry(n, &out.EntryOut)
	return fuse.OK
}

func (m *memFS) Symlink(_ <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	if !m.op() {
		return fuse.EIO
	}
	defer m.mu.Unlock()
	return m.addEntry(h.NodeId, name, h, syscall.S_IFLNK|0o777, target, out)
}

func (m *memFS) Readlink(_ <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	if !m.op() {
		return nil, fuse.EIO
	}
	defer m.mu.Unlock()
	n, st := m.node(h.NodeId)
	if st != fuse.OK {
		return nil, st
	}
	return []byte(n.target), fuse.OK
}

func (m *memFS) Link(_ <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	if !m.op() {
		return fuse.EIO
	}
	defer m.mu.Unlock()
	d, st := m.dir(in.NodeId)
	if st != fuse.OK {
		return st
	}
	n, st := m.node(in.Oldnodeid)
	if st != fuse.OK {
		return st
	}
	if n.isDir() {
		return fuse.EPERM
	}
	if _, ok := d.kids[name]; ok {
		return fuse.Status(syscall.EEXIST)
	}
	d.kids[name] = n
	d.mtime = time.Now()
	n.nlink++
	m.entry(n, out)
	return fuse.OK
}

// unlink removes d's entry name (a directory only if dir, and only if
// empty).
func (m *memFS) unlink(d *inode, name string, dir bool) fuse.Status {
	n, ok := d.kids[name]
	switch {
	case !ok:
		return fuse.ENOENT
	case dir && !n.isDir():
		return fuse.ENOTDIR
	case !dir && n.isDir():
		return fuse.EISDIR
	case dir && len(n.kids) > 0:
		return fuse.Status(syscall.ENOTEMPTY)
	}
	delete(d.kids, name)
	d.mtime = time.Now()
	if dir {
		d.nlink--
		n.nlink = 0
	} else {
		n.nlink--
	}
	return fuse.OK
}

func (m *memFS) Unlink(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return m.remove(h, name, false)
}

func (m *memFS) Rmdir(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return m.remove(h, name, true)
}

func (m *memFS) remove(h *fuse.InHeader, name string, dir bool) fuse.Status {
	if !m.op() {
		return fuse.EIO
	}
	defer m.mu.Unlock()
	d, st := m.dir(h.NodeId)
	if st != fuse.OK {
		return st
	}
	return m.unlink(d, name, dir)
}

func (m *memFS) Rename(_ <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	if !m.op() {
		return fuse.EIO
	}
	defer m.mu.Unlock()
	const noReplace = 1 // RENAME_NOREPLACE
	if in.Flags&^noReplace != 0 {
		return fuse.EINVAL // RENAME_EXCHANGE, RENAME_WHITEOUT
	}
	from, st := m.dir(in.NodeId)
	if st != fuse.OK {
		return st
	}
	to, st := m.dir(in.Newdir)
	if st != fuse.OK {
		return st
	}
	n, ok := from.kids[oldName]
	if !ok {
		return fuse.ENOENT
	}
	if old, ok := to.kids[newName]; ok {
		switch {
		case old == n:
			return fuse.OK
		case in.Flags&noReplace != 0:
			return fuse.Status(syscall.EEXIST)
		case n.isDir() && !old.isDir():
			return fuse.ENOTDIR
		case !n.isDir() && old.isDir():
			return fuse.EISDIR
		}
		if st := m.unlink(to, newName, old.isDir()); st != fuse.OK {
			return st
		}
	}
	delete(from.kids, oldName)
	to.kids[newName] = n
	from.mtime, to.mtime = time.Now(), time.Now()
	if n.isDir() {
		from.nlink--
		to.nlink++
	}
	return fuse.OK
}

func (m *memFS) Open(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if !m.op() {
		return fuse.EIO
	}
	defer m.mu.Unlock()
	n, st := m.node(in.NodeId)
	if st != fuse.OK {
		return st
	}
	if in.Flags&syscall.O_TRUNC != 0 && in.Flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		n.data = nil
		n.mtime = time.Now()
	}
	return fuse.OK
}

func (m *memFS) Read(_ <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	if !m.op() {
		return nil, fuse.EIO
	}
	defer m.mu.Unlock()
	n, st := m.node(in.NodeId)
	if st != fuse.OK {
		return nil, st
	}
	if in.Offset >= uint64(len(n.data)) {
		return fuse.ReadResultData(nil), fuse.OK
	}
	k := copy(buf, n.data[in.Offset:])
	return fuse.ReadResultData(buf[:k]), fuse.OK
}

func (m *memFS) Write(_ <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	if !m.op() {
		return 0, fuse.EIO
	}
	defer m.mu.Unlock()
	n, st := m.node(in.NodeId)
	if st != fuse.OK {
		return 0, st
	}
	end := int(in.Offset) + len(data)
	if end > len(n.data) {
		n.data = resize(n.data, end)
	}
	copy(n.data[in.Offset:], data)
	n.mtime = time.Now()
	return uint32(len(data)), fuse.OK
}

func (m *memFS) Fsync(_ <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	if !m.op() {
		return fuse.EIO
	}
	defer m.mu.Unlock()
	n, st := m.node(in.NodeId)
	if st != fuse.OK {
		return st
	}
	m.n.Fsyncs++
	const datasync = 1 // FUSE_FSYNC_FDATASYNC
	if in.FsyncFlags&datasync != 0 {
		n.syncData()
	} else {
		n.syncAll()
	}
	return fuse.OK
}

func (m *memFS) FsyncDir(_ <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	if !m.op() {
		return fuse.EIO
	}
	defer m.mu.Unlock()
	d, st := m.dir(in.NodeId)
	if st != fuse.OK {
		return st
	}
	m.n.DirFsyncs++
	d.syncAll()
	return fuse.OK
}

func (m *memFS) Flush(_ <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	if !m.op() {
		return fuse.EIO
	}
	m.mu.Unlock()
	return fuse.OK
}

func (m *memFS) OpenDir(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if !m.op() {
		return fuse.EIO
	}
	defer m.mu.Unlock()
	if _, st := m.dir(in.NodeId); st != fuse.OK {
		return st
	}
	m.nextFh++
	out.Fh = m.nextFh
	m.dirs[out.Fh] = nil
	return fuse.OK
}

// ReadDir lists a snapshot of the directory taken at offset 0, so that
// entries added or removed meanwhile are not skipped or doubled.
func (m *memFS) ReadDir(_ <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	if !m.op() {
		return fuse.EIO
	}
	defer m.mu.Unlock()
	d, st := m.dir(in.NodeId)
	if st != fuse.OK {
		return st
	}
	list, ok := m.dirs[in.Fh]
	if !ok {
		return fuse.EBADF
	}
	if in.Offset == 0 || list == nil {
		list = make([]fuse.DirEntry, 0, len(d.kids))
		for _, name := range slices.Sorted(maps.Keys(d.kids)) {
			k := d.kids[name]
			list = append(list, fuse.DirEntry{Name: name, Ino: k.ino, Mode: k.mode})
		}
		m.dirs[in.Fh] = list
	}
	for i := int(in.Offset); i < len(list); i++ {
		e := list[i]
		e.Off = uint64(i + 1)
		if !out.AddDirEntry(e) {
			break
		}
	}
	return fuse.OK
}

func (m *memFS) ReleaseDir(in *fuse.ReleaseIn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.dirs, in.Fh)
}

func (m *memFS) StatFs(_ <-chan struct{}, _ *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	if !m.op() {
		return fuse.EIO
	}
	defer m.mu.Unlock()
	const blocks = 1 << 20 // 4 GiB free, as far as anyone asks
	*out = fuse.StatfsOut{Blocks: blocks, Bfree: blocks, Bavail: blocks, Files: 1 << 20, Ffree: 1 << 20,
		Bsize: 4096, Frsize: 4096, NameLen: 255}
	return fuse.OK
}
