//! A batch as a plugin receives it (ABI v1 bytes): the SDK's zero-copy view and
//! the JSON conversion (`collector_batch_format_json`) never panic, and reading
//! every nested value of every sample terminates.
#![no_main]

use collector_sdk::codec::{BatchView, ValueView};
use collector_sdk::json::{batch_to_json, write_sample};
use libfuzzer_sys::fuzz_target;

fn walk(v: &ValueView<'_>, n: &mut usize) {
    *n += 1;
    match v {
        ValueView::List(l) => l.iter().for_each(|x| walk(&x, n)),
        ValueView::Map(m) => m.iter().for_each(|(_, x)| walk(&x, n)),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = batch_to_json(data);
    let Ok(view) = BatchView::new(data) else {
        return;
    };
    let mut n = 0;
    let mut it = view.iter();
    for s in &mut it {
        let Ok(s) = s else { break };
        if let Some(md) = &s.resource_metadata {
            walk(md, &mut n);
        }
        s.extra.iter().for_each(|(_, v)| walk(&v, &mut n));
        let mut line = Vec::new();
        write_sample(&mut line, &s);
    }
    let _ = it.finish();
});
