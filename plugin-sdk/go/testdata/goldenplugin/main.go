// A plugin that writes the samples of its k-th batch, as the SDK's JSON
// writer writes them, to /data/batch-k.jsonl: under `collector check` the
// first five batches are the golden vectors, decoded by the SDK built for
// wasm (plugin-sdk/go/test.sh compares them with compare.py).
package main

import (
	"fmt"
	"os"

	"collector"
)

type p struct{ batches int }

func (g *p) Dispatch(b collector.Batch) collector.Outcome {
	g.batches++
	var out []byte
	r := b.Reader()
	for r.Next() {
		out = collector.AppendJSON(out, r.Sample())
		out = append(out, '\n')
	}
	if err := r.Err(); err != nil {
		return collector.Reject("%v", err)
	}
	if err := os.WriteFile(fmt.Sprintf("/data/batch-%d.jsonl", g.batches), out, 0o644); err != nil {
		return collector.Retry("%v", err)
	}
	return collector.OK()
}

func init() {
	collector.Register(func([]byte) (collector.Dispatcher, error) { return &p{}, nil })
}

func main() {}
