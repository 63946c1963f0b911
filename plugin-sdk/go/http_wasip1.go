//go:build wasip1

package collector

import (
	"time"
	"unsafe"
)

//go:wasmimport collector http_send
func importHTTPSend(ptr unsafe.Pointer, n int32) int32

//go:wasmimport collector http_wait
func importHTTPWait(handles unsafe.Pointer, count int32, timeoutMs int32) int32

//go:wasmimport collector http_status
func importHTTPStatus(h int32) int32

//go:wasmimport collector http_body_len
func importHTTPBodyLen(h int32) int32

//go:wasmimport collector http_read
func importHTTPRead(h int32, dst unsafe.Pointer, n int32, offset int32) int32

//go:wasmimport collector http_header
func importHTTPHeader(h int32, name unsafe.Pointer, nameLen int32, dst unsafe.Pointer, dstLen int32) int32

//go:wasmimport collector http_error
func importHTTPError(h int32, dst unsafe.Pointer, n int32) int32

//go:wasmimport collector http_close
func importHTTPClose(h int32)

func bytesPtr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

func httpSend(req []byte) int32 { return importHTTPSend(bytesPtr(req), int32(len(req))) }

func httpWait(hs []int32, timeout time.Duration) int32 {
	ms := timeout.Milliseconds()
	if ms > 1<<31-1 {
		ms = 1<<31 - 1
	}
	var p unsafe.Pointer
	if len(hs) > 0 {
		p = unsafe.Pointer(&hs[0])
	}
	return importHTTPWait(p, int32(len(hs)), int32(ms))
}

func httpStatus(h int32) int32 { return importHTTPStatus(h) }

func httpBody(h int32) []byte {
	n := importHTTPBodyLen(h)
	if n <= 0 {
		return nil
	}
	b := make([]byte, n)
	got := importHTTPRead(h, unsafe.Pointer(&b[0]), n, 0)
	if got < 0 {
		return nil
	}
	return b[:got]
}

func httpHeader(h int32, name string) (string, bool) {
	buf := make([]byte, 256)
	for {
		n := importHTTPHeader(h, ptrOf(name), int32(len(name)), unsafe.Pointer(&buf[0]), int32(len(buf)))
		if n < 0 {
			return "", false
		}
		if int(n) <= len(buf) {
			return string(buf[:n]), true
		}
		buf = make([]byte, n)
	}
}

func httpError(h int32) string {
	buf := make([]byte, 1024)
	n := importHTTPError(h, unsafe.Pointer(&buf[0]), int32(len(buf)))
	if n <= 0 {
		return ""
	}
	return string(buf[:n])
}

func httpClose(h int32) { importHTTPClose(h) }
