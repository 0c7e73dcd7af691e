//! Topic names and `regex_topic` patterns, checked before any client is made: librdkafka only
//! says "Invalid argument or configuration" when it is given one Kafka rejects.

/// Kafka's longest topic name.
const MAX_TOPIC_NAME: usize = 249;

/// Why Kafka would reject `name` as a topic name, in words a user knows.
pub(crate) fn topic_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("a topic name cannot be empty".to_owned());
    }
    if name == "." || name == ".." {
        return Some("a topic cannot be named \".\" or \"..\"".to_owned());
    }
    if name.len() > MAX_TOPIC_NAME {
        return Some(format!("a topic name has at most {MAX_TOPIC_NAME} characters, this one {}", name.len()));
    }
    let invalid = |c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    name.chars()
        .find(|c| invalid(*c))
        .map(|c| format!("a topic name may hold only letters a-z and A-Z, digits, '.', '_' and '-', not {c:?}"))
}

/// Why `pattern` is not a regular expression, on one line.
pub(crate) fn pattern_problem(pattern: &str) -> Option<String> {
    if pattern.trim_start_matches('^').is_empty() {
        return Some("an empty pattern would match every topic".to_owned());
    }
    let err = regex::Regex::new(pattern).err()?;
    // The regex crate draws the pattern with a caret under the fault; its last line says what.
    let text = err.to_string();
    let what = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(&text).trim();
    Some(format!("not a valid regular expression ({})", what.trim_start_matches("error: ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafkas_rules() {
        assert_eq!(topic_name_problem("orders.v1_a-b"), None);
        assert_eq!(topic_name_problem("").as_deref(), Some("a topic name cannot be empty"));
        assert!(topic_name_problem("..").is_some());
        assert!(topic_name_problem(&"a".repeat(249)).is_none());
        assert!(topic_name_problem(&"a".repeat(250)).unwrap().contains("at most 249"));
        assert!(topic_name_problem("a b").unwrap().contains("not ' '"));
        assert!(topic_name_problem("é").is_some());
    }

    #[test]
    fn a_pattern_must_be_a_regex() {
        assert_eq!(pattern_problem("^events-.*"), None);
        assert_eq!(pattern_problem("(").as_deref(), Some("not a valid regular expression (unclosed group)"));
        assert!(pattern_problem("").is_some());
    }
}
