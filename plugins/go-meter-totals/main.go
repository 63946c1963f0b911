// go-meter-totals: a dispatcher written in Go. For every sample it appends a
// JSON line to a file in its granted directory (the sample's id, meter and
// volume, the running count of samples, the count of its meter, and the
// plugin's version), and it keeps those totals across instances and reloads
// with the state handoff (snapshot/restore), so that a new version goes on
// counting where the old one stopped.
//
// Config: path (default /data/go.jsonl), log_every (log the totals every N
// samples; 0, the default: never).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"collector"
)

// version is patched in the built module by the reload tests (same length).
const version = "go-version:000000000"

type meter struct {
	Count uint64  `json:"count"`
	Sum   float64 `json:"sum"`
}

// totals is the state carried from instance to instance.
type totals struct {
	N      uint64            `json:"n"`
	Meters map[string]*meter `json:"meters"`
}

type plugin struct {
	file     *os.File
	logEvery uint64
	t        totals
	line     []byte
}

func newPlugin(config []byte) (collector.Dispatcher, error) {
	cfg := struct {
		Path     string `json:"path"`
		LogEvery uint64 `json:"log_every"`
	}{Path: "/data/go.jsonl"}
	if len(config) > 0 {
		if err := json.Unmarshal(config, &cfg); err != nil {
			return nil, fmt.Errorf("config: %v", err)
		}
	}
	f, err := os.OpenFile(cfg.Path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cannot open %s: %v", cfg.Path, err)
	}
	return &plugin{file: f, logEvery: cfg.LogEvery, t: totals{Meters: map[string]*meter{}}}, nil
}

func (p *plugin) Dispatch(b collector.Batch) collector.Outcome {
	// Counted on a copy: a batch that fails (or comes again after a retry)
	// leaves the totals as they were.
	n := p.t.N
	// Keyed by copies: a key kept past this call must not point into the
	// batch, and assigning to a map entry again would replace its key.
	seen := map[string]*meter{}
	p.line = p.line[:0]
	r := b.Reader()
	for r.Next() {
		s := r.Sample()
		n++
		m := seen[s.CounterName]
		if m == nil {
			m = &meter{}
			if old, known := p.t.Meters[s.CounterName]; known {
				*m = *old
			}
			seen[strings.Clone(s.CounterName)] = m
		}
		m.Count++
		if s.CounterVolume.Presence == collector.Present {
			m.Sum += s.CounterVolume.Value.Float64()
		}
		p.line = append(p.line, `{"message_id":`...)
		p.line = collector.AppendString(p.line, s.MessageID)
		p.line = append(p.line, `,"counter_name":`...)
		p.line = collector.AppendString(p.line, s.CounterName)
		p.line = append(p.line, `,"counter_volume":`...)
		if s.CounterVolume.Presence == collector.Present {
			p.line = collector.AppendNumber(p.line, s.CounterVolume.Value)
		} else {
			p.line = append(p.line, "null"...)
		}
		p.line = append(p.line, `,"n":`...)
		p.line = strconv.AppendUint(p.line, n, 10)
		p.line = append(p.line, `,"meter_count":`...)
		p.line = strconv.AppendUint(p.line, m.Count, 10)
		p.line = append(p.line, `,"version":"`+version+`"}`+"\n"...)
	}
	if err := r.Err(); err != nil {
		return collector.Reject("%v", err)
	}
	if _, err := p.file.Write(p.line); err != nil {
		return collector.Retry("cannot write: %v", err)
	}
	before := p.t.N
	p.t.N = n
	for k, m := range seen {
		p.t.Meters[k] = m
	}
	if p.logEvery > 0 && n/p.logEvery != before/p.logEvery {
		collector.Infof("go-meter-totals samples=%d meters=%d", n, len(p.t.Meters))
	}
	return collector.OK()
}

func (p *plugin) Snapshot() []byte {
	b, _ := json.Marshal(&p.t)
	return b
}

func (p *plugin) Restore(state []byte) error {
	var t totals
	if err := json.Unmarshal(state, &t); err != nil {
		return fmt.Errorf("state from another version: %v", err)
	}
	if t.Meters == nil {
		t.Meters = map[string]*meter{}
	}
	p.t = t
	return nil
}

func init() { collector.Register(newPlugin) }

func main() {}
