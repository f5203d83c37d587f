//! The body of `POST /streams`: parsed and checked (`Plan::parse_added_source`, what the API's
//! `add_stream` does before it builds anything) against the plan of a fixed pipeline config
//! (`configs/traffic.yaml`) in the sandbox, in a network namespace of its own.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vigil::config::{Config, Plan, SourceConfig};

fn plan() -> &'static Plan {
    static PLAN: OnceLock<Plan> = OnceLock::new();
    PLAN.get_or_init(|| {
        let sandbox = vigil_fuzz::sandbox("api_stream_body", true);
        let path = sandbox.path("configs/traffic.yaml");
        std::fs::copy(vigil_fuzz::repo_root().join("configs/traffic.yaml"), &path)
            .expect("vigil-fuzz: cannot copy configs/traffic.yaml");
        Config::load_and_validate(&path)
            .unwrap_or_else(|e| panic!("vigil-fuzz: the fixed pipeline config is invalid: {e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    let plan = plan();
    let sandbox = vigil_fuzz::sandbox("api_stream_body", true);
    if let Ok(source) = serde_json::from_slice::<SourceConfig>(data)
        && !sandbox.source_confined(&sandbox.path("configs"), &source)
    {
        return;
    }
    let _ = plan.parse_added_source(data);
    sandbox.clean_out();
});
