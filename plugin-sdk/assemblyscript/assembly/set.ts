// A set of byte strings that point into memory the caller keeps alive (typically
// the batch): count distinct meters, resources or projects per batch without
// allocating a string per sample. clear() it for the next batch.

import { bytesEqual, fnv1a } from "./utf8";
import { Utf8 } from "./batch";

// Slot layout: ptr (u32), len (u32), hash (u32). ptr == 0 marks an empty slot.
const SLOT: usize = 12;

export class Utf8Set {
  private slots: usize = 0;
  private mask: u32 = 0;
  /** Number of distinct byte strings added since the last clear(). */
  size: i32 = 0;

  constructor(initialCapacity: i32 = 64) {
    let cap: u32 = 16;
    while (<i32>cap < initialCapacity * 2) cap <<= 1;
    this.alloc(cap);
  }

  private alloc(cap: u32): void {
    this.slots = heap.alloc(<usize>cap * SLOT);
    memory.fill(this.slots, 0, <usize>cap * SLOT);
    this.mask = cap - 1;
  }

  /** Empties the set, keeping its table. */
  clear(): void {
    if (this.size == 0) return;
    memory.fill(this.slots, 0, (<usize>this.mask + 1) * SLOT);
    this.size = 0;
  }

  /** Adds the bytes `[ptr, ptr + len)` (not copied); true when they were not in the set yet. */
  add(ptr: usize, len: usize): bool {
    if (ptr == 0) return false; // never a batch address; 0 marks empty slots
    const h = fnv1a(ptr, len);
    let i = h & this.mask;
    while (true) {
      const s = this.slots + <usize>i * SLOT;
      const sp = <usize>load<u32>(s);
      if (sp == 0) {
        store<u32>(s, <u32>ptr);
        store<u32>(s, <u32>len, 4);
        store<u32>(s, h, 8);
        this.size++;
        if (<u32>this.size * 2 > this.mask + 1) this.grow();
        return true;
      }
      if (load<u32>(s, 8) == h && bytesEqual(sp, <usize>load<u32>(s, 4), ptr, len)) return false;
      i = (i + 1) & this.mask;
    }
  }

  /** Adds a view's bytes (absent and null views are not added). */
  addUtf8(u: Utf8): bool {
    return u.isPresent && this.add(u.ptr, u.len);
  }

  /** Are the bytes in the set? */
  has(ptr: usize, len: usize): bool {
    const h = fnv1a(ptr, len);
    let i = h & this.mask;
    while (true) {
      const s = this.slots + <usize>i * SLOT;
      const sp = <usize>load<u32>(s);
      if (sp == 0) return false;
      if (load<u32>(s, 8) == h && bytesEqual(sp, <usize>load<u32>(s, 4), ptr, len)) return true;
      i = (i + 1) & this.mask;
    }
  }

  private grow(): void {
    const old = this.slots;
    const oldCap = this.mask + 1;
    this.alloc(oldCap << 1);
    for (let j: u32 = 0; j < oldCap; j++) {
      const s = old + <usize>j * SLOT;
      if (load<u32>(s) == 0) continue;
      let i = load<u32>(s, 8) & this.mask;
      while (load<u32>(this.slots + <usize>i * SLOT) != 0) i = (i + 1) & this.mask;
      memory.copy(this.slots + <usize>i * SLOT, s, SLOT);
    }
    heap.free(old);
  }
}
