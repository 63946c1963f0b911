;; json-echo.wat: a plugin that asks for its batches as JSON (the
;; `collector_batch_format_json` marker, docs/ABI.md section 5.9), for languages
;; with a JSON parser but no decoder for the binary layout. It logs the first
;; 40 bytes of every batch it gets: "wat-json: [{"source":"openstack",…".
(module
  (import "collector" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "wat-json: ")
  (global $heap i32 (i32.const 1024))
  (func (export "collector_abi_version_1"))
  ;; The marker: present = batches arrive as a JSON array of sample dicts.
  (func (export "collector_batch_format_json"))
  (func (export "collector_alloc") (param $len i32) (result i32)
    (local $missing i64)
    (local.set $missing
      (i64.sub (i64.add (i64.extend_i32_u (global.get $heap)) (i64.extend_i32_u (local.get $len)))
               (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16))))
    (if (i64.gt_s (local.get $missing) (i64.const 0))
      (then
        (if (i32.eq (memory.grow (i32.wrap_i64 (i64.shr_u (i64.add (local.get $missing) (i64.const 65535))
                                                          (i64.const 16))))
                    (i32.const -1))
          (then (return (i32.const 0))))))
    (global.get $heap))
  (func (export "collector_init") (param $ptr i32) (param $len i32) (result i32)
    (i32.const 0))
  (func (export "collector_dispatch") (param $ptr i32) (param $len i32) (result i32)
    (local $n i32)
    ;; n = min(len, 40); line = "wat-json: " (10 bytes) + the first n bytes, at 100
    (local.set $n (select (local.get $len) (i32.const 40) (i32.lt_u (local.get $len) (i32.const 40))))
    (memory.copy (i32.const 100) (i32.const 16) (i32.const 10))
    (memory.copy (i32.const 110) (local.get $ptr) (local.get $n))
    (call $log (i32.const 3) (i32.const 100) (i32.add (local.get $n) (i32.const 10)))
    (i32.const 0)))
