//! Environment variables named in client settings: `"sasl.password": "${KAFKA_SASL_PASSWORD}"`
//! takes the value from the environment when the configuration is loaded, so that secrets
//! stay out of the file. `$${` writes a literal `${`.

use super::file::Settings;
use crate::error::Error;

/// Replaces every `${NAME}` in the values of `settings` with the variable's value. `at` names
/// the settings object in errors (`config.json: kafka.connection_settings`); `lookup` reads a
/// variable.
pub(crate) fn resolve(settings: &mut Settings, at: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<(), Error> {
    for (key, value) in settings.iter_mut() {
        if value.0.contains('$') {
            value.0 =
                expand(&value.0, lookup).map_err(|problem| Error::Config(format!("{at}.\"{key}\": {problem}")))?;
        }
    }
    Ok(())
}

fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                return Err("`${` without a closing `}`; write `$${` for a literal `${`".into());
            };
            let name = &after[..end];
            if !is_variable_name(name) {
                // The text is not echoed: it may be part of a secret.
                return Err("a `${` is not followed by an environment variable name (letters, digits and \
                            `_`, not starting with a digit) and `}`; write `$${` for a literal `${`"
                    .into());
            }
            match lookup(name) {
                Some(value) => out.push_str(&value),
                None => {
                    return Err(format!(
                        "the environment variable {name} is not set; export it, or put the value in the file"
                    ))
                }
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SettingValue;

    fn lookup(name: &str) -> Option<String> {
        (name == "PW").then(|| "s3cr3t".to_owned())
    }

    fn resolved(value: &str) -> Result<String, String> {
        let mut settings = Settings::new();
        settings.insert("sasl.password".into(), SettingValue(value.into()));
        resolve(&mut settings, "config.json: kafka.connection_settings", &lookup).map_err(|err| err.to_string())?;
        Ok(settings["sasl.password"].0.clone())
    }

    #[test]
    fn variables_are_replaced_anywhere_in_the_value() {
        assert_eq!(resolved("${PW}").unwrap(), "s3cr3t");
        assert_eq!(resolved("user=\"u\" password=\"${PW}\";").unwrap(), "user=\"u\" password=\"s3cr3t\";");
        assert_eq!(resolved("a$b $${PW} $").unwrap(), "a$b ${PW} $");
    }

    #[test]
    fn a_missing_variable_names_it_and_the_key() {
        let err = resolved("${KAFKA_SASL_PASSWORD}").unwrap_err();
        assert_eq!(
            err,
            "config.json: kafka.connection_settings.\"sasl.password\": the environment variable \
             KAFKA_SASL_PASSWORD is not set; export it, or put the value in the file"
        );
        assert!(resolved("${PW").unwrap_err().contains("without a closing `}`"));
        assert!(resolved("${1X}").unwrap_err().contains("is not followed by an environment variable name"));
    }
}
