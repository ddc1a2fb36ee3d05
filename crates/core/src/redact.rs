//! Server-side detail kept out of answers: 5xx messages go to clients that must not learn the server's
//! directory layout (data directory, model cache, virtualenv), while the full message stays in the log.

/// Replaces every absolute filesystem path in `message` with `.../` and its last component, so an answer
/// still says which file failed without showing where the server keeps it. URLs are left alone.
pub fn redact_server_paths(message: &str) -> String {
    let mut redacted = String::with_capacity(message.len());
    let mut previous: Option<char> = None;
    let mut characters = message.char_indices().peekable();
    while let Some((start, character)) = characters.next() {
        let starts_path = character == '/' && previous.is_none_or(opens_a_path);
        if !starts_path {
            redacted.push(character);
            previous = Some(character);
            continue;
        }
        let mut end = start + character.len_utf8();
        while let Some(&(index, next)) = characters.peek() {
            if ends_a_path(next) {
                break;
            }
            end = index + next.len_utf8();
            characters.next();
        }
        let path = &message[start..end];
        let components: Vec<&str> = path.split('/').filter(|component| !component.is_empty()).collect();
        match components.as_slice() {
            [_, .., last] => {
                redacted.push_str(".../");
                redacted.push_str(last);
            }
            _ => redacted.push_str(path),
        }
        previous = path.chars().last();
    }
    redacted
}

fn opens_a_path(previous: char) -> bool {
    previous.is_whitespace() || matches!(previous, '\'' | '"' | '`' | '(' | '[' | '{' | '=' | ',')
}

fn ends_a_path(character: char) -> bool {
    character.is_whitespace() || matches!(character, '\'' | '"' | '`' | ')' | ']' | '}' | ',' | ';' | ':')
}

/// The user part of a URL (`user:password`) and the password alone, to be kept out of messages.
pub fn url_secrets(url: &str) -> Vec<String> {
    let Some((_, rest)) = url.split_once("://") else {
        return Vec::new();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let Some((user_part, _)) = authority.rsplit_once('@') else {
        return Vec::new();
    };
    let mut secrets = vec![user_part.to_string()];
    if let Some((_, password)) = user_part.split_once(':') {
        secrets.push(password.to_string());
    }
    secrets.retain(|secret| !secret.is_empty());
    secrets
}

/// A message with the URL's secrets replaced.
pub fn scrubbed(message: String, secrets: &[String]) -> String {
    secrets
        .iter()
        .fold(message, |message, secret| message.replace(secret.as_str(), "***"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths_lose_their_directories() {
        assert_eq!(
            redact_server_paths("artifact storage failed for '/srv/loopline-data/artifacts/1/x/model.pkl': denied"),
            "artifact storage failed for '.../model.pkl': denied"
        );
        assert_eq!(
            redact_server_paths("File \"/home/me/.venv/lib/python3.11/site-packages/mlflow/pyfunc.py\", line 3"),
            "File \".../pyfunc.py\", line 3"
        );
        assert_eq!(
            redact_server_paths("cannot read /tmp/model-abc/MLmodel (no such file)"),
            "cannot read .../MLmodel (no such file)"
        );
        assert_eq!(redact_server_paths("/x failed"), "/x failed");
        assert_eq!(
            redact_server_paths("see http://host:5000/api/2.0/x and s3://bucket/a/b"),
            "see http://host:5000/api/2.0/x and s3://bucket/a/b"
        );
        assert_eq!(redact_server_paths("ratio 1/2 é/ü/x"), "ratio 1/2 é/ü/x");
        assert_eq!(redact_server_paths("é /ü/ß/x"), "é .../x");
    }
}
