// Package collector is the Go SDK of the collector's plugin ABI v1
// (docs/ABI.md): the exports and imports a dispatcher plugin needs, a
// zero-copy reader of the batches the host hands it, a JSON writer of
// samples as Ceilometer writes them, logging, state handoff and outbound
// HTTP to the endpoints the operator declared.
//
// A plugin registers its constructor in an init function and leaves main
// empty:
//
//	func init() { collector.Register(newPlugin) }
//	func main() {}
//
// and is built with `GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared`.
package collector

import (
	"fmt"
	"math"
	"unicode/utf8"
	"unsafe"
)

// MaxDepth is how many List/Map levels a field's value may have (ABI §9.7:
// 64 levels for the sample, the sample counting as one).
const MaxDepth = 63

// Presence of an optional key (ABI §9.4).
type Presence uint8

const (
	Absent Presence = iota
	Null
	Present
)

// NumberKind tells which of a Number's fields holds it.
type NumberKind uint8

const (
	Int NumberKind = iota
	UInt
	Float
)

// Number is a counter_volume or monotonic_time: an int64, a uint64 beyond
// int64 (UInt) or a float64, kept apart as the agent sent them.
type Number struct {
	Kind NumberKind
	I    int64
	U    uint64
	F    float64
}

// Float64 is the number as a float64, whatever its kind.
func (n Number) Float64() float64 {
	switch n.Kind {
	case Int:
		return float64(n.I)
	case UInt:
		return float64(n.U)
	}
	return n.F
}

// OptString is a string key that may be absent or null.
type OptString struct {
	Presence Presence
	Value    string
}

// OptNumber is a number key that may be absent or null.
type OptNumber struct {
	Presence Presence
	Value    Number
}

// Sample is one sample dict, its strings pointing into the batch: they are
// valid during the Dispatch call only; copy them (strings.Clone) to keep them.
type Sample struct {
	Source, CounterName, CounterType, CounterUnit string
	// CounterVolume: Present or Null (the key is always there).
	CounterVolume                            OptNumber
	UserID, UserName, ProjectID, ProjectName OptString
	ResourceID, Timestamp                    string
	// ResourceMetadata: Absent, or Present (a null value is a Value of kind NullValue).
	ResourceMetadata OptValue
	MessageID        string
	MonotonicTime    OptNumber
	// MessageSignature: Absent or Present.
	MessageSignature OptString
	// Extra holds every other top-level key, in the order received.
	Extra Map
}

// ValueKind is the kind of a Value (ABI §9.6 tags).
type ValueKind uint32

const (
	NullValue ValueKind = iota
	BoolValue
	IntValue
	UIntValue
	FloatValue
	StrValue
	BytesValue
	ListValue
	MapValue
)

// Value is a view of one encoded value (metadata or an extra key's value).
type Value struct {
	b []byte // the value's bytes, tag first; checked when its sample was read
}

// OptValue is resource_metadata: absent, or a value.
type OptValue struct {
	Presence Presence
	Value    Value
}

// Map is a view of map entries (string keys, values in the order received).
type Map struct {
	n uint64
	b []byte // the entries, after the count
}

// DecodeError says where and why a batch is not valid ABI v1.
type DecodeError struct {
	Offset int
	Reason string
}

func (e *DecodeError) Error() string { return fmt.Sprintf("batch byte %d: %s", e.Offset, e.Reason) }

// Batch is a view of one batch (ABI §9.2).
type Batch struct {
	buf   []byte
	count uint64
}

// NewBatch checks the header of `buf`; samples are checked as they are read.
func NewBatch(buf []byte) (Batch, error) {
	if len(buf) < 8 {
		return Batch{}, &DecodeError{0, "batch shorter than its 8-byte count"}
	}
	return Batch{buf: buf, count: le64(buf)}, nil
}

// Len is the number of samples the batch declares.
func (b Batch) Len() uint64 { return b.count }

// Reader reads the samples one after the other.
func (b Batch) Reader() *Reader { return &Reader{c: cursor{b: b.buf, pos: 8}, left: b.count} }

// Reader walks a batch: `for r.Next() { s := r.Sample() }`, then `r.Err()`.
type Reader struct {
	c    cursor
	left uint64
	s    Sample
	err  error
}

// Next reads the next sample; false at the end or at the first error.
func (r *Reader) Next() bool {
	if r.err != nil {
		return false
	}
	if r.left == 0 {
		if r.c.pos != len(r.c.b) {
			r.err = r.c.fail("trailing bytes after the batch")
		}
		return false
	}
	r.left--
	r.err = r.c.sample(&r.s)
	return r.err == nil
}

// Sample is the sample Next read; it is overwritten by the next call.
func (r *Reader) Sample() *Sample { return &r.s }

// Err is the first decoding error, if any (trailing bytes included).
func (r *Reader) Err() error { return r.err }

type cursor struct {
	b   []byte
	pos int
}

func (c *cursor) fail(reason string) error { return &DecodeError{c.pos, reason} }

func le64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

func (c *cursor) need(n int) error {
	if n < 0 || len(c.b)-c.pos < n {
		return c.fail("batch ends early")
	}
	return nil
}

func (c *cursor) u8() (byte, error) {
	if err := c.need(1); err != nil {
		return 0, err
	}
	v := c.b[c.pos]
	c.pos++
	return v, nil
}

func (c *cursor) u32() (uint32, error) {
	if err := c.need(4); err != nil {
		return 0, err
	}
	b := c.b[c.pos:]
	c.pos += 4
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24, nil
}

func (c *cursor) u64() (uint64, error) {
	if err := c.need(8); err != nil {
		return 0, err
	}
	v := le64(c.b[c.pos:])
	c.pos += 8
	return v, nil
}

// length reads a u64 length and checks it against the bytes that remain.
func (c *cursor) length(unit int) (int, error) {
	at := c.pos
	n, err := c.u64()
	if err != nil {
		return 0, err
	}
	if n > uint64(len(c.b)-c.pos)/uint64(unit) {
		c.pos = at
		return 0, c.fail("a length runs past the end of the batch")
	}
	return int(n), nil
}

// zero-copy string of b (valid while the batch is).
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func (c *cursor) str() (string, error) {
	n, err := c.length(1)
	if err != nil {
		return "", err
	}
	b := c.b[c.pos : c.pos+n]
	if !utf8.Valid(b) {
		return "", c.fail("a string is not valid UTF-8")
	}
	c.pos += n
	return view(b), nil
}

func (c *cursor) flag() (bool, error) {
	v, err := c.u8()
	if err != nil {
		return false, err
	}
	switch v {
	case 0:
		return false, nil
	case 1:
		return true, nil
	}
	c.pos--
	return false, c.fail("a flag byte is neither 00 nor 01")
}

func (c *cursor) number() (Number, error) {
	tag, err := c.u32()
	if err != nil {
		return Number{}, err
	}
	bits, err := c.u64()
	if err != nil {
		return Number{}, err
	}
	switch tag {
	case 0:
		return Number{Kind: Int, I: int64(bits)}, nil
	case 1:
		return Number{Kind: UInt, U: bits}, nil
	case 2:
		return Number{Kind: Float, F: math.Float64frombits(bits)}, nil
	}
	c.pos -= 12
	return Number{}, c.fail("unknown Number tag")
}

// field reads a Field (00 absent / 01 00 null / 01 01 value); true when a value follows.
func (c *cursor) field() (Presence, error) {
	some, err := c.flag()
	if err != nil || !some {
		return Absent, err
	}
	inner, err := c.flag()
	if err != nil || !inner {
		return Null, err
	}
	return Present, nil
}

func (c *cursor) optStr() (OptString, error) {
	p, err := c.field()
	if err != nil || p != Present {
		return OptString{Presence: p}, err
	}
	s, err := c.str()
	return OptString{Presence: Present, Value: s}, err
}

// skipValue checks one value at `depth` containers deep and moves past it.
func (c *cursor) skipValue(depth int) error {
	tag, err := c.u32()
	if err != nil {
		return err
	}
	switch ValueKind(tag) {
	case NullValue:
		return nil
	case BoolValue:
		_, err = c.flag()
		return err
	case IntValue, UIntValue, FloatValue:
		if err := c.need(8); err != nil {
			return err
		}
		c.pos += 8
		return nil
	case StrValue:
		_, err = c.str()
		return err
	case BytesValue:
		n, err := c.length(1)
		if err == nil {
			c.pos += n
		}
		return err
	case ListValue, MapValue:
		if depth >= MaxDepth {
			c.pos -= 4
			return c.fail("values nest deeper than the ABI allows")
		}
		unit := 4
		if ValueKind(tag) == MapValue {
			unit = 12
		}
		n, err := c.length(unit)
		if err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			if ValueKind(tag) == MapValue {
				if _, err := c.str(); err != nil {
					return err
				}
			}
			if err := c.skipValue(depth + 1); err != nil {
				return err
			}
		}
		return nil
	}
	c.pos -= 4
	return c.fail("unknown Value tag")
}

// value checks one value and returns its view.
func (c *cursor) value() (Value, error) {
	start := c.pos
	if err := c.skipValue(0); err != nil {
		return Value{}, err
	}
	return Value{b: c.b[start:c.pos]}, nil
}

// entries checks map entries (a u64 count, then key and value pairs).
func (c *cursor) entries() (Map, error) {
	n, err := c.length(12)
	if err != nil {
		return Map{}, err
	}
	start := c.pos
	for i := 0; i < n; i++ {
		if _, err := c.str(); err != nil {
			return Map{}, err
		}
		if err := c.skipValue(0); err != nil {
			return Map{}, err
		}
	}
	return Map{n: uint64(n), b: c.b[start:c.pos]}, nil
}

func (c *cursor) sample(s *Sample) (err error) {
	if s.Source, err = c.str(); err != nil {
		return
	}
	if s.CounterName, err = c.str(); err != nil {
		return
	}
	if s.CounterType, err = c.str(); err != nil {
		return
	}
	if s.CounterUnit, err = c.str(); err != nil {
		return
	}
	some, err := c.flag()
	if err != nil {
		return
	}
	s.CounterVolume = OptNumber{Presence: Null}
	if some {
		s.CounterVolume.Presence = Present
		if s.CounterVolume.Value, err = c.number(); err != nil {
			return
		}
	}
	for _, f := range []*OptString{&s.UserID, &s.UserName, &s.ProjectID, &s.ProjectName} {
		if *f, err = c.optStr(); err != nil {
			return
		}
	}
	if s.ResourceID, err = c.str(); err != nil {
		return
	}
	if s.Timestamp, err = c.str(); err != nil {
		return
	}
	if some, err = c.flag(); err != nil {
		return
	}
	s.ResourceMetadata = OptValue{}
	if some {
		s.ResourceMetadata.Presence = Present
		if s.ResourceMetadata.Value, err = c.value(); err != nil {
			return
		}
	}
	if s.MessageID, err = c.str(); err != nil {
		return
	}
	p, err := c.field()
	if err != nil {
		return
	}
	s.MonotonicTime = OptNumber{Presence: p}
	if p == Present {
		if s.MonotonicTime.Value, err = c.number(); err != nil {
			return
		}
	}
	if some, err = c.flag(); err != nil {
		return
	}
	s.MessageSignature = OptString{}
	if some {
		s.MessageSignature.Presence = Present
		if s.MessageSignature.Value, err = c.str(); err != nil {
			return
		}
	}
	s.Extra, err = c.entries()
	return
}

// Kind is the value's kind.
func (v Value) Kind() ValueKind {
	return ValueKind(uint32(v.b[0]) | uint32(v.b[1])<<8 | uint32(v.b[2])<<16 | uint32(v.b[3])<<24)
}

// Bool is a BoolValue's value.
func (v Value) Bool() bool { return v.b[4] == 1 }

// Int is an IntValue's value.
func (v Value) Int() int64 { return int64(le64(v.b[4:])) }

// UInt is a UIntValue's value.
func (v Value) UInt() uint64 { return le64(v.b[4:]) }

// Float is a FloatValue's value.
func (v Value) Float() float64 { return math.Float64frombits(le64(v.b[4:])) }

// Str is a StrValue's text, or a BytesValue's bytes as they are.
func (v Value) Str() string { return view(v.b[12:]) }

// Bytes is a StrValue's or BytesValue's bytes.
func (v Value) Bytes() []byte { return v.b[12:] }

// Items calls fn for each element of a ListValue, in order, until it
// returns false; nothing for another kind.
func (v Value) Items(fn func(Value) bool) {
	if len(v.b) < 12 || v.Kind() != ListValue {
		return
	}
	c := cursor{b: v.b, pos: 12}
	for c.pos < len(c.b) {
		start := c.pos
		if c.skipValue(0) != nil || !fn(Value{b: c.b[start:c.pos]}) {
			return
		}
	}
}

// Map is a MapValue's entries (none for another kind).
func (v Value) Map() Map {
	if len(v.b) < 12 || v.Kind() != MapValue {
		return Map{}
	}
	return Map{n: le64(v.b[4:]), b: v.b[12:]}
}

// Len is a ListValue's or MapValue's count (0 for another kind).
func (v Value) Len() uint64 {
	if len(v.b) < 12 || (v.Kind() != ListValue && v.Kind() != MapValue) {
		return 0
	}
	return le64(v.b[4:])
}

// Len is the number of entries.
func (m Map) Len() uint64 { return m.n }

// Each calls fn for each entry, in order, until it returns false.
func (m Map) Each(fn func(key string, v Value) bool) {
	c := cursor{b: m.b}
	for c.pos < len(c.b) {
		k, err := c.str()
		if err != nil {
			return
		}
		start := c.pos
		if c.skipValue(0) != nil || !fn(k, Value{b: c.b[start:c.pos]}) {
			return
		}
	}
}

// Get is the value of key, if the map has it.
func (m Map) Get(key string) (Value, bool) {
	var found Value
	ok := false
	m.Each(func(k string, v Value) bool {
		if k == key {
			found, ok = v, true
			return false
		}
		return true
	})
	return found, ok
}

// MetadataAt is the value at a dotted path into nested maps (`flavor.name`) of
// resource_metadata, if there is one.
func (s *Sample) MetadataAt(path string) (Value, bool) {
	if s.ResourceMetadata.Presence != Present {
		return Value{}, false
	}
	v := s.ResourceMetadata.Value
	for len(path) > 0 {
		key := path
		rest := ""
		for i := 0; i < len(path); i++ {
			if path[i] == '.' {
				key, rest = path[:i], path[i+1:]
				break
			}
		}
		if v.Kind() != MapValue {
			return Value{}, false
		}
		next, ok := v.Map().Get(key)
		if !ok {
			return Value{}, false
		}
		v, path = next, rest
	}
	return v, true
}
