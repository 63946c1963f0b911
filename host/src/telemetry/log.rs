//! What a log line may show of what came from outside ([`Untrusted`]), and how
//! often ([`RateLimit`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets through at most `burst` events per `period`, then counts the rest.
#[derive(Debug)]
pub struct RateLimit {
    period: Duration,
    burst: u32,
    state: Mutex<(Instant, u32, u64)>,
}

impl RateLimit {
    pub fn new(burst: u32, period: Duration) -> Self {
        RateLimit {
            period,
            burst,
            state: Mutex::new((Instant::now(), 0, 0)),
        }
    }

    /// `Some(suppressed_since_last)` when this event may be logged.
    pub fn allow(&self) -> Option<u64> {
        let Ok(mut s) = self.state.lock() else {
            return None;
        };
        let now = Instant::now();
        if now.duration_since(s.0) >= self.period {
            *s = (now, 0, s.2);
        }
        if s.1 < self.burst {
            s.1 += 1;
            let suppressed = std::mem::take(&mut s.2);
            Some(suppressed)
        } else {
            s.2 += 1;
            None
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::new(10, Duration::from_secs(10))
    }
}

/// Longest value from outside that a log line shows (bytes of its text before escaping).
pub const MAX_LOGGED_VALUE_BYTES: usize = 256;

/// A value that came from outside (a datagram, a message, a plugin) as logs show it:
/// control characters, line and paragraph separators and bidirectional overrides
/// escaped (`\n`, `\u{1b}`), so that it cannot forge a log line or a terminal
/// sequence; and cut after [`MAX_LOGGED_VALUE_BYTES`] (or the length
/// given to [`Untrusted::capped`]), saying how much was left out.
#[derive(Clone, Copy)]
pub struct Untrusted<'a> {
    text: &'a str,
    max_bytes: usize,
}

#[allow(non_snake_case, reason = "reads like the tuple struct it stands for")]
/// `Untrusted(text)`: the default cap.
pub fn Untrusted(text: &str) -> Untrusted<'_> {
    Untrusted::capped(text, MAX_LOGGED_VALUE_BYTES)
}

impl<'a> Untrusted<'a> {
    pub fn capped(text: &'a str, max_bytes: usize) -> Self {
        Untrusted { text, max_bytes }
    }
}

/// Characters a log line must not carry as they are.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

impl std::fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        let mut used = 0;
        for (i, c) in self.text.char_indices() {
            if used >= self.max_bytes {
                return write!(f, "…(+{} bytes)", self.text.len() - i);
            }
            used += c.len_utf8();
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if needs_escape(c) => write!(f, "\\u{{{:x}}}", u32::from(c))?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_text_cannot_forge_lines() {
        let forged = "m1\n2026-12-01T00:00:00Z  INFO collector: all is well\r\u{1b}[2J\u{202e}";
        let shown = Untrusted(forged).to_string();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(
            shown,
            "m1\\n2026-12-01T00:00:00Z  INFO collector: all is well\\r\\u{1b}[2J\\u{202e}"
        );
        assert_eq!(
            Untrusted(r#"{"k": "a\"b"}"#).to_string(),
            r#"{"k": "a\"b"}"#,
            "JSON text stays as it is"
        );
        assert_eq!(
            Untrusted("plain text, ünïcode").to_string(),
            "plain text, ünïcode"
        );
    }

    #[test]
    fn untrusted_text_is_cut() {
        let long = "x".repeat(10_000);
        let shown = Untrusted(&long).to_string();
        assert_eq!(shown, format!("{}…(+9744 bytes)", "x".repeat(256)));
        assert_eq!(Untrusted::capped("héllo", 2).to_string(), "hé…(+3 bytes)");
    }

    #[test]
    fn rate_limit_counts_what_it_suppresses() {
        let r = RateLimit::new(2, Duration::from_secs(3600));
        assert_eq!(r.allow(), Some(0));
        assert_eq!(r.allow(), Some(0));
        assert_eq!(r.allow(), None);
        assert_eq!(r.allow(), None);
        let s = r.state.lock().map(|s| s.2).unwrap_or(0);
        assert_eq!(s, 2);
    }
}
