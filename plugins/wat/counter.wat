;; counter.wat: a dispatcher written by hand in WebAssembly text, line by line
;; against docs/ABI.md. For every batch it logs "wat-counter: N samples" through
;; the host (collector.log, level INFO) and accepts the batch.
;;
;; Build: nothing to build (the daemon compiles WAT text), or `wat2wasm counter.wat`.
;; Check: collector check plugins/wat/counter.wat
(module
  ;; collector.log(level, ptr, len): one log line in the daemon's log.
  (import "collector" "log" (func $log (param i32 i32 i32)))

  ;; One 64 KiB page to start, exported as `memory` (ABI v1 requires it).
  (memory (export "memory") 1)

  ;; Bytes 16..28: the fixed start of the log line; 64..127: the line being built.
  (data (i32.const 16) "wat-counter: ")
  (data (i32.const 32) " samples")

  ;; The heap starts at 1024; batches are copied there.
  (global $heap i32 (i32.const 1024))

  ;; ABI v1 marker: its presence is what counts; the host never calls it.
  (func (export "collector_abi_version_1"))

  ;; collector_alloc(len) -> ptr (0 on failure). The host holds one buffer at a
  ;; time and is done with it when init/dispatch returns, so every allocation
  ;; starts over at $heap; memory grows only for a larger buffer than ever before.
  (func (export "collector_alloc") (param $len i32) (result i32)
    (local $missing i64)
    ;; missing = heap + len - current size in bytes (as i64: no overflow)
    (local.set $missing
      (i64.sub (i64.add (i64.extend_i32_u (global.get $heap)) (i64.extend_i32_u (local.get $len)))
               (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16))))
    (if (i64.gt_s (local.get $missing) (i64.const 0))
      (then
        ;; grow by ceil(missing / 65536) pages; -1 means no more memory
        (if (i32.eq (memory.grow (i32.wrap_i64 (i64.shr_u (i64.add (local.get $missing) (i64.const 65535))
                                                          (i64.const 16))))
                    (i32.const -1))
          (then (return (i32.const 0))))))
    (global.get $heap))

  ;; collector_init(ptr, len) -> status: the config JSON is not needed. 0 = OK.
  (func (export "collector_init") (param $ptr i32) (param $len i32) (result i32)
    (i32.const 0))

  ;; collector_dispatch(ptr, len) -> status. A batch starts with its sample
  ;; count, a u64 little-endian (docs/ABI.md section 9.2).
  (func (export "collector_dispatch") (param $ptr i32) (param $len i32) (result i32)
    (local $n i64) (local $end i32) (local $p i32) (local $digits i32)
    ;; a batch shorter than its header is refused: status 2 (REJECT)
    (if (i32.lt_u (local.get $len) (i32.const 8)) (then (return (i32.const 2))))
    (local.set $n (i64.load align=1 (local.get $ptr)))
    ;; write the decimal digits of n backwards, ending at byte 96
    (local.set $end (i32.const 96))
    (local.set $p (local.get $end))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i64.store8 (local.get $p) (i64.add (i64.const 48) (i64.rem_u (local.get $n) (i64.const 10))))
      (local.set $n (i64.div_u (local.get $n) (i64.const 10)))
      (br_if $digit (i64.ne (local.get $n) (i64.const 0))))
    (local.set $digits (i32.sub (local.get $end) (local.get $p)))
    ;; line = "wat-counter: " (13 bytes) + digits + " samples" (8 bytes), built at 100
    (memory.copy (i32.const 100) (i32.const 16) (i32.const 13))
    (memory.copy (i32.const 113) (local.get $p) (local.get $digits))
    (memory.copy (i32.add (i32.const 113) (local.get $digits)) (i32.const 32) (i32.const 8))
    (call $log (i32.const 3) (i32.const 100) (i32.add (local.get $digits) (i32.const 21)))
    (i32.const 0)))
