package collector

import "fmt"

// Status is what an export returns (ABI §7).
type Status int32

const (
	StatusOK     Status = 0
	StatusRetry  Status = 1
	StatusReject Status = 2
)

// Outcome is a dispatcher's answer for a batch: OK, Retry or Reject, with a
// message for the last two.
type Outcome struct {
	Status  Status
	Message string
}

// OK: the batch is taken care of.
func OK() Outcome { return Outcome{} }

// Retry: not now (a backend that is down); the host calls again with the same batch.
func Retry(format string, args ...any) Outcome {
	return Outcome{StatusRetry, fmt.Sprintf(format, args...)}
}

// Reject: never this batch (the host then offers its halves, to isolate the culprit).
func Reject(format string, args ...any) Outcome {
	return Outcome{StatusReject, fmt.Sprintf(format, args...)}
}

// Dispatcher is a plugin: one per instance, called for one batch at a time.
type Dispatcher interface {
	Dispatch(b Batch) Outcome
}

// Stateful dispatchers keep state across instances (ABI §5.7, §5.8): Snapshot
// after every accepted batch and before a reload, Restore in the new instance.
// The snapshot is opaque bytes; a version that cannot read an older one
// returns an error from Restore and starts without it.
type Stateful interface {
	Snapshot() []byte
	Restore(state []byte) error
}

// Factory makes the dispatcher from its config table (JSON text).
type Factory func(config []byte) (Dispatcher, error)

var (
	factory Factory
	current Dispatcher
)

// Register sets the plugin's constructor; call it from an init function.
func Register(f Factory) { factory = f }

// Log levels of collector.log (ABI §6.1).
const (
	LevelError int32 = 1
	LevelWarn  int32 = 2
	LevelInfo  int32 = 3
	LevelDebug int32 = 4
	LevelTrace int32 = 5
)

// Log writes one line to the daemon's log (rate-limited by the host).
func Log(level int32, msg string) { hostLog(level, msg) }

func Errorf(format string, args ...any) { Log(LevelError, fmt.Sprintf(format, args...)) }
func Warnf(format string, args ...any)  { Log(LevelWarn, fmt.Sprintf(format, args...)) }
func Infof(format string, args ...any)  { Log(LevelInfo, fmt.Sprintf(format, args...)) }
func Debugf(format string, args ...any) { Log(LevelDebug, fmt.Sprintf(format, args...)) }

// The exports' work, the same on every platform (abi_wasip1.go calls them).

func callInit(config []byte) int32 {
	if factory == nil {
		hostSetError("the plugin registered no Factory (call collector.Register in an init function)")
		return int32(StatusReject)
	}
	d, err := factory(config)
	if err != nil {
		hostSetError(err.Error())
		return int32(StatusReject)
	}
	current = d
	return int32(StatusOK)
}

func callDispatch(buf []byte) int32 {
	if current == nil {
		hostSetError("dispatch before a successful init")
		return int32(StatusReject)
	}
	b, err := NewBatch(buf)
	if err != nil {
		hostSetError(err.Error())
		return int32(StatusReject)
	}
	o := current.Dispatch(b)
	if o.Status != StatusOK {
		hostSetError(o.Message)
	}
	return int32(o.Status)
}

func callSnapshot() []byte {
	if s, ok := current.(Stateful); ok {
		return s.Snapshot()
	}
	return nil
}

func callRestore(state []byte) int32 {
	s, ok := current.(Stateful)
	if !ok {
		return int32(StatusOK)
	}
	if err := s.Restore(state); err != nil {
		hostSetError(err.Error())
		return int32(StatusReject)
	}
	return int32(StatusOK)
}
