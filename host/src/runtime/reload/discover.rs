//! Discovery again, describing only what changed: a binary whose identity
//! is the one already described keeps its description (describing means
//! starting the plugin, which is not free).

use std::path::Path;

use futures_util::StreamExt;

use super::identity::{self, Identities};
use crate::plugin::StartOptions;
use crate::runtime::registry::{self, Registry, RegistryError};

/// Plugins described at the same time.
const PARALLEL_DESCRIBES: usize = 8;

/// The plugins in `dir` now, and their identities. Entries of `previous`
/// whose binary is unchanged are reused; new and replaced ones are described.
pub async fn rediscover(
    previous: &Registry,
    previous_ids: &Identities,
    dir: &Path,
    options: &StartOptions,
) -> Result<(Registry, Identities), RegistryError> {
    let ids = identity::snapshot(dir).map_err(|source| RegistryError { dir: dir.to_owned(), source })?;
    let mut entries = Vec::with_capacity(ids.len());
    let mut to_describe = Vec::new();
    for (path, id) in &ids {
        let known = previous.entries.iter().find(|e| &e.path == path).filter(|_| previous_ids.get(path) == Some(id));
        match known {
            Some(entry) => entries.push(entry.clone()),
            None => to_describe.push(path.clone()),
        }
    }
    let described: Vec<registry::Entry> = futures_util::stream::iter(to_describe)
        .map(|path| registry::describe(path, options))
        .buffer_unordered(PARALLEL_DESCRIBES)
        .collect()
        .await;
    for e in &described {
        match &e.described {
            Ok(d) => tracing::info!(
                plugin = %d.info.name,
                path = %e.path.display(),
                kinds = %d.kinds_text(),
                version = %d.info.version,
                "plugin discovered"
            ),
            Err(reason) => {
                tracing::warn!(plugin = %e.file_name, path = %e.path.display(), "cannot describe plugin: {reason}")
            }
        }
    }
    entries.extend(described);
    entries.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    Ok((Registry { dir: dir.to_owned(), entries }, ids))
}
