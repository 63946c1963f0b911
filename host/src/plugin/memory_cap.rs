//! The instance-wide memory cap (`memory_limit_bytes`) as a wasmtime
//! [`ResourceLimiter`]: every linear memory and every table of a store count
//! together, with the response bodies the host holds for the instance
//! ([`MemoryBudget`]). A core module has one memory; a component (Python,
//! JavaScript) has one per core instance inside it, and all of them count.

use std::sync::Arc;

use wasmtime::ResourceLimiter;

use super::memory_budget::MemoryBudget;

/// Bytes wasmtime keeps per table element (a pointer, as its limiter docs say).
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// How many instances, memories and tables one store may create.
#[derive(Debug, Clone, Copy)]
pub struct StoreShape {
    pub instances: usize,
    pub memories: usize,
    pub tables: usize,
}

impl StoreShape {
    /// A core module: one instance, one memory (multi-memory is off), and the
    /// tables reference types allow.
    pub const CORE: StoreShape = StoreShape {
        instances: 1,
        memories: 1,
        tables: 8,
    };
    /// A component: componentize-py's holds about ten core instances (libpython,
    /// its libraries, the WASI adapter), each with its own memory and tables.
    pub const COMPONENT: StoreShape = StoreShape {
        instances: 64,
        memories: 32,
        tables: 64,
    };
}

/// Growth beyond the budget traps, and is reported as a memory refusal.
pub struct MemoryCap {
    pub budget: Arc<MemoryBudget>,
    shape: StoreShape,
    /// The growth last allowed, taken back if wasmtime then fails to grow.
    pending_bytes: usize,
    /// `(total, limit)` of the growth refused, if one was.
    pub refused: Option<(usize, usize)>,
}

impl MemoryCap {
    pub fn new(budget: Arc<MemoryBudget>, shape: StoreShape) -> Self {
        MemoryCap {
            budget,
            shape,
            pending_bytes: 0,
            refused: None,
        }
    }

    /// Grows the total from `current` to `desired` bytes of one memory or table.
    fn grow(&mut self, what: &str, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let delta = desired.saturating_sub(current);
        if let Err(over) = self.budget.grow_wasm(delta) {
            self.refused = Some((over.total_bytes, over.limit_bytes));
            return Err(wasmtime::format_err!(
                "memory limit exceeded: growing a {what} would make the plugin's memories and \
                 tables (with the HTTP responses it holds) {} bytes, memory_limit_bytes is {}",
                over.total_bytes,
                over.limit_bytes
            ));
        }
        self.pending_bytes = delta;
        Ok(true)
    }

    fn grow_failed(&mut self) {
        self.budget.shrink_wasm(self.pending_bytes);
        self.pending_bytes = 0;
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow("linear memory", current, desired)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed();
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let bytes = |n: usize| n.saturating_mul(TABLE_ELEMENT_BYTES);
        self.grow("table", bytes(current), bytes(desired))
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed();
        Ok(())
    }

    fn instances(&self) -> usize {
        self.shape.instances
    }

    fn memories(&self) -> usize {
        self.shape.memories
    }

    fn tables(&self) -> usize {
        self.shape.tables
    }
}
