// A plugin that calls every collector.http_* function through the Go SDK,
// for `collector check --endpoint target` (plugin-sdk/go/test.sh).
package main

import (
	"time"

	"collector"
)

type p struct{}

func (p) Dispatch(b collector.Batch) collector.Outcome {
	var ps []*collector.Pending
	for i := 0; i < 3; i++ {
		pending, err := collector.Send(&collector.Request{
			Endpoint: "target", Method: "POST", Target: "/go-sdk",
			Headers: [][2]string{{"Content-Type", "text/plain"}},
			Body:    []byte("from the Go SDK"),
		})
		if err != nil {
			return *collector.OutcomeOf(nil, err)
		}
		ps = append(ps, pending)
	}
	for left := len(ps); left > 0; left-- {
		if collector.WaitAny(ps, 2*time.Second) < 0 {
			return collector.Retry("no response in time")
		}
		for _, pending := range ps {
			if pending.Done() {
				resp, err := pending.Result()
				if o := collector.OutcomeOf(resp, err); o != nil {
					return *o
				}
				_, _ = resp.Header("content-type")
			}
		}
	}
	for _, pending := range ps {
		pending.Close()
	}
	if _, err := collector.Send(&collector.Request{Endpoint: "nowhere", Method: "GET"}); err == nil {
		return collector.Reject("an undeclared endpoint was not refused")
	}
	resp, err := collector.Fetch(&collector.Request{Endpoint: "target", Method: "GET", Target: "/fetch"}, 2*time.Second)
	if err == nil {
		defer resp.Close()
	}
	if o := collector.OutcomeOf(resp, err); o != nil {
		return *o
	}
	if _, ok := resp.Header("date"); !ok {
		return collector.Reject("a fetched response has no headers")
	}
	return collector.OK()
}

func init() {
	collector.Register(func([]byte) (collector.Dispatcher, error) { return p{}, nil })
}

func main() {}
