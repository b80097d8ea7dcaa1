//! NATS as a trust boundary: the whole stack runs on a server of its own
//! that requires the users and permissions `upshift nats-auth` writes (the
//! same generator as the shipped `deploy/nats/nats.conf`), and each role is
//! refused what it must not do: no credentials, a worker reading another
//! tier's tasks, publishing a task, creating or binding another tier's
//! consumer, reading another role's inbox.

use crate::util::{Harness, Opts, free_port, own_nats};
use std::time::Duration;
use upshift_shared::Tier;
use upshift_shared::nats_auth::{self, Role};
use upshift_shared::subjects::Subjects;

/// A nats-server of the test's own, requiring the roles' credentials.
struct AuthServer {
    child: tokio::process::Child,
    url: String,
    passwords: Vec<(Role, String)>,
}

impl AuthServer {
    async fn start(h: &Harness) -> AuthServer {
        let subjects = Subjects::new(h.prefix.clone());
        let port = free_port();
        let dir = h.dir.join("nats");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("auth.conf"), nats_auth::server_conf(&subjects, "test")).unwrap();
        std::fs::write(
            dir.join("server.conf"),
            format!(
                "host: 127.0.0.1\nport: {port}\njetstream {{ store_dir: \"{}\" }}\ninclude \"auth.conf\"\n",
                dir.join("js").display()
            ),
        )
        .unwrap();
        let passwords: Vec<(Role, String)> = nats_auth::roles(&subjects)
            .into_iter()
            // nats-server reads a variable as a config value: a password
            // must start with a letter (`1e3…` would parse as a number).
            .map(|r| (r, format!("p{}", uuid::Uuid::new_v4().simple())))
            .collect();
        let envs: Vec<(String, String)> = passwords
            .iter()
            .map(|(r, p)| (r.password_env.clone(), p.clone()))
            .collect();
        let conf = dir.join("server.conf");
        let child = own_nats(
            port,
            &["-c", conf.to_str().unwrap()],
            &envs,
            Some(&dir.join("server.log")),
        )
        .await;
        let url = format!("nats://127.0.0.1:{port}");
        AuthServer { child, url, passwords }
    }

    /// (user, password) of the role whose user is `user`.
    fn login(&self, user: &str) -> (String, String) {
        let (r, p) = self.passwords.iter().find(|(r, _)| r.user == user).expect("a role");
        (r.user.clone(), p.clone())
    }

    /// The environment a process of role `user` runs with.
    fn env(&self, user: &str) -> Vec<(String, String)> {
        let (user, password) = self.login(user);
        vec![
            ("UPSHIFT_NATS__URL".into(), self.url.clone()),
            ("UPSHIFT_NATS__USER".into(), user),
            ("UPSHIFT_NATS__PASSWORD".into(), password),
        ]
    }

    /// A client logged in as `user`, with its role's inbox prefix, that
    /// reports the server's errors (permission violations) on the channel.
    async fn client(&self, user: &str) -> (async_nats::Client, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let (user, password) = self.login(user);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let client = async_nats::ConnectOptions::with_user_and_password(user.clone(), password)
            .custom_inbox_prefix(format!("_INBOX_{user}"))
            .event_callback(move |e| {
                let tx = tx.clone();
                async move {
                    if let async_nats::Event::ServerError(e) = e {
                        let _ = tx.send(e.to_string());
                    }
                }
            })
            .connect(&self.url)
            .await
            .expect("a role's credentials are accepted");
        (client, rx)
    }
}

fn refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Waits for a permissions violation naming `subject` on `errors`.
async fn refused(errors: &mut tokio::sync::mpsc::UnboundedReceiver<String>, subject: &str) {
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(e) = errors.recv().await {
            if e.to_lowercase().contains("permissions violation") && e.contains(subject) {
                return e;
            }
        }
        String::new()
    })
    .await
    .unwrap_or_default();
    assert!(!got.is_empty(), "no permissions violation for {subject}");
}

#[tokio::test]
async fn every_role_runs_on_its_own_credentials_and_is_refused_the_rest() {
    // Debug logging, so a password that reached any log line would be found.
    let mut h = Harness::new(Opts {
        log: "debug,sqlx=warn,hyper=info,reqwest=info",
        ..Opts::default()
    })
    .await;
    let mut server = AuthServer::start(&h).await;
    let subjects = Subjects::new(h.prefix.clone());
    let orch_env = server.env(&nats_auth::orchestrator_user(&subjects));
    let _orch = h.orchestrator_with(&refs(&orch_env)).await;
    let mut workers = Vec::new();
    for &tier in Tier::ALL {
        let e = server.env(&nats_auth::worker_user(&subjects, tier));
        workers.push(h.spawn_worker(tier.as_str(), &refs(&e)));
    }
    // The cascade runs end to end on the roles' permissions: a high blast
    // radius starts strong, a low one small.
    let low = h
        .submit_answer(
            "Ann has 3 apples and buys 4 more. How many apples does she have now?",
            "low",
        )
        .await;
    let high = h
        .submit_answer(
            "Ann has 3 apples and buys 4 more. How many apples does she have now?",
            "high",
        )
        .await;
    h.wait_all(&[low, high], Duration::from_secs(60)).await;
    let statuses: Vec<String> = sqlx::query_scalar("SELECT status FROM jobs WHERE id = ANY($1)")
        .bind([low, high])
        .fetch_all(&h.pool)
        .await
        .unwrap();
    assert_eq!(statuses, ["succeeded", "succeeded"]);
    // ... and on this server only: the machine's NATS never saw the streams.
    let machine = async_nats::jetstream::new(h.nats.clone());
    assert!(machine.get_stream(subjects.tasks_stream()).await.is_err());

    // No credentials: refused.
    assert!(
        async_nats::ConnectOptions::new().connect(&server.url).await.is_err(),
        "an anonymous client is refused"
    );

    // A small worker's user may not read another tier's tasks, publish a
    // task, create a consumer, bind another tier's, or read another inbox.
    let (small, mut errors) = server.client(&nats_auth::worker_user(&subjects, Tier::Small)).await;
    let strong_tasks = subjects.tasks(Tier::Strong);
    let _sub = small.subscribe(strong_tasks.clone()).await.unwrap();
    refused(&mut errors, &strong_tasks).await;
    let small_tasks = subjects.tasks(Tier::Small);
    small.publish(small_tasks.clone(), "forged".into()).await.unwrap();
    small.flush().await.unwrap();
    refused(&mut errors, &small_tasks).await;
    let inbox = format!("_INBOX_{}.>", nats_auth::orchestrator_user(&subjects));
    let _spy = small.subscribe(inbox.clone()).await.unwrap();
    refused(&mut errors, &inbox).await;
    let js = async_nats::jetstream::new(small.clone());
    let stream = subjects.tasks_stream();
    let bind = js
        .get_consumer_from_stream::<async_nats::jetstream::consumer::pull::Config, _, _>(
            subjects.worker_consumer(Tier::Strong),
            stream.clone(),
        )
        .await;
    assert!(bind.is_err(), "binding the strong tier's consumer is refused");
    let create = js
        .create_consumer_on_stream(
            async_nats::jetstream::consumer::pull::Config {
                durable_name: Some("spy".into()),
                filter_subject: strong_tasks.clone(),
                ..Default::default()
            },
            stream.clone(),
        )
        .await;
    assert!(create.is_err(), "creating a consumer is refused");
    // What it is allowed, it can do: its own consumer answers.
    js.get_consumer_from_stream::<async_nats::jetstream::consumer::pull::Config, _, _>(
        subjects.worker_consumer(Tier::Small),
        stream,
    )
    .await
    .expect("its own consumer");

    for mut w in workers {
        let _ = w.kill().await;
    }
    // No role's password reached any process's log.
    let mut logs = String::new();
    for e in std::fs::read_dir(&h.dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "log") {
            logs.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
        }
    }
    assert!(logs.len() > 1000, "the processes logged at debug level");
    for (role, password) in &server.passwords {
        assert!(
            !logs.contains(password.as_str()),
            "{}'s password is in a log",
            role.user
        );
    }
    let _ = server.child.kill().await;
    h.finish().await;
}

/// The shipped deployment files are the generator's output for the default
/// prefix, so they never drift from the permissions the code needs.
#[tokio::test]
async fn shipped_nats_permissions_are_the_generated_ones() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let subjects = Subjects::default();
    let conf = std::fs::read_to_string(root.join("deploy/nats/nats.conf")).unwrap();
    assert_eq!(
        conf,
        nats_auth::server_conf(&subjects, "upshift nats-auth"),
        "regenerate with: upshift nats-auth > deploy/nats/nats.conf"
    );
    let helm = std::fs::read_to_string(root.join("deploy/kubernetes/nats-auth-values.yaml")).unwrap();
    assert_eq!(
        helm,
        nats_auth::helm_values(&subjects, "upshift-nats", "upshift nats-auth --format helm"),
        "regenerate with: upshift nats-auth --format helm > deploy/kubernetes/nats-auth-values.yaml"
    );
}
