package apicache

import (
	"encoding/json"
	"errors"
	"io"
)

// watchTee passes a watch stream through while a tap reads its events.
type watchTee struct {
	body io.ReadCloser
	tee  io.Reader
	pw   *io.PipeWriter
	done chan struct{}
}

func newWatchTee(body io.ReadCloser, t *tap) *watchTee {
	pr, pw := io.Pipe()
	wt := &watchTee{body: body, tee: io.TeeReader(body, pw), pw: pw, done: make(chan struct{})}
	go func() {
		defer close(wt.done)
		dec := json.NewDecoder(pr)
		for {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				_, _ = io.Copy(io.Discard, pr) // never block the stream
				return
			}
			t.event(raw)
		}
	}()
	return wt
}

// Read implements io.Reader.
func (wt *watchTee) Read(b []byte) (int, error) {
	n, err := wt.tee.Read(b)
	if err != nil && !errors.Is(err, io.EOF) {
		_ = wt.pw.CloseWithError(err)
	}
	return n, err
}

// Close implements io.Closer.
func (wt *watchTee) Close() error {
	err := wt.body.Close()
	_ = wt.pw.Close()
	<-wt.done
	return err
}
