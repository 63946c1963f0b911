package collector

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Codes of the collector.http_* imports (ABI §17.3).
const (
	HTTPErrUnknownEndpoint   = -1
	HTTPErrBadTarget         = -2
	HTTPErrBusy              = -3
	HTTPErrTooLarge          = -4
	HTTPErrMalformed         = -5
	HTTPErrHeader            = -6
	HTTPErrNoHandle          = -7
	HTTPErrUnavailable       = -8
	HTTPPending              = 0
	HTTPFailConnect          = -10
	HTTPFailTimeout          = -11
	HTTPFailResponseTooLarge = -12
	HTTPFailIO               = -14
	httpWaitNone             = -1
	httpLastRefusal          = -1
)

// Request is a request to one of the dispatcher's endpoints: the host builds
// the URL from the endpoint's and Target (a path and query under it), and adds
// the endpoint's credentials and headers.
type Request struct {
	Endpoint, Method, Target string
	Headers                  [][2]string
	Body                     []byte
}

// Encode is the request as collector.http_send reads it (ABI §17.2).
func (r *Request) Encode() []byte {
	out := make([]byte, 0, 64+len(r.Body))
	field := func(b []byte) {
		out = binary.LittleEndian.AppendUint32(out, uint32(len(b)))
		out = append(out, b...)
	}
	field([]byte(r.Endpoint))
	field([]byte(r.Method))
	field([]byte(r.Target))
	out = binary.LittleEndian.AppendUint32(out, uint32(len(r.Headers)))
	for _, h := range r.Headers {
		field([]byte(h[0]))
		field([]byte(h[1]))
	}
	field(r.Body)
	return out
}

// HTTPError is a request the host refused (Code -1 to -8) or one that got no
// whole response (Code -10 to -14).
type HTTPError struct {
	Code    int32
	Message string
	Refused bool
}

func (e *HTTPError) Error() string {
	what := "failed"
	if e.Refused {
		what = "refused"
	}
	return fmt.Sprintf("%s (%d): %s", what, e.Code, e.Message)
}

// ErrStillRunning: the wait ended (its timeout, or the time left to the call) first.
var ErrStillRunning = &HTTPError{Code: HTTPPending, Message: "no response in the time left"}

// Pending is a request that was sent. Close it when done: the host holds its
// response (counted against memory_limit_bytes) until then.
type Pending struct{ h int32 }

// Send starts the request; several may run at once.
func Send(r *Request) (*Pending, error) {
	h := httpSend(r.Encode())
	if h < 0 {
		return nil, &HTTPError{Code: h, Message: httpError(httpLastRefusal), Refused: true}
	}
	return &Pending{h}, nil
}

// Response is a whole response.
type Response struct {
	Status int
	Body   []byte
	p      *Pending
}

// Header is a response header's value (the first of that name); valid until
// the response is closed.
func (r *Response) Header(name string) (string, bool) { return httpHeader(r.p.h, name) }

// Close lets the host forget the response (its handle and the body it holds).
func (r *Response) Close() { r.p.Close() }

// Done tells whether the request finished.
func (p *Pending) Done() bool { return httpStatus(p.h) != HTTPPending }

// Wait waits at most timeout (never past the call's deadline minus the host's margin).
func (p *Pending) Wait(timeout time.Duration) (*Response, error) {
	if httpWait([]int32{p.h}, timeout) == httpWaitNone {
		return nil, ErrStillRunning
	}
	return p.Result()
}

// Result is the response of a finished request.
func (p *Pending) Result() (*Response, error) {
	st := httpStatus(p.h)
	switch {
	case st == HTTPPending:
		return nil, ErrStillRunning
	case st < 0:
		return nil, &HTTPError{Code: st, Message: httpError(p.h)}
	}
	return &Response{Status: int(st), Body: httpBody(p.h), p: p}, nil
}

// Close forgets the request, cancelling it if it still runs.
func (p *Pending) Close() { httpClose(p.h) }

// WaitAny waits at most timeout for one of ps to finish; its index, or -1.
func WaitAny(ps []*Pending, timeout time.Duration) int {
	hs := make([]int32, len(ps))
	for i, p := range ps {
		hs[i] = p.h
	}
	return int(httpWait(hs, timeout))
}

// Fetch sends the request and waits for its response. Close the response
// when done with it (the host holds it, against memory_limit_bytes, until
// then); on an error there is nothing to close.
func Fetch(r *Request, timeout time.Duration) (*Response, error) {
	p, err := Send(r)
	if err != nil {
		return nil, err
	}
	resp, err := p.Wait(timeout)
	if err != nil {
		p.Close()
	}
	return resp, err
}

// OutcomeOf applies the rule of ABI §17.4 to a request's result: nil for a
// 2xx or 3xx response; Retry on connection errors, timeouts, a busy endpoint,
// 429 and 5xx; Reject with the backend's message on other 4xx and refusals.
func OutcomeOf(resp *Response, err error) *Outcome {
	var o Outcome
	switch {
	case err != nil:
		e, _ := err.(*HTTPError)
		if e != nil && (!e.Refused || e.Code == HTTPErrBusy) {
			o = Retry("%v", err)
		} else {
			o = Reject("%v", err)
		}
	case resp.Status < 400:
		return nil
	case resp.Status == 429 || resp.Status >= 500:
		o = Retry("HTTP %d: %s", resp.Status, clip(resp.Body))
	default:
		o = Reject("HTTP %d: %s", resp.Status, clip(resp.Body))
	}
	return &o
}

func clip(b []byte) string {
	if len(b) > 512 {
		b = b[:512]
	}
	return string(b)
}
