//! JSON config files (`--config FILE`). Flags override the file: a program reads the file into its
//! own `#[serde(default)]` struct, then lets each flag that was given replace the file's value.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Read a JSON config file into `T`. Unknown keys are the struct's business (`deny_unknown_fields`
/// where a typo should be caught); a syntax or type error names the file, line and column. A bad
/// config is a usage error (exit 2).
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("cannot read config {}", path.display()), e))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::usage(format!(
            "config {}: line {} column {}: {}",
            path.display(),
            e.line(),
            e.column(),
            crate::input::describe_json_error(&text, &e)
        ))
    })
}

/// Load the file when one was named, else the defaults.
pub fn load_or_default<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T> {
    path.map_or_else(|| Ok(T::default()), load)
}

/// Split `redis://HOST:PORT/KEY`, given as `flag`, into the connection URL and the key (`allocate --inventory`; `reprice --redis` and `ticker --redis`, whose key is a
/// stream).
pub fn split_redis_url(flag: &str, url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| Error::usage(format!("{flag} {url}: not a redis:// URL")))?;
    match rest.split_once('/') {
        Some((host, key)) if !host.is_empty() && !key.is_empty() => {
            Ok((format!("redis://{host}/"), key.to_string()))
        }
        _ => Err(Error::usage(format!(
            "{flag} {url}: give the key as redis://HOST:PORT/KEY"
        ))),
    }
}
