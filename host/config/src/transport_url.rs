//! oslo.messaging's `transport_url`, as `ceilometer.conf` writes it, into one
//! AMQP URI per broker host (what lapin connects to).
//!
//! `rabbit://user:pass@host1:5672,user:pass@host2:5672/vhost` names several
//! hosts, each with its credentials; the source connects to them in turn (oslo's
//! round-robin). Hand-written because no URL parser reads a list of authorities:
//! this follows oslo's `TransportURL.parse` and the rabbit driver's
//! `_transform_transport_url` step by step (the netloc split at `,`, each host's
//! credentials up to its last `@`, the user and password percent-decoded, port
//! 5672 when none is given, the virtual host from the path). The URIs are then
//! built with the `url` crate, which encodes what must be encoded.
//!
//! Only `rabbit://` is read this way: that is oslo's scheme for RabbitMQ (its
//! `amqp://` is the AMQP 1.0 driver). An `amqp://` or `amqps://` URL is lapin's:
//! one host, passed as it is written (with lapin's query parameters, such as
//! `heartbeat`, and a password that may hold raw `@` and `,`), as before.

/// One broker host: the URI lapin connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUri(pub String);

/// The AMQP URIs a `transport_url` (or a plain `amqp://` URL) names, in order.
/// With `ssl`, every URI of a `rabbit://` URL is `amqps://` (oslo's
/// `[oslo_messaging_rabbit] ssl`).
///
/// # Errors
/// What is wrong with the URL, without its credentials.
pub fn broker_uris(url: &str, ssl: bool) -> Result<Vec<BrokerUri>, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("must start with rabbit://, amqp:// or amqps://".into());
    };
    match scheme {
        "amqp" | "amqps" => return Ok(vec![BrokerUri(url.to_owned())]),
        "rabbit" | "kombu+rabbit" => {}
        _ => return Err("must start with rabbit://, amqp:// or amqps://".into()),
    }
    // urlparse: the netloc ends at the first `/`, `?` or `#`.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (netloc, tail) = rest.split_at(end);
    let path = tail.split(['?', '#']).next().unwrap_or("");
    let vhost = match path.strip_prefix('/') {
        Some(v) if !v.is_empty() => percent_decode(v)?,
        _ => "/".to_owned(),
    };
    let mut uris = Vec::new();
    for (n, host) in netloc.split(',').enumerate() {
        if host.is_empty() {
            continue;
        }
        let (user, password, hostport) = match host.rsplit_once('@') {
            Some((userinfo, hostport)) => match userinfo.split_once(':') {
                Some((u, p)) => (percent_decode(u)?, percent_decode(p)?, hostport),
                None => (percent_decode(userinfo)?, "guest".to_owned(), hostport),
            },
            None => ("guest".to_owned(), "guest".to_owned(), host),
        };
        let (hostname, port) = host_port(hostport)
            .ok_or_else(|| format!("host {} ({hostport:?}) has a bad port", n + 1))?;
        if hostname.is_empty() {
            return Err(format!("host {} has no name", n + 1));
        }
        let scheme = if ssl { "amqps" } else { "amqp" };
        let mut u = url::Url::parse(&format!("{scheme}://{hostname}:{port}/"))
            .map_err(|e| format!("host {} ({hostname}): {e}", n + 1))?;
        u.set_username(&user)
            .and_then(|()| u.set_password(Some(&password)))
            .map_err(|()| format!("host {}: cannot hold credentials", n + 1))?;
        // lapin reads the vhost percent-decoded from the path.
        let encoded: String = url::form_urlencoded::byte_serialize(vhost.as_bytes())
            .collect::<String>()
            .replace('+', "%20");
        u.set_path(&encoded);
        uris.push(BrokerUri(u.to_string()));
    }
    if uris.is_empty() {
        return Err("names no host".into());
    }
    Ok(uris)
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` (oslo's `netutils.parse_host_port`),
/// with 5672 for a missing port; `None` for a port that is not a number.
fn host_port(s: &str) -> Option<(String, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 5672,
            None => return None,
        };
        return Some((format!("[{addr}]"), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Some((h.to_owned(), p.parse().ok()?)),
        None => Some((s.to_owned(), 5672)),
    }
}

/// Python's `urllib.parse.unquote` for what it accepts here (invalid UTF-8 is
/// an error rather than replaced).
fn percent_decode(s: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| "holds a percent-encoded sequence that is not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uris(url: &str, ssl: bool) -> Vec<String> {
        broker_uris(url, ssl)
            .unwrap()
            .into_iter()
            .map(|u| u.0)
            .collect()
    }

    #[test]
    fn a_three_host_transport_url_becomes_three_uris_as_oslo_reads_it() {
        assert_eq!(
            uris(
                "rabbit://u1:p1@h1:5672,u2:p%40ss@h2:5673,u3:p3@h3/nova?ssl=0",
                false
            ),
            [
                "amqp://u1:p1@h1:5672/nova",
                "amqp://u2:p%40ss@h2:5673/nova",
                "amqp://u3:p3@h3:5672/nova",
            ]
        );
        // No vhost: kombu's `/`; TLS turns every host to amqps.
        assert_eq!(
            uris("rabbit://u:p@h1,u:p@[::1]:5671/", true),
            ["amqps://u:p@h1:5672/%2F", "amqps://u:p@[::1]:5671/%2F"]
        );
        // Hosts without credentials take oslo's defaults (guest/guest).
        assert_eq!(
            uris("rabbit://h1", false),
            ["amqp://guest:guest@h1:5672/%2F"]
        );
    }

    #[test]
    fn an_amqp_url_is_lapins_one_host_kept_as_written() {
        for u in [
            "amqp://u:p@127.0.0.1:5672/%2f?heartbeat=10",
            "amqp://u:s3cr@t,p:wrd@127.0.0.1:5672/%2f",
        ] {
            assert_eq!(uris(u, false), [u]);
        }
    }

    #[test]
    fn bad_urls_are_named_without_their_credentials() {
        for (url, want) in [
            ("http://h", "must start with"),
            ("rabbit://u:secret@h:notaport/", "bad port"),
            ("rabbit://u:secret@:5672/", "no name"),
            ("rabbit:///", "names no host"),
        ] {
            let e = broker_uris(url, false).unwrap_err();
            assert!(e.contains(want), "{url}: {e}");
            assert!(!e.contains("secret"), "{url}: {e}");
        }
    }
}
