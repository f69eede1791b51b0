// Package boltfile opens bbolt files that may be damaged without letting
// the damage crash the process.
//
// bbolt trusts its file: it memory-maps it and follows page numbers and
// element offsets read from it. A file cut short makes it read past the end
// of the mapping (SIGBUS), and a page of garbage makes it index far outside
// a page (an index panic, or SIGSEGV through an unsafe pointer). Both kill
// the process, and a fault in the mapping cannot even be recovered.
// bbolt's own answer is (*bolt.Tx).Check, which recovers Go panics but not
// faults, and runs in a goroutine of its own.
//
// Open therefore checks a file in three steps before handing it out:
//
//  1. Precheck reads the two meta pages with plain reads (no mapping) and
//     checks what bbolt would use: magic, version and checksum, and that the
//     file holds every page below the high-water mark, so that no page bbolt
//     can reach lies past the end of the file.
//  2. bbolt opens the file, with its freelist loaded, in a goroutine that
//     turns faults into panics (debug.SetPanicOnFault) and recovers them.
//  3. Walk reads every key and value of every bucket in such a goroutine,
//     then runs bbolt's Check for the structure (pages reachable once,
//     keys in order, no reachable page freed).
//
// Step 1 alone catches truncation and damaged meta pages; steps 2 and 3
// turn whatever damage is left into an error wrapping ErrDamaged. The cost
// is one read of the whole file at open.
package boltfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"

	bolt "go.etcd.io/bbolt"
)

var (
	// ErrEmpty reports a file of 0 bytes. bbolt would silently make it a
	// new, empty database; for a file that is supposed to hold history,
	// that would start a second history.
	ErrEmpty = errors.New("the file is empty (0 bytes)")
	// ErrDamaged reports a file that is not a sound bbolt database.
	ErrDamaged = errors.New("the file is damaged")
)

// Layout of a bbolt file, as in go.etcd.io/bbolt/internal/common (format
// version 2): a page starts with a 16-byte header; pages 0 and 1 hold a meta
// record, whose FNV-64a checksum covers its first 56 bytes.
const (
	pageHeaderSize   = 16
	metaSize         = 64
	metaSumOffset    = 56
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	noFreelist       = ^uint64(0)
	freelistPageFlag = 0x10
	maxPageSize      = 1 << 24
	minPageSize      = 1 << 10
)

// meta is the part of a bbolt meta page Precheck uses.
type meta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64
	txid     uint64
}

// parseMeta decodes and checks the meta record of a page that starts at b.
func parseMeta(b []byte) (meta, bool) {
	if len(b) < pageHeaderSize+metaSize {
		return meta{}, false
	}
	m := b[pageHeaderSize : pageHeaderSize+metaSize]
	le := binary.LittleEndian
	if le.Uint32(m[0:]) != boltMagic || le.Uint32(m[4:]) != boltVersion {
		return meta{}, false
	}
	h := fnv.New64a()
	h.Write(m[:metaSumOffset])
	if h.Sum64() != le.Uint64(m[metaSumOffset:]) {
		return meta{}, false
	}
	return meta{
		pageSize: le.Uint32(m[8:]),
		root:     le.Uint64(m[16:]),
		freelist: le.Uint64(m[32:]),
		pgid:     le.Uint64(m[40:]),
		txid:     le.Uint64(m[48:]),
	}, true
}

// Precheck checks the file at path with plain reads, before bbolt maps
// it: that it is not empty (ErrEmpty), that a meta page is intact, and
// that the file holds every page the meta page says the database has.
// A missing file is an error satisfying errors.Is(err, fs.ErrNotExist).
func Precheck(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	size := info.Size()
	if size == 0 {
		return ErrEmpty
	}
	head := make([]byte, 4096)
	n, err := f.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return err
	}
	head = head[:n]
	m0, ok0 := parseMeta(head)
	pageSize := int64(0)
	if ok0 {
		pageSize = int64(m0.pageSize)
	}
	var m1 meta
	var ok1 bool
	// Without a good first meta page, look for the second where bbolt
	// does: one page in, for every page size it supports.
	for ps := int64(minPageSize); ps <= maxPageSize && ps < size; ps <<= 1 {
		if ok0 && ps != pageSize {
			continue
		}
		buf := make([]byte, pageHeaderSize+metaSize)
		if _, err := f.ReadAt(buf, ps); err != nil {
			break
		}
		if m, ok := parseMeta(buf); ok && int64(m.pageSize) == ps {
			m1, ok1 = m, true
			pageSize = ps
			break
		}
	}
	var use meta
	switch {
	case !ok0 && !ok1:
		return fmt.Errorf("%w: neither meta page is intact (%d bytes; not a bbolt database, or its first pages were overwritten)", ErrDamaged, size)
	case ok0 && ok1 && m1.txid > m0.txid, !ok0:
		use = m1
	default:
		use = m0
	}
	if pageSize < minPageSize || pageSize > maxPageSize || pageSize&(pageSize-1) != 0 {
		return fmt.Errorf("%w: page size %d", ErrDamaged, pageSize)
	}
	if use.pgid < 2 || use.pgid > uint64(size/pageSize) {
		return fmt.Errorf("%w: it is %d bytes, but its meta page says it has %d pages of %d bytes (the file was cut short)", ErrDamaged, size, use.pgid, pageSize)
	}
	if use.root < 2 || use.root >= use.pgid {
		return fmt.Errorf("%w: root page %d is outside the database's %d pages", ErrDamaged, use.root, use.pgid)
	}
	if use.freelist != noFreelist {
		if use.freelist < 2 || use.freelist >= use.pgid {
			return fmt.Errorf("%w: freelist page %d is outside the database's %d pages", ErrDamaged, use.freelist, use.pgid)
		}
		if err := checkFreelist(f, use, pageSize); err != nil {
			return fmt.Errorf("%w: freelist page %d: %v", ErrDamaged, use.freelist, err)
		}
	}
	t := treeCheck{f: f, m: use, pageSize: pageSize, seen: map[uint64]bool{}}
	if err := t.page(use.root, 0); err != nil {
		return fmt.Errorf("%w: %v", ErrDamaged, err)
	}
	return nil
}

// treeCheck walks the pages of every bucket's B+tree from the root with
// plain reads, checking each page's header and that every element lies
// within its page, and that no page is reached twice. bbolt follows these
// links without such checks, so a damaged link can make it read outside a
// page or loop forever (a cycle); after this walk, neither can happen.
type treeCheck struct {
	f        *os.File
	m        meta
	pageSize int64
	seen     map[uint64]bool
}

// maxDepth bounds the nesting of pages and buckets: a real database is a
// few levels deep.
const maxDepth = 256

const (
	branchPageFlag = 0x01
	leafPageFlag   = 0x02
	bucketLeafFlag = 0x01
	elementSize    = 16
)

// page checks page id and the trees below it.
func (t *treeCheck) page(id uint64, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("page %d: the tree is more than %d levels deep", id, maxDepth)
	}
	if id < 2 || id >= t.m.pgid {
		return fmt.Errorf("a link to page %d, outside the database's %d pages", id, t.m.pgid)
	}
	hdr := make([]byte, pageHeaderSize)
	if _, err := t.f.ReadAt(hdr, int64(id)*t.pageSize); err != nil {
		return fmt.Errorf("page %d: %v", id, err)
	}
	le := binary.LittleEndian
	overflow := uint64(le.Uint32(hdr[12:]))
	if got := le.Uint64(hdr); got != id {
		return fmt.Errorf("page %d says it is page %d", id, got)
	}
	if id+overflow >= t.m.pgid {
		return fmt.Errorf("page %d: its %d overflow pages run past the database's %d pages", id, overflow, t.m.pgid)
	}
	for i := id; i <= id+overflow; i++ {
		if t.seen[i] {
			return fmt.Errorf("page %d is reached twice", i)
		}
		t.seen[i] = true
	}
	buf := make([]byte, int64(overflow+1)*t.pageSize)
	if _, err := t.f.ReadAt(buf, int64(id)*t.pageSize); err != nil {
		return fmt.Errorf("page %d: %v", id, err)
	}
	return t.elements(buf, fmt.Sprintf("page %d", id), depth)
}

// elements checks the elements of the page in buf (a page read from the
// file, or an inline bucket's page inside a value).
func (t *treeCheck) elements(buf []byte, where string, depth int) error {
	le := binary.LittleEndian
	if len(buf) < pageHeaderSize {
		return fmt.Errorf("%s: %d bytes, shorter than a page header", where, len(buf))
	}
	flags, count := le.Uint16(buf[8:]), int(le.Uint16(buf[10:]))
	if pageHeaderSize+count*elementSize > len(buf) {
		return fmt.Errorf("%s: %d elements do not fit in %d bytes", where, count, len(buf))
	}
	for i := range count {
		off := pageHeaderSize + i*elementSize
		e := buf[off : off+elementSize]
		switch flags {
		case branchPageFlag:
			pos, ksize, child := uint64(le.Uint32(e)), uint64(le.Uint32(e[4:])), le.Uint64(e[8:])
			if uint64(off)+pos+ksize > uint64(len(buf)) {
				return fmt.Errorf("%s: branch element %d lies outside the page", where, i)
			}
			if err := t.page(child, depth+1); err != nil {
				return err
			}
		case leafPageFlag:
			eflags, pos, ksize, vsize := le.Uint32(e), uint64(le.Uint32(e[4:])), uint64(le.Uint32(e[8:])), uint64(le.Uint32(e[12:]))
			end := uint64(off) + pos + ksize + vsize
			if end > uint64(len(buf)) {
				return fmt.Errorf("%s: leaf element %d lies outside the page", where, i)
			}
			if eflags&bucketLeafFlag == 0 {
				continue
			}
			v := buf[uint64(off)+pos+ksize : end]
			if len(v) < 16 {
				return fmt.Errorf("%s: bucket element %d has a %d-byte header", where, i, len(v))
			}
			if root := le.Uint64(v); root != 0 {
				if err := t.page(root, depth+1); err != nil {
					return err
				}
			} else if err := t.elements(v[16:], fmt.Sprintf("%s: inline bucket %d", where, i), depth+1); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: flags %#x, not a branch or leaf page", where, flags)
		}
	}
	if flags == branchPageFlag && count == 0 {
		return fmt.Errorf("%s: a branch page without elements", where)
	}
	return nil
}

// checkFreelist checks the freelist page that bbolt reads while opening
// the file, before any guard could stop it: a panic inside bolt.Open
// leaves the file mapped, and so locked, until the process exits.
func checkFreelist(f *os.File, m meta, pageSize int64) error {
	hdr := make([]byte, pageHeaderSize+8)
	if _, err := f.ReadAt(hdr, int64(m.freelist)*pageSize); err != nil {
		return err
	}
	le := binary.LittleEndian
	id, flags, count, overflow := le.Uint64(hdr), le.Uint16(hdr[8:]), uint64(le.Uint16(hdr[10:])), uint64(le.Uint32(hdr[12:]))
	if id != m.freelist || flags != freelistPageFlag {
		return fmt.Errorf("it says it is page %d with flags %#x", id, flags)
	}
	if m.freelist+overflow >= m.pgid {
		return fmt.Errorf("its %d overflow pages run past the database's %d pages", overflow, m.pgid)
	}
	skip := uint64(0)
	if count == 0xFFFF {
		skip, count = 1, le.Uint64(hdr[pageHeaderSize:])
	}
	room := ((overflow+1)*uint64(pageSize) - pageHeaderSize) / 8
	if count > room || skip+count > room {
		return fmt.Errorf("it lists %d pages, but has room for %d", count, room)
	}
	ids := make([]byte, 8*count)
	if _, err := f.ReadAt(ids, int64(m.freelist)*pageSize+pageHeaderSize+8*int64(skip)); err != nil {
		return err
	}
	for i := range count {
		if p := le.Uint64(ids[8*i:]); p < 2 || p >= m.pgid {
			return fmt.Errorf("it lists page %d, outside the database's %d pages", p, m.pgid)
		}
	}
	return nil
}

// guard runs fn in a goroutine in which a memory fault is a panic, and
// returns a recovered panic as an error wrapping ErrDamaged.
func guard(what string, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		debug.SetPanicOnFault(true)
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("%w: bbolt failed while %s: %v", ErrDamaged, what, r)
			}
		}()
		done <- fn()
	}()
	return <-done
}

// Open prechecks the file at path, opens it with bbolt and walks it (see
// the package documentation), and returns the database or an error
// wrapping ErrEmpty or ErrDamaged. A file that does not exist is created
// (as bbolt does) unless opts.ReadOnly; callers that must not create one
// check first. The freelist is always loaded at open, so that a damaged
// freelist is found here and not later.
func Open(path string, mode os.FileMode, opts *bolt.Options) (*bolt.DB, error) {
	o := bolt.Options{}
	if opts != nil {
		o = *opts
	}
	o.PreLoadFreelist = true
	if err := Precheck(path); err != nil && !(errors.Is(err, os.ErrNotExist) && !o.ReadOnly) {
		return nil, err
	}
	// Keep the file bbolt opens, to close it (and release its lock) if
	// bolt.Open panics half-way; its mapping then stays until exit.
	var file *os.File
	openFile := o.OpenFile
	if openFile == nil {
		openFile = os.OpenFile
	}
	o.OpenFile = func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := openFile(name, flag, perm)
		file = f
		return f, err
	}
	var db *bolt.DB
	err := guard("opening it", func() error {
		var err error
		db, err = bolt.Open(path, mode, &o)
		return err
	})
	if err != nil {
		if db == nil && file != nil {
			file.Close()
		}
		return nil, err
	}
	if err := Walk(db); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Walk reads every key and value of every bucket of db, recursively, with
// faults and panics turned into an error wrapping ErrDamaged, then runs
// bbolt's structural Check and reports its first error likewise.
func Walk(db *bolt.DB) error {
	err := guard("reading it", func() error {
		return db.View(func(tx *bolt.Tx) error {
			var sum uint32
			var walk func(b *bolt.Bucket) error
			walk = func(b *bolt.Bucket) error {
				return b.ForEach(func(k, v []byte) error {
					sum = crc32.Update(sum, crc32.IEEETable, k)
					if v != nil {
						sum = crc32.Update(sum, crc32.IEEETable, v)
						return nil
					}
					child := b.Bucket(k)
					if child == nil {
						return fmt.Errorf("%w: bucket %q cannot be read", ErrDamaged, k)
					}
					return walk(child)
				})
			}
			err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
				sum = crc32.Update(sum, crc32.IEEETable, name)
				return walk(b)
			})
			_ = sum
			return err
		})
	})
	if err != nil {
		return err
	}
	var first error
	err = guard("checking its structure", func() error {
		return db.View(func(tx *bolt.Tx) error {
			for e := range tx.Check() {
				if first == nil {
					first = e
				}
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	if first != nil {
		return fmt.Errorf("%w: %v", ErrDamaged, first)
	}
	return nil
}
