//go:build wasip1

package collector

import "unsafe"

//go:wasmimport collector log
func importLog(level int32, ptr unsafe.Pointer, n int32)

//go:wasmimport collector set_error
func importSetError(ptr unsafe.Pointer, n int32)

func ptrOf(s string) unsafe.Pointer {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.StringData(s))
}

func hostLog(level int32, msg string) { importLog(level, ptrOf(msg), int32(len(msg))) }

func hostSetError(msg string) { importSetError(ptrOf(msg), int32(len(msg))) }

//go:wasmexport collector_abi_version_1
func abiVersion1() {}

// The buffer of the last collector_alloc: the host writes into it, then
// passes it to the next call, which takes it over. Held here so that the GC
// keeps it meanwhile.
var pending []byte

// snapshot is the last state handed out; it stays valid until the next call.
var snapshot []byte

var empty [8]byte

//go:wasmexport collector_alloc
func collectorAlloc(n int32) int32 {
	if n <= 0 {
		pending = nil
		return int32(uintptr(unsafe.Pointer(&empty[0])))
	}
	pending = make([]byte, n)
	return int32(uintptr(unsafe.Pointer(&pending[0])))
}

// take hands the pending buffer to the call that receives it.
func take(ptr, n int32) []byte {
	b := pending
	pending = nil
	if n <= 0 || len(b) < int(n) || int32(uintptr(unsafe.Pointer(&b[0]))) != ptr {
		return nil
	}
	return b[:n]
}

//go:wasmexport collector_init
func collectorInit(ptr, n int32) int32 { return callInit(take(ptr, n)) }

//go:wasmexport collector_dispatch
func collectorDispatch(ptr, n int32) int32 { return callDispatch(take(ptr, n)) }

//go:wasmexport collector_snapshot
func collectorSnapshot() int64 {
	snapshot = callSnapshot()
	if len(snapshot) == 0 {
		return 0
	}
	return int64(uintptr(unsafe.Pointer(&snapshot[0])))<<32 | int64(len(snapshot))
}

//go:wasmexport collector_restore
func collectorRestore(ptr, n int32) int32 { return callRestore(take(ptr, n)) }
