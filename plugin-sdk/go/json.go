package collector

import (
	"math"
	"strconv"
	"strings"
)

// AppendJSON appends the sample as the dict Ceilometer sent (ABI §12, Python
// style): its fifteen keys in order, absent ones left out, then the extra
// keys; integers and floats kept apart; NaN and infinities as Python's json
// writes them.
func AppendJSON(dst []byte, s *Sample) []byte {
	dst = append(dst, '{')
	key := func(k string) {
		if dst[len(dst)-1] != '{' {
			dst = append(dst, ',')
		}
		dst = AppendString(dst, k)
		dst = append(dst, ':')
	}
	str := func(k, v string) {
		key(k)
		dst = AppendString(dst, v)
	}
	opt := func(k string, v OptString) {
		switch v.Presence {
		case Null:
			key(k)
			dst = append(dst, "null"...)
		case Present:
			str(k, v.Value)
		}
	}
	num := func(k string, v OptNumber) {
		switch v.Presence {
		case Null:
			key(k)
			dst = append(dst, "null"...)
		case Present:
			key(k)
			dst = AppendNumber(dst, v.Value)
		}
	}
	str("source", s.Source)
	str("counter_name", s.CounterName)
	str("counter_type", s.CounterType)
	str("counter_unit", s.CounterUnit)
	num("counter_volume", s.CounterVolume)
	opt("user_id", s.UserID)
	opt("user_name", s.UserName)
	opt("project_id", s.ProjectID)
	opt("project_name", s.ProjectName)
	str("resource_id", s.ResourceID)
	str("timestamp", s.Timestamp)
	if s.ResourceMetadata.Presence == Present {
		key("resource_metadata")
		dst = AppendValueJSON(dst, s.ResourceMetadata.Value)
	}
	str("message_id", s.MessageID)
	num("monotonic_time", s.MonotonicTime)
	opt("message_signature", s.MessageSignature)
	s.Extra.Each(func(k string, v Value) bool {
		key(k)
		dst = AppendValueJSON(dst, v)
		return true
	})
	return append(dst, '}')
}

// AppendValueJSON appends one value as JSON (bytes as lossy UTF-8 text).
func AppendValueJSON(dst []byte, v Value) []byte {
	switch v.Kind() {
	case NullValue:
		return append(dst, "null"...)
	case BoolValue:
		return strconv.AppendBool(dst, v.Bool())
	case IntValue:
		return strconv.AppendInt(dst, v.Int(), 10)
	case UIntValue:
		return strconv.AppendUint(dst, v.UInt(), 10)
	case FloatValue:
		return AppendFloat(dst, v.Float())
	case StrValue:
		return AppendString(dst, v.Str())
	case BytesValue:
		return AppendString(dst, strings.ToValidUTF8(v.Str(), "\uFFFD"))
	case ListValue:
		dst = append(dst, '[')
		first := true
		v.Items(func(item Value) bool {
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = AppendValueJSON(dst, item)
			return true
		})
		return append(dst, ']')
	}
	dst = append(dst, '{')
	first := true
	v.Map().Each(func(k string, item Value) bool {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = AppendString(dst, k)
		dst = append(dst, ':')
		dst = AppendValueJSON(dst, item)
		return true
	})
	return append(dst, '}')
}

// AppendNumber appends a Number: integers without a point, floats as AppendFloat writes them.
func AppendNumber(dst []byte, n Number) []byte {
	switch n.Kind {
	case Int:
		return strconv.AppendInt(dst, n.I, 10)
	case UInt:
		return strconv.AppendUint(dst, n.U, 10)
	}
	return AppendFloat(dst, n.F)
}

// AppendFloat appends f in the shortest form that reads back as f, always
// with a `.` or an exponent (`512.0`, `1e-05`), NaN and infinities as
// Python writes them.
func AppendFloat(dst []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, "NaN"...)
	case math.IsInf(f, 1):
		return append(dst, "Infinity"...)
	case math.IsInf(f, -1):
		return append(dst, "-Infinity"...)
	}
	// Python's repr: the shortest digits, in fixed notation when the decimal
	// exponent is from -4 to 15, in exponent notation (1e+16, 1e-05) otherwise.
	var scratch [32]byte
	e := strconv.AppendFloat(scratch[:0], f, 'e', -1, 64)
	exp, _ := strconv.Atoi(string(e[strings.IndexByte(string(e), 'e')+1:]))
	if exp < -4 || exp >= 16 {
		return append(dst, e...)
	}
	start := len(dst)
	dst = strconv.AppendFloat(dst, f, 'f', -1, 64)
	if !strings.Contains(string(dst[start:]), ".") {
		dst = append(dst, ".0"...)
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string, escaped as ABI §12 says.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20 || c == 0x7f:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
