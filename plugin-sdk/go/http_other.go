//go:build !wasip1

package collector

import "time"

// Outside wasm there is no host: every request is refused as unavailable.
func httpSend([]byte) int32                   { return HTTPErrUnavailable }
func httpWait([]int32, time.Duration) int32   { return httpWaitNone }
func httpStatus(int32) int32                  { return HTTPErrNoHandle }
func httpBody(int32) []byte                   { return nil }
func httpHeader(int32, string) (string, bool) { return "", false }
func httpError(int32) string                  { return "no outbound HTTP outside the host" }
func httpClose(int32)                         {}
