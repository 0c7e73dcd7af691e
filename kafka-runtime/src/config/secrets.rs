//! Secrets: which client settings hold one, and the process-wide list of their values, masked
//! wherever they would otherwise be printed (the `config` listing, error messages, log lines).
//! librdkafka and serde echo a rejected value in their error text, so masking by key is not
//! enough: every configured secret value is replaced wherever it appears.

use std::borrow::Cow;
use std::sync::RwLock;

/// What a secret is shown as.
pub const MASK: &str = "*****";

/// Parts of a setting's name that make it a secret, lower case: every `*password*`,
/// `*secret*` and `*token*` key, the JAAS and OAUTHBEARER configurations (they carry
/// credentials), and private keys (`ssl.key.pem`, `ssl_key`).
const SECRET_KEY_PARTS: &[&str] =
    &["password", "secret", "token", "sasl.jaas.config", "sasl.oauthbearer.config", "key.pem", "ssl_key"];

/// Values shorter than this are masked by key only, not searched for in free text: masking
/// every `1` or `abc` in a log line would garble it.
const MIN_MASKED_LEN: usize = 4;

/// Is a setting of this name a secret? Its name, in any case, contains one of
/// [`SECRET_KEY_PARTS`].
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_PARTS.iter().any(|part| key.contains(part))
}

/// Is this setting, with this value, a secret? Also a value that holds a PEM private key,
/// whatever its key.
pub fn is_secret_setting(key: &str, value: &str) -> bool {
    is_secret(key) || (value.contains("-----BEGIN") && value.contains("PRIVATE KEY"))
}

fn known() -> &'static RwLock<Vec<String>> {
    static KNOWN: RwLock<Vec<String>> = RwLock::new(Vec::new());
    &KNOWN
}

/// Remembers a secret value, to be masked in everything printed from now on.
pub(crate) fn remember(value: &str) {
    if value.len() < MIN_MASKED_LEN {
        return;
    }
    let mut known = known().write().unwrap_or_else(|e| e.into_inner());
    if !known.iter().any(|v| v == value) {
        known.push(value.to_owned());
        // Longest first, so that a secret containing another is masked whole.
        known.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }
}

/// Remembers the value of a setting if it is a secret.
pub(crate) fn remember_setting(key: &str, value: &str) {
    if is_secret_setting(key, value) {
        remember(value);
    }
}

/// Remembers every string and number under a secret key anywhere in a JSON document (the
/// configuration file as written, before it is checked, so that even a value of the wrong
/// type is masked in the error about it).
pub(crate) fn remember_in_json(json: &serde_json::Value) {
    fn all_scalars(json: &serde_json::Value) {
        match json {
            serde_json::Value::String(s) => remember(s),
            serde_json::Value::Number(n) => remember(&n.to_string()),
            serde_json::Value::Array(items) => items.iter().for_each(all_scalars),
            serde_json::Value::Object(map) => map.values().for_each(all_scalars),
            serde_json::Value::Bool(_) | serde_json::Value::Null => {}
        }
    }
    match json {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match value {
                    serde_json::Value::String(s) if is_secret_setting(key, s) => remember(s),
                    _ if is_secret(key) => all_scalars(value),
                    _ => remember_in_json(value),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(remember_in_json),
        _ => {}
    }
}

/// `text` with every remembered secret value replaced by [`MASK`].
pub fn redact(text: &str) -> Cow<'_, str> {
    let known = known().read().unwrap_or_else(|e| e.into_inner());
    let mut text = Cow::Borrowed(text);
    for secret in known.iter() {
        if text.contains(secret.as_str()) {
            text = Cow::Owned(text.replace(secret.as_str(), MASK));
        }
    }
    text
}

/// What a setting's value is shown as in listings.
pub(crate) fn shown<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret_setting(key, value) {
        MASK
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_are_recognised_in_any_case() {
        for key in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "ssl.truststore.password",
            "sasl.oauthbearer.client.secret",
            "ssl.key.pem",
            "sasl.jaas.config",
            "sasl.oauthbearer.config",
            "Sasl.Password",
        ] {
            assert!(is_secret(key), "{key}");
        }
        for key in ["session.timeout.ms", "ssl.ca.location", "ssl.certificate.pem", "sasl.username"] {
            assert!(!is_secret(key), "{key}");
        }
        assert!(is_secret_setting("ssl.certificate.pem", "-----BEGIN PRIVATE KEY-----\nMII"));
    }

    #[test]
    fn remembered_values_are_masked_wherever_they_appear() {
        remember("REDACT-me-1");
        remember("REDACT-me-1-longer");
        remember("abc");
        let text = "bad value REDACT-me-1-longer and REDACT-me-1 (abc)";
        assert_eq!(redact(text), "bad value ***** and ***** (abc)");
        remember_in_json(&serde_json::json!({"kafka": {"x": {"sasl.password": ["JSON-secret-2"], "other": "ok-val"}}}));
        assert_eq!(redact("JSON-secret-2 ok-val"), "***** ok-val");
    }
}
