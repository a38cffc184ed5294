//! The route table: which loaded plugin version answers which path. Reloads swap entries while
//! requests keep reading; a request or session holds an `Arc` of the version it started on, so
//! a replaced or removed version lives until its last session ends.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use crate::plugins::plugin::LoadedPlugin;

/// Why a plugin could not be added to the table.
#[derive(Debug, thiserror::Error)]
#[error("route {route} is already served by plugin {owner}")]
pub struct RouteConflict {
    /// The contested route.
    pub route: String,
    /// The plugin that keeps it.
    pub owner: String,
}

/// The current plugins, by name and by route.
#[derive(Default)]
pub struct Registry {
    inner: RwLock<Tables>,
}

#[derive(Default)]
struct Tables {
    by_name: BTreeMap<String, Arc<LoadedPlugin>>,
    by_route: HashMap<String, Arc<LoadedPlugin>>,
}

impl Registry {
    /// The plugin serving `path` (without its query): the one whose route is the longest
    /// segment-wise prefix of it.
    pub fn route(&self, path: &str) -> Option<Arc<LoadedPlugin>> {
        let tables = self
            .inner
            .read()
            .unwrap_or_else(|poison| poison.into_inner());
        if tables.by_route.is_empty() {
            return None;
        }
        route_prefixes(path).find_map(|prefix| tables.by_route.get(prefix).cloned())
    }

    /// The current version of plugin `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        let tables = self
            .inner
            .read()
            .unwrap_or_else(|poison| poison.into_inner());
        tables.by_name.get(name).cloned()
    }

    /// The names of the plugins being served.
    pub fn names(&self) -> Vec<String> {
        let tables = self
            .inner
            .read()
            .unwrap_or_else(|poison| poison.into_inner());
        tables.by_name.keys().cloned().collect()
    }

    /// Makes `plugin` the current version of its name, returning the version it replaced.
    pub fn insert(&self, plugin: LoadedPlugin) -> Result<Option<Arc<LoadedPlugin>>, RouteConflict> {
        let plugin = Arc::new(plugin);
        let mut tables = self
            .inner
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(owner) = tables.by_route.get(plugin.route())
            && owner.name() != plugin.name()
        {
            return Err(RouteConflict {
                route: plugin.route().to_owned(),
                owner: owner.name().to_owned(),
            });
        }
        let previous = tables
            .by_name
            .insert(plugin.name().to_owned(), plugin.clone());
        if let Some(previous) = &previous {
            tables.by_route.remove(previous.route());
            previous.retire();
        }
        tables.by_route.insert(plugin.route().to_owned(), plugin);
        Ok(previous)
    }

    /// Stops routing to plugin `name`, returning the version that was serving.
    pub fn remove(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        let mut tables = self
            .inner
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        let removed = tables.by_name.remove(name)?;
        tables.by_route.remove(removed.route());
        removed.retire();
        Some(removed)
    }
}

/// `/a/b/c` → `/a/b/c`, `/a/b`, `/a`, `/`: every prefix that ends on a segment boundary, longest
/// first. A trailing slash is ignored, so `/echo/` is served like `/echo`.
fn route_prefixes(path: &str) -> impl Iterator<Item = &str> {
    let trimmed = path.trim_end_matches('/');
    let mut next = Some(trimmed);
    std::iter::from_fn(move || {
        let current = next?;
        next = match current.rfind('/') {
            Some(0) if current.len() > 1 => Some("/"),
            Some(0) | None => None,
            Some(cut) => Some(&current[..cut]),
        };
        Some(if current.is_empty() { "/" } else { current })
    })
}

#[cfg(test)]
mod tests {
    use super::route_prefixes;

    #[test]
    fn prefixes_walk_up_segment_by_segment() {
        let all: Vec<_> = route_prefixes("/a/b/c").collect();
        assert_eq!(all, ["/a/b/c", "/a/b", "/a", "/"]);
        let all: Vec<_> = route_prefixes("/echo/").collect();
        assert_eq!(all, ["/echo", "/"]);
        let all: Vec<_> = route_prefixes("/").collect();
        assert_eq!(all, ["/"]);
    }
}
