//! The `noop` dispatcher, for benchmarks: decodes every sample (borrowed view by
//! default, `config = { view = "owned" }` for owned values, `"none"` to skip
//! decoding) and keeps a running sum so that nothing is optimised away.

use collector_sdk::{Batch, Config, Dispatcher, Outcome};

enum View {
    Borrowed,
    Owned,
    None,
}

struct Noop {
    view: View,
    checksum: u64,
}

impl Dispatcher for Noop {
    fn init(config: Config<'_>) -> Result<Self, String> {
        let view = match config.get_str("view").as_deref() {
            None | Some("borrowed") => View::Borrowed,
            Some("owned") => View::Owned,
            Some("none") => View::None,
            Some(other) => {
                return Err(format!(
                    "view must be borrowed, owned or none, not {other:?}"
                ));
            }
        };
        Ok(Noop { view, checksum: 0 })
    }

    fn dispatch(&mut self, batch: Batch<'_>) -> Outcome {
        match self.view {
            View::Borrowed => {
                for s in batch.samples() {
                    match s {
                        Ok(s) => {
                            self.checksum = self
                                .checksum
                                .wrapping_add(s.counter_name.len() as u64)
                                .wrapping_add(s.counter_volume.map_or(0, |v| v.as_f64() as u64));
                        }
                        Err(e) => return Outcome::Reject(e.to_string()),
                    }
                }
            }
            View::Owned => match batch.to_owned() {
                Ok(samples) => {
                    for s in &samples {
                        self.checksum = self
                            .checksum
                            .wrapping_add(s.counter_name.len() as u64)
                            .wrapping_add(s.counter_volume.map_or(0, |v| v.as_f64() as u64));
                    }
                }
                Err(e) => return Outcome::Reject(e.to_string()),
            },
            View::None => self.checksum = self.checksum.wrapping_add(batch.bytes().len() as u64),
        }
        Outcome::Ok
    }
}

collector_sdk::export_dispatcher!(Noop);
