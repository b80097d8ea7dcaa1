//! Before a local stack starts anything: are Postgres and NATS (with
//! JetStream) there? A stopped service is named with the address tried and
//! the command that starts it, instead of a child's log saying
//! `jetstream request timed out`.

use anyhow::bail;
use sqlx::Connection;
use std::time::Duration;
use upshift_shared::config::{Config, redact_url};

/// How Postgres is started on this machine kind (README, Services).
pub const PG_START: &str = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start";
/// How NATS with JetStream is started on this machine kind.
pub const NATS_START: &str = "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log";

const WAIT: Duration = Duration::from_secs(5);

/// Checks both services; the error says which one, where, and how to start it.
pub async fn check(cfg: &Config) -> anyhow::Result<()> {
    postgres(cfg).await?;
    nats(cfg).await
}

async fn postgres(cfg: &Config) -> anyhow::Result<()> {
    let url = &cfg.database.url;
    let shown = redact_url(url);
    match tokio::time::timeout(WAIT, sqlx::PgConnection::connect(url)).await {
        Ok(Ok(c)) => {
            let _ = c.close().await;
            Ok(())
        }
        // The server answered: the orchestrator creates its database.
        Ok(Err(sqlx::Error::Database(e))) if e.code().as_deref() == Some("3D000") => Ok(()),
        Ok(Err(e)) => bail!("Postgres is not reachable at {shown} ({e}).\nStart it with: {PG_START}"),
        Err(_) => bail!("Postgres did not answer at {shown} within {WAIT:?}.\nStart it with: {PG_START}"),
    }
}

async fn nats(cfg: &Config) -> anyhow::Result<()> {
    let n = &cfg.nats;
    let shown = n.urls().into_iter().map(redact_url).collect::<Vec<_>>().join(",");
    let mut opts = async_nats::ConnectOptions::new().connection_timeout(WAIT);
    if let (Some(user), Some(password)) = (&n.user, &n.password) {
        opts = opts.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &n.token {
        opts = opts.token(token.clone());
    }
    let client = match tokio::time::timeout(WAIT * 2, opts.connect(n.urls().as_slice())).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => bail!("NATS is not reachable at {shown} ({e}).\nStart it with: {NATS_START}"),
        Err(_) => bail!(
            "NATS did not answer at {shown} within {:?}.\nStart it with: {NATS_START}",
            WAIT * 2
        ),
    };
    // A raw request, so any server version answers: JetStream off means no
    // one answers `$JS.API.INFO`, or the answer is an error.
    let info = tokio::time::timeout(WAIT, client.request("$JS.API.INFO", bytes::Bytes::new())).await;
    let why = match info {
        Ok(Ok(reply)) => match serde_json::from_slice::<serde_json::Value>(&reply.payload) {
            Ok(v) if v.get("error").is_none() => return Ok(()),
            Ok(v) => v["error"]["description"].as_str().unwrap_or("an error").to_string(),
            Err(e) => format!("an unreadable answer: {e}"),
        },
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer".to_string(),
    };
    bail!(
        "NATS at {shown} answers but JetStream is not available ({why}): start nats-server with JetStream on (-js), e.g.\n{NATS_START}"
    )
}
