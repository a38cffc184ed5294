//! The compiled-artifact cache: a plugin compiled once loads from disk afterwards, also after a
//! restart, and a damaged cache entry is recompiled instead of trusted.

use std::sync::Arc;

use switchyard_host::bindings::{Outgoing, Request};
use switchyard_host::cache::Origin;
use switchyard_host::gauge::Gauge;
use switchyard_host::plugin::LoadedPlugin;
use switchyard_host::{Limits, Runtime};
use switchyard_tests::{bounded, built_plugin};

fn runtime_with_cache(dir: &std::path::Path) -> Runtime {
    Runtime::new(&Limits::default())
        .expect("creating a runtime")
        .with_artifact_cache(dir)
        .expect("opening the cache")
}

/// Loads `hello` and checks the loaded plugin really answers.
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
        Outgoing::Response(response) => assert_eq!(response.status, 200),
        Outgoing::ProtocolUpgrade(_) => panic!("hello does not upgrade"),
    }
    plugin.origin()
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

        let entries: Vec<_> = std::fs::read_dir(cache.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        std::fs::write(&entries[0], b"not native code").unwrap();
        assert_eq!(load_and_call(&restarted).await, Origin::Compiled);
        assert_eq!(load_and_call(&restarted).await, Origin::Cached);
    })
    .await;
}
