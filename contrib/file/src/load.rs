//! Reading and parsing one file, and what its content looks like as state.

use std::path::Path;

use sha2::Digest as _;

use crate::config::{File, Format};

/// Larger files are refused rather than shipped as one huge event.
pub const MAX_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Loaded { value: serde_json::Value, id: String, state: String },
    Invalid { error: String, state: String },
    Missing { error: String },
}

impl Outcome {
    /// A short, comparable summary: a file whose state did not change is not reported again.
    pub fn state(&self) -> &str {
        match self {
            Outcome::Loaded { state, .. } | Outcome::Invalid { state, .. } => state,
            Outcome::Missing { .. } => "missing",
        }
    }
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut hasher = sha2::Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

pub async fn load(file: &File) -> Outcome {
    let path = &file.path;
    let metadata = match tokio::fs::metadata(path).await {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Outcome::Missing { error: e.to_string() },
        Err(e) => return invalid(format!("cannot read it: {e}"), None),
    };
    if !metadata.is_file() {
        return invalid("it is not a regular file".into(), None);
    }
    if metadata.len() > MAX_BYTES {
        return invalid(format!("it is {} bytes, more than the {MAX_BYTES} this source loads", metadata.len()), None);
    }
    let bytes = match tokio::fs::read(path).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Outcome::Missing { error: e.to_string() },
        Err(e) => return invalid(format!("cannot read it: {e}"), None),
    };
    let content = sha256_hex(&[&bytes]);
    let parsed = match file.format {
        Format::Json => serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| format!("invalid JSON: {e}")),
        Format::Yaml => serde_yaml::from_slice::<serde_json::Value>(&bytes).map_err(|e| format!("invalid YAML: {e}")),
    };
    match parsed {
        Ok(value) => {
            // The modification time makes a file changed back to earlier
            // content a new event, while a re-read of the same write keeps its id.
            let mtime = metadata
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            let id = sha256_hex(&[path_bytes(path), b"\0", mtime.to_string().as_bytes(), b"\0", content.as_bytes()]);
            Outcome::Loaded { value, id: id[..32].to_owned(), state: format!("sha256:{content}") }
        }
        Err(error) => invalid(error, Some(&content)),
    }
}

fn invalid(error: String, content: Option<&str>) -> Outcome {
    let digest = content.map_or_else(|| sha256_hex(&[error.as_bytes()]), str::to_owned);
    Outcome::Invalid { error, state: format!("invalid:{digest}") }
}

fn path_bytes(path: &Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, format: Format) -> File {
        File { path: dir.join(name), format }
    }

    #[tokio::test]
    async fn yaml_and_json_parse_to_the_same_data() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "hosts:\n  - web1\n  - web2\nport: 8080\n").unwrap();
        std::fs::write(dir.path().join("a.json"), r#"{"hosts": ["web1", "web2"], "port": 8080}"#).unwrap();
        let yaml = load(&file(dir.path(), "a.yaml", Format::Yaml)).await;
        let json = load(&file(dir.path(), "a.json", Format::Json)).await;
        let (Outcome::Loaded { value: y, .. }, Outcome::Loaded { value: j, .. }) = (&yaml, &json) else {
            panic!("{yaml:?} {json:?}")
        };
        assert_eq!(y, j);
        assert_eq!(y["hosts"][1], "web2");
    }

    #[tokio::test]
    async fn same_content_same_state_and_id_new_write_new_id() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path(), "a.yaml", Format::Yaml);
        std::fs::write(&f.path, "a: 1\n").unwrap();
        let first = load(&f).await;
        assert_eq!(load(&f).await, first);
        // Same content written again at another time: same state, new id.
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options().write(true).open(&f.path).unwrap().set_modified(later).unwrap();
        let again = load(&f).await;
        assert_eq!(again.state(), first.state());
        let (Outcome::Loaded { id: a, .. }, Outcome::Loaded { id: b, .. }) = (&first, &again) else { panic!() };
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn errors_say_what_and_where() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path(), "bad.yaml", Format::Yaml);
        std::fs::write(&f.path, "a: [1, 2\n").unwrap();
        let Outcome::Invalid { error, state } = load(&f).await else { panic!() };
        assert!(error.starts_with("invalid YAML: ") && error.contains("line"), "{error}");
        assert!(state.starts_with("invalid:"));

        let f = file(dir.path(), "bad.json", Format::Json);
        std::fs::write(&f.path, "{\"a\": }").unwrap();
        let Outcome::Invalid { error, .. } = load(&f).await else { panic!() };
        assert_eq!(error, "invalid JSON: expected value at line 1 column 7");

        let f = file(dir.path(), "none.json", Format::Json);
        assert_eq!(load(&f).await.state(), "missing");

        let f = File { path: dir.path().to_path_buf(), format: Format::Json };
        let Outcome::Invalid { error, .. } = load(&f).await else { panic!() };
        assert_eq!(error, "it is not a regular file");
    }
}
