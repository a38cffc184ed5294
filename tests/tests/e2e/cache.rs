//! The compiled-artifact cache: a plugin compiled once loads from disk afterwards, also after a
//! restart; a damaged or swapped cache entry is recompiled instead of trusted, and a cache
//! folder or entry that others could write is not used at all.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use switchyard_host::bindings::{Outgoing, Request};
use switchyard_host::cache::Origin;
use switchyard_host::gauge::Gauge;
use switchyard_host::plugin::LoadedPlugin;
use switchyard_host::runtime::EngineKind;
use switchyard_host::{Limits, Runtime};
use switchyard_tests::{bounded, built_plugin, logs};

fn runtime_with_cache(dir: &Path) -> Runtime {
    logs::install();
    Runtime::new(&Limits::default())
        .expect("creating a runtime")
        .with_artifact_cache(dir)
        .expect("opening the cache")
}

/// Loads `hello` and checks the loaded plugin really is hello: it answers a plain `GET` with
/// `200` (echo, for one, answers it with `400`).
async fn load_and_call(runtime: &Runtime) -> Origin {
    let plugin = LoadedPlugin::load(runtime, &built_plugin("hello")).expect("loading hello");
    let mut instance = plugin
        .instantiate(&Arc::new(Gauge::default()))
        .await
        .expect("instantiating hello");
    let request = Request {
        method: "GET".into(),
        path_with_query: "/hello".into(),
        headers: vec![],
        body: vec![],
    };
    match instance.handle(&request).await.expect("calling handle") {
        Outgoing::Response(response) => assert_eq!(response.status, 200, "hello's own answer"),
        Outgoing::ProtocolUpgrade(_) | Outgoing::Websocket(_) => {
            panic!("hello does not upgrade")
        }
    }
    plugin.origin()
}

/// The files in the cache folder.
fn entries(cache: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(cache)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    entries
}

/// The log lines that mention `cache` (a test's own folder) and contain `needle`.
fn cache_log(cache: &Path, needle: &str) -> Vec<String> {
    logs::lines_containing(&cache.display().to_string())
        .into_iter()
        .filter(|line| line.contains(needle))
        .collect()
}

#[tokio::test]
async fn compiled_plugins_are_cached_across_restarts_and_damage_is_recompiled() {
    bounded(async {
        let cache = tempfile::tempdir().unwrap();
        let runtime = runtime_with_cache(cache.path());
        assert_eq!(load_and_call(&runtime).await, Origin::Compiled);
        assert_eq!(load_and_call(&runtime).await, Origin::Cached);

        let restarted = runtime_with_cache(cache.path());
        assert_eq!(load_and_call(&restarted).await, Origin::Cached);

        let entries = entries(cache.path());
        assert_eq!(entries.len(), 1, "{entries:?}");
        std::fs::write(&entries[0], b"not native code").unwrap();
        assert_eq!(load_and_call(&restarted).await, Origin::Compiled);
        assert_eq!(load_and_call(&restarted).await, Origin::Cached);
    })
    .await;
}

/// Each engine keeps entries of its own, named after it: a plugin compiled by one engine is
/// never taken from the cache for the other, even for the very same bytes.
#[tokio::test]
async fn each_engine_has_its_own_entries() {
    bounded(async {
        let cache = tempfile::tempdir().unwrap();
        let runtime = runtime_with_cache(cache.path());
        let hello = LoadedPlugin::load(&runtime, &built_plugin("hello")).expect("loading hello");
        let kv = LoadedPlugin::load(&runtime, &built_plugin("kv")).expect("loading kv");
        assert_eq!(
            (hello.engine(), kv.engine()),
            (EngineKind::Plain, EngineKind::Concurrent)
        );
        let names: Vec<String> = entries(cache.path())
            .iter()
            .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(
            names.iter().filter(|name| name.contains("-plain-")).count(),
            1,
            "{names:?}"
        );
        assert_eq!(
            names
                .iter()
                .filter(|name| name.contains("-concurrent-"))
                .count(),
            1,
            "{names:?}"
        );

        // hello's bytes, which the plain engine has cached, asked of the concurrent engine's
        // cache (they compile there too): compiled anew, then cached under its own name.
        let bytes = std::fs::read(built_plugin("hello")).unwrap();
        let hash: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&bytes).into();
        let concurrent = runtime
            .artifact_cache(EngineKind::Concurrent)
            .expect("the concurrent engine's cache");
        let engine = runtime.engine(EngineKind::Concurrent);
        let (_, origin) = concurrent.component(engine, &bytes, &hash).unwrap();
        assert_eq!(origin, Origin::Compiled);
        assert_eq!(entries(cache.path()).len(), 3);
        let (_, origin) = concurrent.component(engine, &bytes, &hash).unwrap();
        assert_eq!(origin, Origin::Cached);
        // And the plain engine still finds its own.
        assert_eq!(load_and_call(&runtime).await, Origin::Cached);
    })
    .await;
}

/// A pre-existing cache folder that others may write is not used: it is said why, every load
/// compiles, and nothing is written into it.
#[tokio::test]
async fn world_writable_cache_folder_is_not_used() {
    bounded(async {
        let parent = tempfile::tempdir().unwrap();
        let cache = parent.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
        let runtime = runtime_with_cache(&cache);
        assert_eq!(load_and_call(&runtime).await, Origin::Compiled);
        assert_eq!(load_and_call(&runtime).await, Origin::Compiled);
        assert!(entries(&cache).is_empty(), "{:?}", entries(&cache));
        let warned = cache_log(&cache, "cache not used");
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(warned[0].contains("mode 777"), "{warned:?}");
    })
    .await;
}

/// Echo's compiled code copied over hello's entry is never run for hello: the entry says which
/// `.wasm` it was compiled from, so hello is compiled again and answers as hello.
#[tokio::test]
async fn another_plugins_entry_in_its_place_is_not_run() {
    bounded(async {
        let cache = tempfile::tempdir().unwrap();
        let runtime = runtime_with_cache(cache.path());
        LoadedPlugin::load(&runtime, &built_plugin("echo-raw")).expect("loading echo-raw");
        let echo_entry = entries(cache.path()).pop().unwrap();
        assert_eq!(load_and_call(&runtime).await, Origin::Compiled);
        let hello_entry = entries(cache.path())
            .into_iter()
            .find(|entry| *entry != echo_entry)
            .unwrap();

        std::fs::copy(&echo_entry, &hello_entry).unwrap();
        assert_eq!(load_and_call(&runtime).await, Origin::Compiled);
        let refused = cache_log(cache.path(), "not compiled from this plugin's exact bytes");
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(load_and_call(&runtime).await, Origin::Cached);
    })
    .await;
}

/// An entry that others may write is not run; the one compiled instead is written private.
#[tokio::test]
async fn entry_writable_by_others_is_recompiled() {
    bounded(async {
        let cache = tempfile::tempdir().unwrap();
        let runtime = runtime_with_cache(cache.path());
        assert_eq!(load_and_call(&runtime).await, Origin::Compiled);
        let entry = entries(cache.path()).pop().unwrap();
        let mode = |entry: &Path| std::fs::metadata(entry).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&entry), 0o600);

        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(load_and_call(&runtime).await, Origin::Compiled);
        assert_eq!(cache_log(cache.path(), "mode 666").len(), 1);
        assert_eq!(mode(&entry), 0o600);
        assert_eq!(load_and_call(&runtime).await, Origin::Cached);
    })
    .await;
}

/// A cache folder owned by another user is not used. Giving a folder away needs root; run
/// elsewhere, the test says so and checks nothing.
#[tokio::test]
async fn cache_folder_of_another_user_is_not_used() {
    bounded(async {
        let parent = tempfile::tempdir().unwrap();
        let cache = parent.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
        const NOBODY: u32 = 65534;
        if let Err(err) = std::os::unix::fs::chown(&cache, Some(NOBODY), None) {
            eprintln!("skipped: cannot give a folder to another user ({err}); needs root");
            return;
        }
        let runtime = runtime_with_cache(&cache);
        assert_eq!(load_and_call(&runtime).await, Origin::Compiled);
        assert_eq!(load_and_call(&runtime).await, Origin::Compiled);
        let warned = cache_log(&cache, "cache not used");
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(warned[0].contains("owned by user id 65534"), "{warned:?}");
    })
    .await;
}
