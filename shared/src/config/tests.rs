//! Tests of loading and validating configuration.

use super::*;

#[test]
fn defaults_load_and_validate() {
    let c = Config::from_toml_over_defaults("").unwrap();
    assert_eq!(c.nats.prefix, "upshift");
    let c = Config::from_toml_over_defaults(REPLAY_TOML).unwrap();
    assert_eq!(c.tier_model(Tier::Strong).name, "gpt-4-1106");
}

#[test]
fn errors_name_the_key() {
    let e = Config::from_toml_over_defaults("[nats]\nurl = 5").unwrap_err();
    assert_eq!(e.key, "nats.url", "{e}");
    let e = Config::from_toml_over_defaults("[nats]\nbogus = 1").unwrap_err();
    assert!(e.to_string().contains("bogus"), "{e}");
    let e = Config::from_toml_over_defaults("[tiers]\nsmall = \"nope\"").unwrap_err();
    assert_eq!(e.key, "tiers.small");
    let e = Config::from_toml_over_defaults("[nats]\nprefix = \"a.b\"").unwrap_err();
    assert_eq!(e.key, "nats.prefix");
}

#[test]
fn every_section_is_settable_and_an_unknown_one_is_named() {
    assert!(is_config_var("NATS__URL") && is_config_var("tiers__strong"));
    assert!(!is_config_var("API_KEY") && !is_config_var("STRONG_API_KEY"));
    // The sections are Config's fields, so [limits] is one without a list to keep.
    let s = sections();
    for want in [
        "nats",
        "database",
        "api",
        "orchestrator",
        "worker",
        "models",
        "tiers",
        "routing",
        "rag",
        "limits",
    ] {
        assert!(s.iter().any(|x| x == want), "{want} in {s:?}");
    }
    assert!(
        unknown_section([
            "UPSHIFT_LIMITS__MAX_JOBS_IN_FLIGHT".to_string(),
            "UPSHIFT_API_KEY".into()
        ])
        .is_ok()
    );
    let e = unknown_section(["UPSHIFT_LIMIT__MAX_JOBS_IN_FLIGHT".to_string()]).unwrap_err();
    assert_eq!(e.key, "UPSHIFT_LIMIT__MAX_JOBS_IN_FLIGHT");
    assert!(e.reason.contains("no configuration section `limit`"), "{e}");
}

#[test]
fn the_shown_config_hides_every_secret() {
    let c = Config::from_toml_over_defaults(
        "[database]\nurl = \"postgres://u:hunter2@h/db\"\nmax_connections = 2\n\
         [nats]\nuser = \"u\"\npassword = \"pw-secret\"\ntoken = \"tok-secret\"",
    )
    .unwrap();
    let shown = c.redacted().to_string();
    for secret in ["hunter2", "pw-secret", "tok-secret"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(shown.contains("\"limits\""));
}

#[test]
fn database_password_is_redacted() {
    assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
    assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    let c = Config::from_toml_over_defaults(
        "[database]\nurl = \"postgres://u:hunter2@h/db\"\nmax_connections = 2\n\
         [nats]\nuser = \"u\"\npassword = \"pw-secret\"\ntoken = \"tok-secret\"",
    )
    .unwrap();
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("pw-secret") && !shown.contains("tok-secret"),
        "{shown}"
    );
    let e = Config::from_toml_over_defaults("[nats]\nuser = \"u\"").unwrap_err();
    assert_eq!(e.key, "nats.user / nats.password");
}

#[test]
fn durations_and_addresses_are_typed_when_loaded() {
    let c = Config::from_toml_over_defaults(
        "[orchestrator]\nsweep_interval_ms = 250\nattempt_deadline_secs = 7\n\
         [api]\nlisten = \"0.0.0.0:9000\"\nops_listen = \"127.0.0.1:9464\"",
    )
    .unwrap();
    assert_eq!(c.orchestrator.sweep_interval, Duration::from_millis(250));
    assert_eq!(c.orchestrator.attempt_deadline, Duration::from_secs(7));
    assert_eq!(c.api.listen.port(), 9000);
    assert_eq!(c.api.ops_listen.map(|a| a.port()), Some(9464));
    let e = Config::from_toml_over_defaults("[api]\nlisten = \"somewhere\"").unwrap_err();
    assert_eq!(e.key, "api.listen", "{e}");
    let e = Config::from_toml_over_defaults("[orchestrator]\nattempt_deadline_secs = 0").unwrap_err();
    assert_eq!(e.key, "orchestrator.attempt_deadline_secs", "{e}");
    // Written back in the units it was read in.
    let written = serde_json::to_value(&c.orchestrator).unwrap();
    assert_eq!(written["sweep_interval_ms"], 250, "{written}");
}

#[test]
fn a_chat_waits_less_than_its_request_may_last() {
    let c = Config::from_toml_over_defaults("").unwrap();
    assert_eq!(c.api.chat_wait(), std::time::Duration::from_secs(50));
    let c = Config::from_toml_over_defaults("[api]\nrequest_timeout_secs = 3").unwrap();
    assert!(c.api.chat_wait() < c.api.request_timeout);
    let e = Config::from_toml_over_defaults("[api]\nchat_wait_secs = 60").unwrap_err();
    assert_eq!(e.key, "api.chat_wait_secs", "{e}");
}
