//! NATS users and permissions for upshift's roles: the one place that says
//! what each process may publish and read, from which the server's
//! `authorization` block is written (`upshift nats-auth`; the shipped
//! `deploy/nats/nats.conf` and `deploy/kubernetes/nats-auth-values.yaml` are
//! its output, and a test keeps them so).
//!
//! - the orchestrator publishes tasks, runs JetStream's API (it creates the
//!   streams and every consumer) and acks results and dead letters;
//! - a tier's workers bind to their tier's consumer, pull and ack its
//!   messages, and publish results and set-aside messages, nothing else: they
//!   cannot read another tier's tasks, publish a task, or create a consumer
//!   (which could be pointed at another tier's subject);
//! - every role receives replies only on its own inbox prefix
//!   (`_INBOX_<user>`, see `NatsConfig::inbox_prefix`), so no role can read
//!   the messages delivered to another.
//!
//! Passwords are never written here: the server reads each from an
//! environment variable (`$UPSHIFT_NATS_<ROLE>_PASSWORD`), which a Secret or
//! the compose file's environment fills. nats-server parses the variable's
//! value as a config value, so a password must start with a letter (a hex
//! string starting with a digit fails to parse and the server does not
//! start).

use crate::Tier;
use crate::subjects::Subjects;

/// One NATS user and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// The NATS user name (`upshift-orchestrator`, `upshift-worker-small`).
    pub user: String,
    /// Environment variable the server reads the user's password from.
    pub password_env: String,
    /// Subjects it may publish to.
    pub publish: Vec<String>,
    /// Subjects it may subscribe to.
    pub subscribe: Vec<String>,
}

/// The user name of the orchestrator's role for `subjects`' prefix.
pub fn orchestrator_user(subjects: &Subjects) -> String {
    format!("{}-orchestrator", subjects.prefix())
}

/// The user name of `tier`'s workers for `subjects`' prefix.
pub fn worker_user(subjects: &Subjects, tier: Tier) -> String {
    format!("{}-worker-{tier}", subjects.prefix())
}

fn password_env(role: &str) -> String {
    format!("UPSHIFT_NATS_{}_PASSWORD", role.to_ascii_uppercase().replace('-', "_"))
}

/// Every role: the orchestrator, then one per tier.
pub fn roles(subjects: &Subjects) -> Vec<Role> {
    let inbox = |user: &str| format!("_INBOX_{user}.>");
    let orchestrator = orchestrator_user(subjects);
    let mut roles = vec![Role {
        password_env: password_env("orchestrator"),
        publish: vec![
            format!("{}.tasks.>", subjects.prefix()),
            "$JS.API.>".into(),
            format!("$JS.ACK.{}.>", subjects.results_stream()),
            format!("$JS.ACK.{}.>", subjects.dead_stream()),
        ],
        subscribe: vec![inbox(&orchestrator)],
        user: orchestrator,
    }];
    let tasks = subjects.tasks_stream();
    for &tier in Tier::ALL {
        let user = worker_user(subjects, tier);
        let consumer = subjects.worker_consumer(tier);
        roles.push(Role {
            password_env: password_env(&format!("worker_{tier}")),
            publish: vec![
                subjects.results(),
                subjects.dead(),
                format!("$JS.API.CONSUMER.INFO.{tasks}.{consumer}"),
                format!("$JS.API.CONSUMER.MSG.NEXT.{tasks}.{consumer}"),
                format!("$JS.ACK.{tasks}.{consumer}.>"),
            ],
            subscribe: vec![inbox(&user)],
            user,
        });
    }
    roles
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The `authorization` block of a nats-server config file (2.9+), each
/// password read from its environment variable. `command` is what wrote it.
pub fn server_conf(subjects: &Subjects, command: &str) -> String {
    let mut out = format!(
        "# NATS users and permissions of upshift's roles, written by `{command}`\n\
         # (shared/src/nats_auth.rs). Passwords come from the environment.\n\
         authorization {{\n  users = [\n"
    );
    for r in roles(subjects) {
        out.push_str(&format!(
            "    {{\n      user: \"{}\"\n      password: ${}\n      permissions: {{\n        publish: {{ allow: {} }}\n        subscribe: {{ allow: {} }}\n      }}\n    }}\n",
            r.user,
            r.password_env,
            list(&r.publish),
            list(&r.subscribe)
        ));
    }
    out.push_str("  ]\n}\n");
    out
}

/// The same users as values for the official NATS Helm chart
/// (`config.merge.authorization`), each password from key
/// `<role>-password` of Secret `secret`, through the container's
/// environment (the chart's `<< $VAR >>` is an unquoted config value).
pub fn helm_values(subjects: &Subjects, secret: &str, command: &str) -> String {
    let mut out = format!(
        "# NATS users and permissions of upshift's roles, written by `{command}`\n\
         # (shared/src/nats_auth.rs). Use beside nats-values.yaml:\n\
         #   helm install nats nats/nats -n upshift -f deploy/kubernetes/nats-values.yaml \\\n\
         #     -f deploy/kubernetes/nats-auth-values.yaml\n\
         # Passwords come from Secret `{secret}` (see deploy/kubernetes/secrets.example.yaml).\n\
         config:\n  merge:\n    authorization:\n      users:\n"
    );
    let roles = roles(subjects);
    for r in &roles {
        out.push_str(&format!(
            "        - user: \"{}\"\n          password: << ${} >>\n          permissions:\n            publish:\n              allow: {}\n            subscribe:\n              allow: {}\n",
            r.user,
            r.password_env,
            list(&r.publish),
            list(&r.subscribe)
        ));
    }
    out.push_str("container:\n  env:\n");
    for r in &roles {
        out.push_str(&format!(
            "    {}:\n      valueFrom:\n        secretKeyRef:\n          name: {secret}\n          key: {}\n",
            r.password_env,
            secret_key(r)
        ));
    }
    out
}

/// The key of a role's password in the Secret: `orchestrator-password`,
/// `worker-small-password`.
pub fn secret_key(role: &Role) -> String {
    let name = role
        .password_env
        .trim_start_matches("UPSHIFT_NATS_")
        .trim_end_matches("_PASSWORD");
    format!("{}-password", name.to_ascii_lowercase().replace('_', "-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_reach_only_their_tier() {
        let s = Subjects::new("upshift");
        let roles = roles(&s);
        assert_eq!(roles.len(), 4);
        let small = roles.iter().find(|r| r.user == "upshift-worker-small").unwrap();
        assert_eq!(small.password_env, "UPSHIFT_NATS_WORKER_SMALL_PASSWORD");
        assert_eq!(secret_key(small), "worker-small-password");
        let all = small.publish.join(" ");
        assert!(all.contains("workers-small") && !all.contains("workers-medium") && !all.contains("tasks."));
        assert!(!all.contains("CONSUMER.CREATE") && !all.contains("DURABLE"));
        assert_eq!(small.subscribe, ["_INBOX_upshift-worker-small.>"]);
        let conf = server_conf(&s, "test");
        assert!(conf.contains("password: $UPSHIFT_NATS_ORCHESTRATOR_PASSWORD\n"));
        let helm = helm_values(&s, "upshift-nats", "test");
        assert!(helm.contains("password: << $UPSHIFT_NATS_WORKER_STRONG_PASSWORD >>"));
        assert!(helm.contains("key: worker-strong-password"));
    }
}
