//! `upshift keys`: issue and revoke API keys. A key is 32 random bytes as
//! `ups_<hex>`; only its SHA-256 is stored, and the key is printed once.

use anyhow::Context;
use upshift_orchestrator::api::sha256_hex;
use upshift_orchestrator::store::PgStore;
use upshift_shared::config::Config;

/// `upshift keys …`.
#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Issue a key for a tenant and print it (it cannot be shown again).
    Create {
        /// The tenant the key acts for.
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a key by the id `create` printed.
    Revoke {
        /// The key's id.
        id: uuid::Uuid,
    },
}

/// Runs a keys command against the configured database.
pub async fn run(cfg: &Config, cmd: KeysCommand) -> anyhow::Result<()> {
    let store = PgStore::connect(cfg).await.context("connecting to Postgres")?;
    match cmd {
        KeysCommand::Create { tenant } => {
            let tenant = tenant.trim();
            anyhow::ensure!(
                !tenant.is_empty() && tenant.len() <= 100,
                "--tenant must be 1 to 100 characters"
            );
            // Two v4 UUIDs carry 244 random bits from the OS generator.
            let key = format!("ups_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
            let id = store.create_api_key(tenant, &sha256_hex(&key)).await?;
            println!("key id  {id}\ntenant  {tenant}\nkey     {key}\n(store it now: only its hash is kept)");
        }
        KeysCommand::Revoke { id } => {
            anyhow::ensure!(store.revoke_api_key(id).await?, "no active key with id {id}");
            println!("revoked {id}");
        }
    }
    Ok(())
}
