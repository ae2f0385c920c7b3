package containerd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kedge-io/kedge/pkg/component"
)

// ImporterConfig describes an image directory to import from.
type ImporterConfig struct {
	// Dir is watched for image tarballs: *.tar, *.tar.zst, *.tar.gz
	// (e.g. <data-dir>/agent/images). Start creates it if missing.
	Dir string
	// Address is containerd's gRPC socket.
	Address string
	// Pinned lists image names to Pin when a tarball brings them (the
	// sandbox image).
	Pinned []string
	// Interval between two looks at Dir; 5 s when zero.
	Interval time.Duration
	Log      *slog.Logger
}

// ImageImporter imports every image tarball of a directory into containerd:
// all of them on Start (Ready waits for that, so the kubelet finds them),
// then each new or changed one, once it stopped changing between two looks
// (a copy in progress is not imported half-written).
//
// A file is known by name, size and modification time and imported once; one
// that fails is tried again when it changes. The imports are recorded in
// Dir/.imported.json, so that a restart skips the tarballs whose images
// containerd still has.
type ImageImporter struct {
	component.Background
	cfg       ImporterConfig
	log       *slog.Logger
	firstDone chan struct{}
	seen      map[string]fileStamp // imported, or failed to
	pending   map[string]fileStamp // new or changed at the last look
}

// fileStamp identifies a version of a file and what importing it gave.
type fileStamp struct {
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mtime"`
	Images  []string  `json:"images,omitempty"` // nil: the import failed
}

// same reports whether a and b are the same version of a file.
func (a fileStamp) same(b fileStamp) bool { return a.Size == b.Size && a.ModTime.Equal(b.ModTime) }

// recordFile is the importer's record in Dir.
const recordFile = ".imported.json"

var _ component.Component = (*ImageImporter)(nil)
var _ component.Failer = (*ImageImporter)(nil)

// NewImageImporter returns an importer; nothing runs until Start.
func NewImageImporter(cfg ImporterConfig) *ImageImporter {
	if cfg.Interval == 0 {
		cfg.Interval = 5 * time.Second
	}
	return &ImageImporter{
		cfg:       cfg,
		firstDone: make(chan struct{}),
		seen:      map[string]fileStamp{},
		pending:   map[string]fileStamp{},
	}
}

// Name implements component.Component.
func (*ImageImporter) Name() string { return "images" }

// Start creates Dir and starts importing in the background.
func (m *ImageImporter) Start(ctx context.Context) error {
	if m.cfg.Log == nil {
		return errors.New("images: no Log")
	}
	m.log = m.cfg.Log.With("component", "images")
	if err := os.MkdirAll(m.cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	m.Context(ctx)
	m.Go(m.run)
	return nil
}

func (m *ImageImporter) run(ctx context.Context) error {
	m.loadRecord(ctx)
	m.scan(ctx, true)
	close(m.firstDone)
	tick := time.NewTicker(m.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			m.scan(ctx, false)
		}
	}
}

// Ready waits until the tarballs present at Start are imported.
func (m *ImageImporter) Ready(ctx context.Context) error {
	select {
	case <-m.firstDone:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("images: importing %s: %w", m.cfg.Dir, ctx.Err())
	}
}

// scan imports the new files of Dir: all of them on the first scan, later
// only those unchanged since the previous scan.
func (m *ImageImporter) scan(ctx context.Context, first bool) {
	entries, err := os.ReadDir(m.cfg.Dir)
	if err != nil {
		m.log.Error("reading the image directory", "dir", m.cfg.Dir, "err", err)
		return
	}
	for _, e := range entries {
		if ctx.Err() != nil {
			return
		}
		name := e.Name()
		if !isImageArchive(name) {
			continue
		}
		info, err := os.Stat(filepath.Join(m.cfg.Dir, name)) // a link to a tarball counts
		if errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			m.log.Error("reading the image directory", "dir", m.cfg.Dir, "err", err)
			continue
		}
		if !info.Mode().IsRegular() {
			continue
		}
		stamp := fileStamp{Size: info.Size(), ModTime: info.ModTime()}
		if seen, ok := m.seen[name]; ok && seen.same(stamp) {
			continue
		}
		if p, ok := m.pending[name]; !first && (!ok || !p.same(stamp)) {
			m.pending[name] = stamp // look again next time
			continue
		}
		delete(m.pending, name)
		stamp.Images = m.importFile(ctx, filepath.Join(m.cfg.Dir, name))
		if ctx.Err() != nil {
			return
		}
		m.seen[name] = stamp
		m.saveRecord()
	}
}

// importFile imports one tarball and pins what it should; it returns the
// names of the images, nil when the import failed.
func (m *ImageImporter) importFile(ctx context.Context, path string) []string {
	began := time.Now()
	names, err := ImportFile(ctx, m.cfg.Address, path)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Error("image import failed; replace the file to try again", "file", path, "err", err)
		}
		return nil
	}
	for _, n := range names {
		if !slices.Contains(m.cfg.Pinned, n) {
			continue
		}
		if err := Pin(ctx, m.cfg.Address, n); err != nil {
			m.log.Error("pinning image", "image", n, "err", err)
		}
	}
	// Logged once the images are pinned too: the line says the import is
	// done (the importer test waits for it before checking the pin).
	m.log.Info("imported images", "file", path, "images", strings.Join(names, ","), "took", time.Since(began).Round(time.Millisecond))
	return names
}

// loadRecord reads the imports of earlier runs and keeps those whose images
// containerd still has.
func (m *ImageImporter) loadRecord(ctx context.Context) {
	path := filepath.Join(m.cfg.Dir, recordFile)
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var record map[string]fileStamp
	if err == nil {
		err = json.Unmarshal(raw, &record)
	}
	if err != nil {
		m.log.Warn("ignoring the record of earlier image imports", "file", path, "err", err)
		return
	}
	for name, stamp := range record {
		if len(stamp.Images) == 0 {
			continue
		}
		if ok, err := hasImages(ctx, m.cfg.Address, stamp.Images); err != nil || !ok {
			continue
		}
		m.seen[name] = stamp
		for _, n := range stamp.Images {
			if slices.Contains(m.cfg.Pinned, n) {
				if err := Pin(ctx, m.cfg.Address, n); err != nil {
					m.log.Error("pinning image", "image", n, "err", err)
				}
			}
		}
	}
}

// saveRecord writes the successful imports to Dir/.imported.json.
func (m *ImageImporter) saveRecord() {
	record := map[string]fileStamp{}
	for name, stamp := range m.seen {
		if len(stamp.Images) > 0 {
			record[name] = stamp
		}
	}
	raw, err := json.MarshalIndent(record, "", "  ")
	if err == nil {
		path := filepath.Join(m.cfg.Dir, recordFile)
		tmp := path + ".tmp"
		if err = os.WriteFile(tmp, raw, 0o600); err == nil {
			err = os.Rename(tmp, path)
		}
	}
	if err != nil {
		m.log.Warn("recording image imports", "dir", m.cfg.Dir, "err", err)
	}
}

// isImageArchive reports whether a file name is one the importer reads.
func isImageArchive(name string) bool {
	for _, ext := range []string{".tar", ".tar.zst", ".tar.gz"} {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}
