//go:build !wasip1

package collector

import (
	"fmt"
	"os"
)

// Outside wasm (the SDK's own tests): log lines go to stderr, and the last
// error message is kept for the test to read.
func hostLog(level int32, msg string) { fmt.Fprintf(os.Stderr, "[%d] %s\n", level, msg) }

var lastError string

func hostSetError(msg string) { lastError = msg }
