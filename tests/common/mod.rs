//! Test harness: runs the real `whg` binary on a random loopback port with a real database, and
//! talks to it over HTTP.
//!
//! The database is an SQLite file in the server's directory, or, when `WHG_TEST_POSTGRES` holds
//! the admin URL of a PostgreSQL server (scripts/test.sh starts a throwaway one with
//! scripts/postgres.sh), a fresh PostgreSQL database of each server's own. Tests that look into
//! the database do so through [`Server::db`], with SQL that runs on both.
#![allow(dead_code)]

pub mod clients;
pub mod exchanges;
pub mod receiver;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

pub const WHG: &str = env!("CARGO_BIN_EXE_whg");

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub struct Server {
    child: Child,
    pub base: String,
    pub dir: tempfile::TempDir,
    database: TestDatabase,
    /// Sends as the practice most fixtures come from ([`DEFAULT_PRACTICE`]) unless a request sets
    /// its own Authorization header.
    pub client: reqwest::Client,
    /// The same, never through the exchange recorder: for a test about connections themselves
    /// (a proxy between would answer for a refused one).
    pub direct_client: reqwest::Client,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    issuer: whg::auth::TokenIssuer,
    /// Who `post_json`, `post_raw` and `get` act as: the practice a posted referral names, and
    /// after that the last one.
    acting_as: std::sync::Mutex<whg::auth::Principal>,
}

/// The ODS code of the practice most fixtures come from.
pub const DEFAULT_PRACTICE: &str = "C88901";

/// The referrer a referral in the practice format (a practice, or a referringOrganisation of
/// another kind) or a BaRS message names as its sender, as a client acting for it.
pub fn sender_of(body: &Value) -> Option<whg::auth::Principal> {
    let o = &body["referringOrganisation"];
    if let (Some(kind), Some(code)) = (o["kind"].as_str(), o["code"].as_str()) {
        return whg::caller::Role::other_referrer(kind).map(|r| whg::auth::Principal::new(r, code));
    }
    sender_practice(body)
        .filter(|ods| whg::fhir::identifiers::is_ods_code(ods))
        .map(|ods| whg::auth::Principal::practice(&ods))
}

/// The practice a practice referral or BaRS message names as its sender.
pub fn sender_practice(body: &Value) -> Option<String> {
    if let Some(ods) = body["practice"]["odsCode"].as_str() {
        return Some(ods.to_string());
    }
    let entries = body["entry"].as_array()?;
    let header = entries
        .iter()
        .find(|e| e["resource"]["resourceType"] == "MessageHeader")?;
    let sender = header["resource"]["sender"]["reference"].as_str()?;
    let org = entries.iter().find(|e| e["fullUrl"] == sender)?;
    org["resource"]["identifier"]
        .as_array()?
        .iter()
        .find_map(|i| i["value"].as_str())
        .map(str::to_string)
}

impl Server {
    pub fn start() -> Server {
        Server::start_with("")
    }

    /// Starts the gateway with `extra_config` (TOML) merged over the defaults.
    pub fn start_with(extra_config: &str) -> Server {
        Server::start_under(extra_config, None, &[])
    }

    /// [`Server::start_with`], with `env` added to the process's environment.
    pub fn start_with_env(extra_config: &str, env: &[(&str, &str)]) -> Server {
        Server::start_under(extra_config, None, env)
    }

    /// [`Server::start_with`], with the process's umask set to `umask` when given and `env`
    /// added to its environment.
    fn start_under(extra_config: &str, umask: Option<u32>, env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("test.toml");
        let key_path = dir.path().join("signing-key.pem");
        let key = whg::auth::SigningKey::generate();
        key.save(&key_path).unwrap();
        let mut auth = format!(
            "[auth]\nsigning_key = {:?}\n[consent]\npseudonym_key = {:?}\n",
            key_path.display().to_string(),
            dir.path().join("pseudonym-key").display().to_string()
        );
        // Tests send far faster than any real client (and all from one address); the rate-limit
        // tests set their own limits.
        // Letters go where a test says: the test organisations' default route (the test tenant's
        // practice system on 127.0.0.1:8090) is for a local install, not for tests run side by side.
        if !extra_config.contains("[test_tenant]") {
            auth.push_str("[test_tenant]\npractice_endpoint = \"\"\n");
        }
        if !extra_config.contains("[limits]") {
            auth.push_str("[limits]\nrequests_per_second_per_client = 100000.0\nburst_per_client = 100000.0\n");
            auth.push_str("unauthenticated_requests_per_second_per_source = 100000.0\nunauthenticated_burst_per_source = 100000.0\n");
            auth.push_str("dashboard_pages_per_second_per_person = 100000.0\ndashboard_page_burst_per_person = 100000.0\n");
        }
        // The self-referral form's key lives with the server's other keys (never in the
        // repository's data/): inside a test's own [self_referral] table when it has one.
        let form_key = format!(
            "form_key = {:?}\n",
            dir.path().join("form-key").display().to_string()
        );
        let extra_config = if extra_config.contains("[self_referral]\n") {
            extra_config.replacen(
                "[self_referral]\n",
                &format!("[self_referral]\n{form_key}"),
                1,
            )
        } else {
            auth.push_str(&format!("[self_referral]\n{form_key}"));
            extra_config.to_string()
        };
        std::fs::write(&config, format!("{auth}{extra_config}")).unwrap();
        let defaults = whg::config::Config::defaults();
        let issuer = whg::auth::TokenIssuer::new(key, &defaults.auth);
        let database = TestDatabase::create(dir.path());
        let (child, base, stderr) = spawn_under(&database.url(), &config, umask, env);
        Server::running(child, base, dir, database, stderr, issuer)
    }

    /// The server as started: its client acting as [`DEFAULT_PRACTICE`].
    fn running(
        child: Child,
        base: String,
        dir: tempfile::TempDir,
        database: TestDatabase,
        stderr: std::sync::Arc<std::sync::Mutex<String>>,
        issuer: whg::auth::TokenIssuer,
    ) -> Server {
        let default = whg::auth::Principal::practice(DEFAULT_PRACTICE);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!(
                "Bearer {}",
                issuer.issue(&default, Duration::from_secs(3600))
            )
            .parse()
            .unwrap(),
        );
        Server {
            child,
            base,
            dir,
            database,
            client: exchanges::client_builder()
                .default_headers(headers.clone())
                .build()
                .unwrap(),
            direct_client: reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .unwrap(),
            stderr,
            issuer,
            acting_as: std::sync::Mutex::new(default),
        }
    }

    /// A second instance of the gateway beside this one: on the same database, with the same
    /// configuration and keys (as two instances behind a load balancer are run). Its database
    /// stays this server's: dropping the second leaves it.
    pub fn start_beside(&self) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::copy(self.config_path(), dir.path().join("test.toml")).unwrap();
        let database = TestDatabase::Shared {
            url: self.database_url(),
        };
        let (child, base, stderr) = spawn(&database.url(), &dir.path().join("test.toml"));
        Server::running(child, base, dir, database, stderr, self.issuer.clone())
    }

    /// Kills the gateway (SIGKILL: no shutdown, no last writes), leaving it dead.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The database the server uses, for running `whg` commands against it.
    pub fn database_url(&self) -> String {
        self.database.url()
    }

    /// Whether the server runs on PostgreSQL (`WHG_TEST_POSTGRES`) rather than SQLite.
    pub fn on_postgres(&self) -> bool {
        self.database_url().starts_with("postgres")
    }

    /// A connection to the server's database, to check (or, to stage a failure, change) what is
    /// stored. SQL through it must run on SQLite and PostgreSQL alike: `$1` parameters, and
    /// `CAST(content AS TEXT)` where a resource's JSON is read as text.
    pub async fn db(&self) -> sqlx::AnyConnection {
        install_drivers();
        let url = self.database_url();
        <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot open the test database: {e}"))
    }

    /// Stops the server (SIGTERM, then waits for it): its database and configuration stay, for
    /// [`Server::start_again`].
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.terminate()
    }

    /// Starts the gateway again on the same database and configuration, after [`Server::stop`].
    /// Logs of the earlier process are kept.
    pub fn start_again(&mut self) {
        let (child, base, stderr) = spawn(&self.database.url(), &self.config_path());
        let earlier = self.stderr.lock().unwrap().clone();
        stderr.lock().unwrap().insert_str(0, &earlier);
        self.child = child;
        self.base = base;
        self.stderr = stderr;
    }

    /// Deletes everything the (stopped) server stored: the SQLite file with its WAL and shared
    /// memory, or the PostgreSQL database, dropped and created again empty.
    pub fn wipe_database(&self) {
        self.database.wipe();
    }

    /// The configuration file the server was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("test.toml")
    }

    /// Runs `whg ARGS --config <the server's> --database-url <the server's>`.
    pub fn whg(&self, args: &[&str]) -> std::process::Output {
        Command::new(WHG)
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .arg("--database-url")
            .arg(self.database_url())
            .output()
            .expect("run whg")
    }

    /// An access token for `principal`.
    pub fn token(&self, principal: &whg::auth::Principal) -> String {
        self.issuer.issue(principal, Duration::from_secs(3600))
    }

    /// A client acting as `principal`.
    pub fn as_(&self, principal: whg::auth::Principal) -> Actor<'_> {
        Actor {
            token: self.token(&principal),
            server: self,
        }
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token(&self.acting_as.lock().unwrap()))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Everything the server has logged so far.
    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: &Value,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        self.post_raw(
            path,
            "application/fhir+json",
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        if let Some(sender) = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| sender_of(&v))
        {
            *self.acting_as.lock().unwrap() = sender;
        }
        let r = self
            .client
            .post(self.url(path))
            .header("authorization", self.bearer())
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        read_response(r).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(self.url(path))
            .header("authorization", self.bearer())
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Follows a `reference` like `Patient/123` and returns the resource.
    pub async fn resolve(&self, reference: &str) -> Value {
        let (status, body) = self.get(&format!("/fhir/{reference}")).await;
        assert_eq!(status, 200, "GET {reference}");
        body
    }

    /// Kills the server with SIGKILL (no chance to finish anything) and starts it again on the
    /// same database and configuration. Logs of the first process are kept.
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, base, stderr) = spawn(&self.database.url(), &self.config_path());
        let earlier = self.stderr.lock().unwrap().clone();
        stderr.lock().unwrap().insert_str(0, &earlier);
        self.child = child;
        self.base = base;
        self.stderr = stderr;
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap()
    }
}

/// Starts `whg serve` on the database `database_url` with `config`; returns the process, its base
/// URL and its captured stderr.
fn spawn(
    database_url: &str,
    config: &Path,
) -> (Child, String, std::sync::Arc<std::sync::Mutex<String>>) {
    spawn_under(database_url, config, None, &[])
}

/// [`spawn`], with the process's umask set to `umask` when given.
fn spawn_under(
    db: &str,
    config: &Path,
    umask: Option<u32>,
    env: &[(&str, &str)],
) -> (Child, String, std::sync::Arc<std::sync::Mutex<String>>) {
    let mut child = whg_command(umask)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            db,
            "--config",
        ])
        .arg(config)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start whg");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("whg listening on ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let stderr_buf = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = stderr_buf.clone();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("whg did not start: {}", stderr_buf.lock().unwrap()));
    (child, base, stderr_buf)
}

/// What `whg serve` says on stderr as it refuses to start with `config` (TOML, merged over the
/// defaults): the test fails if it starts.
pub fn refused_at_start(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("refused.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(WHG)
        .arg("--config")
        .arg(&path)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env(
            "WHG_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("db").display()),
        )
        .output()
        .unwrap();
    assert!(!out.status.success(), "started with {config}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// An HTTP client without credentials (through the exchange recorder when one runs:
/// [`exchanges`]).
pub fn http() -> reqwest::Client {
    exchanges::client_builder().build().expect("an HTTP client")
}

/// `GET url` without credentials, as `reqwest::get`, through [`http`].
pub async fn http_get(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::Response> {
    http().get(url).send().await
}

/// Status, headers and JSON body (`Null` if the body is not JSON) of a response.
pub async fn read_response(r: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// Requests as one principal.
pub struct Actor<'a> {
    pub server: &'a Server,
    pub token: String,
}

impl Actor<'_> {
    /// A request as this principal, for a test that adds headers of its own (`Prefer`, …).
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.server
            .client
            .request(method, self.server.url(path))
            .header("authorization", format!("Bearer {}", self.token))
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self.request(method, path);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/fhir+json")
                .body(serde_json::to_vec(b).unwrap());
        }
        read_response(req.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let (s, _, b) = self.send(reqwest::Method::GET, path, None).await;
        (s, b)
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Then its fields: the database after the process that used it.
    }
}

// The test database: SQLite or PostgreSQL.

/// The environment variable holding the admin URL of the PostgreSQL server the tests run on
/// (`postgres://user:password@host:port/postgres`); unset, they run on SQLite.
pub const POSTGRES_ENV: &str = "WHG_TEST_POSTGRES";

/// The database one test server runs on.
pub enum TestDatabase {
    /// `whg.db` in the server's directory.
    Sqlite { path: PathBuf },
    /// A database of its own (`whg_t_<random>`) on the server `admin_url` names.
    Postgres { admin_url: String, name: String },
    /// Another server's database (see [`Server::start_beside`]), left as it is.
    Shared { url: String },
}

impl TestDatabase {
    /// The database for a server whose files are in `dir`: PostgreSQL when [`POSTGRES_ENV`] is
    /// set (a new, empty database is created), SQLite otherwise.
    pub fn create(dir: &Path) -> TestDatabase {
        match std::env::var(POSTGRES_ENV) {
            Ok(admin_url) if !admin_url.is_empty() => {
                let name = format!("whg_t_{}", uuid::Uuid::new_v4().simple());
                let database = TestDatabase::Postgres { admin_url, name };
                database
                    .admin(|name| vec![format!("CREATE DATABASE {name}")])
                    .unwrap_or_else(|e| panic!("{e}"));
                database
            }
            _ => TestDatabase::Sqlite {
                path: dir.join("whg.db"),
            },
        }
    }

    pub fn url(&self) -> String {
        match self {
            TestDatabase::Sqlite { path } => format!("sqlite://{}", path.display()),
            TestDatabase::Shared { url } => url.clone(),
            TestDatabase::Postgres { admin_url, name } => {
                let mut url = url::Url::parse(admin_url)
                    .unwrap_or_else(|e| panic!("{POSTGRES_ENV} is not a URL: {e}"));
                url.set_path(name);
                url.to_string()
            }
        }
    }

    /// Deletes everything stored, leaving an empty database (PostgreSQL) or none (SQLite).
    pub fn wipe(&self) {
        match self {
            TestDatabase::Sqlite { path } => {
                for suffix in ["", "-wal", "-shm"] {
                    let file = PathBuf::from(format!("{}{suffix}", path.display()));
                    match std::fs::remove_file(&file) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => panic!("cannot delete {}: {e}", file.display()),
                    }
                }
            }
            TestDatabase::Shared { .. } => {
                panic!("wipe the database through the server that owns it")
            }
            TestDatabase::Postgres { .. } => self
                .admin(|name| {
                    vec![
                        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                        format!("CREATE DATABASE {name}"),
                    ]
                })
                .unwrap_or_else(|e| panic!("{e}")),
        }
    }

    /// Runs `statements(database name)` on the admin database. On a thread of its own with its
    /// own runtime: servers start and stop from synchronous code, inside the tests' runtime.
    fn admin(&self, statements: impl FnOnce(&str) -> Vec<String>) -> Result<(), String> {
        let TestDatabase::Postgres { admin_url, name } = self else {
            return Ok(());
        };
        let statements = statements(name);
        let admin_url = admin_url.clone();
        std::thread::spawn(move || {
            install_drivers();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin_url)
                    .await
                    .map_err(|e| format!("cannot reach {POSTGRES_ENV}: {e}"))?;
                for sql in statements {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
                        .execute(&mut conn)
                        .await
                        .map_err(|e| format!("{sql}: {e}"))?;
                }
                Ok(())
            })
        })
        .join()
        .unwrap_or_else(|_| Err("administering the test database panicked".into()))
    }
}

impl Drop for TestDatabase {
    /// A PostgreSQL database is dropped, so a test run leaves none behind (an SQLite file goes
    /// with the server's directory). Best effort: this may run while a failed test unwinds.
    fn drop(&mut self) {
        let _ = self.admin(|name| vec![format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")]);
    }
}

/// sqlx's drivers for [`sqlx::AnyConnection`] (SQLite and PostgreSQL), installed once.
pub fn install_drivers() {
    sqlx::any::install_default_drivers();
}

/// The id at the end of a response's `Location` header.
/// The resource id a `Location` names: `[base]/[type]/[id]`, or a created version's
/// `[base]/[type]/[id]/_history/[vid]`.
pub fn location_id(headers: &reqwest::header::HeaderMap) -> String {
    let location = headers["location"].to_str().expect("Location header");
    let path = match location.split_once("/_history/") {
        Some((resource, _)) => resource,
        None => location,
    };
    path.rsplit('/').next().unwrap().to_string()
}

pub fn read_json(path: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Fixture files (not `.expected.json`) in a fixtures subdirectory, sorted.
pub fn fixtures(sub: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("fixtures").join(sub))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && !p.to_string_lossy().ends_with(".expected.json")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {sub}");
    files
}

pub fn expected_path(fixture: &Path) -> PathBuf {
    fixture.with_extension("expected.json")
}

/// The first expression of each issue of an OperationOutcome, in order.
pub fn expressions(outcome: &Value) -> Vec<&str> {
    outcome["issue"]
        .as_array()
        .map(|issues| {
            issues
                .iter()
                .filter_map(|i| i["expression"][0].as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// `(expression, code)` of every issue a fixture's `.expected.json` lists, sorted.
pub fn expected_issue_keys(expected: &Value) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = expected["issues"]
        .as_array()
        .unwrap_or_else(|| panic!("no issues listed: {expected}"))
        .iter()
        .map(|i| {
            (
                i["expression"].as_str().unwrap().to_string(),
                i["code"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    keys.sort();
    keys
}

/// `(expression, code)` of every issue in an OperationOutcome, sorted.
pub fn issue_keys(outcome: &Value) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = outcome["issue"]
        .as_array()
        .unwrap_or_else(|| panic!("not an OperationOutcome: {outcome}"))
        .iter()
        .map(|i| {
            (
                i["expression"][0].as_str().unwrap_or("").to_string(),
                i["code"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    keys.sort();
    keys
}

/// Python with the independent FHIR implementation installed (scripts/test.sh provides it).
pub fn python() -> String {
    if let Ok(p) = std::env::var("WHG_PYTHON") {
        return p;
    }
    let ok = Command::new("python3")
        .args(["-c", "import fhir.resources"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the independent FHIR check needs fhir.resources: run the tests with scripts/test.sh"
    );
    "python3".into()
}

/// Checks resources with the independent FHIR implementation; panics listing every problem.
pub fn check_with_independent_fhir(resources: &[Value]) {
    check_fhir_version(resources, "R4");
}

/// The same for FHIR STU3 (the version GP Connect Send Document uses).
pub fn check_with_independent_fhir_stu3(resources: &[Value]) {
    check_fhir_version(resources, "STU3");
}

fn check_fhir_version(resources: &[Value], version: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("resources.json");
    std::fs::write(&file, serde_json::to_vec(resources).unwrap()).unwrap();
    let (ok, text) = run(Command::new(python())
        .arg(root().join("tools/check_fhir.py"))
        .arg(format!("--version={version}"))
        .arg(&file));
    assert!(ok, "independent FHIR check failed:\n{text}");
    assert!(
        text.contains(&format!(
            "checked {} resources: 0 problems",
            resources.len()
        )),
        "{text}"
    );
    if version == "R4" {
        check_with_profile_validators(&file, resources.len());
    }
}

/// Runs a checking tool: whether it succeeded, and everything it printed.
pub fn run(command: &mut Command) -> (bool, String) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Checks R4 resources with @medplum/core against the snapshots in profiles/ (every gateway
/// profile they claim) and with FHIR.js against base R4 (tools/conformance/validate.mjs;
/// scripts/test.sh installs both from npm). WHG_CONFORMANCE_SUMMARY names a file that gathers
/// the counts for docs/conformance.md.
fn check_with_profile_validators(file: &Path, count: usize) {
    let tools = root().join("tools/conformance");
    assert!(
        tools.join("node_modules/@medplum/core").is_dir(),
        "the profile validators are not installed: run the tests with scripts/test.sh (npm ci --prefix tools/conformance)"
    );
    let mut command = Command::new("node");
    command.arg(tools.join("validate.mjs"));
    if let Ok(summary) = std::env::var("WHG_CONFORMANCE_SUMMARY") {
        command.arg(format!("--summary={summary}"));
    }
    let (ok, text) = run(command.arg(file));
    assert!(
        ok && text.contains(&format!("validated {count} resources")),
        "profile validation (medplum, FHIR.js) failed:\n{text}"
    );
}

// Referrals for the tests: a fixture made into a different person with its own id.

pub fn referral(name: &str) -> Value {
    read_json(
        &root()
            .join("fixtures/referrals/valid")
            .join(format!("{name}.json")),
    )
}

/// The `n`th synthetic NHS number (999 range) that passes Modulus 11.
pub fn nhs_number(n: usize) -> String {
    (0..)
        .map(|i| format!("999{:06}", 100_000 + i * 7))
        .flat_map(|nine| (0..10).map(move |d| format!("{nine}{d}")))
        .filter(|c| whg::fhir::identifiers::nhs_number(c).is_ok())
        .nth(n)
        .unwrap()
}

/// A referral for a different person (`n`), with its own id, to `service`.
pub fn referral_for(n: usize, service: &str) -> Value {
    let mut r = referral("01-gp-work-stress-off-sick");
    r["referralId"] = json!(format!("CONSENT-TEST-{n}"));
    r["patient"]["nhsNumber"] = json!(nhs_number(n));
    r["targetService"] = json!(service);
    r
}

/// Posts a referral as its practice; returns (ServiceRequest id, Patient id).
pub async fn refer(server: &Server, body: &Value) -> (String, String) {
    let (status, headers, outcome) = server.post_json("/api/v1/referrals", body).await;
    assert_eq!(status, 201, "{outcome}");
    let sr_id = location_id(&headers);
    let (_, sr) = server
        .as_(whg::auth::Principal::practice(DEFAULT_PRACTICE))
        .get(&format!("/fhir/ServiceRequest/{sr_id}"))
        .await;
    let patient = sr["subject"]["reference"]
        .as_str()
        .unwrap()
        .trim_start_matches("Patient/")
        .to_string();
    (sr_id, patient)
}

/// The referral's Consent whose provision names `recipient`.
pub async fn consent_for(server: &Server, patient: &str, recipient: &str) -> Value {
    let (status, bundle) = server
        .as_(whg::auth::Principal::practice(DEFAULT_PRACTICE))
        .get(&format!(
            "/fhir/Consent?patient=Patient/{patient}&status=active"
        ))
        .await;
    assert_eq!(status, 200, "{bundle}");
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .find(|c| {
            c.to_string()
                .contains(&format!("consent-recipient\",\"code\":\"{recipient}"))
        })
        .unwrap_or_else(|| panic!("no {recipient} consent in {bundle}"))
}

impl Server {
    /// Starts the gateway as [`Server::start_with`] does, with the process's umask set to `umask`
    /// (0o000 lets everything a program creates be world-readable unless it says otherwise).
    pub fn start_with_umask(extra_config: &str, umask: u32) -> Server {
        Server::start_under(extra_config, Some(umask), &[])
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// A command running `whg`, under `umask` when given (through `sh`, which `exec`s `whg`: the
/// process id is whg's).
pub fn whg_command(umask: Option<u32>) -> Command {
    match umask {
        None => Command::new(WHG),
        Some(mask) => {
            let mut sh = Command::new("sh");
            sh.arg("-c")
                .arg(format!("umask {mask:03o} && exec \"$0\" \"$@\""))
                .arg(WHG);
            sh
        }
    }
}

// MESH: NHS England's `mesh-sandbox` on loopback, and mailboxes on it.

pub const MESH_KEY: &str = "sandbox-shared-key";
/// The sandbox's canned mailboxes all have this password.
pub const MESH_PASSWORD: &str = "password";
pub const GATEWAY_MAILBOX: &str = "X26ABC1";
pub const PRACTICE_MAILBOX: &str = "X26ABC2";
/// The sandbox's third canned mailbox: a mailbox no letter goes to.
pub const OTHER_MAILBOX: &str = "X26ABC3";

/// NHS England's MESH server (`mesh-sandbox` from PyPI), run on loopback for one test.
pub struct MeshSandbox {
    child: std::process::Child,
    pub url: String,
}

impl MeshSandbox {
    pub async fn start() -> MeshSandbox {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(python())
            .args([
                "-m",
                "uvicorn",
                "mesh_sandbox.api:app",
                "--host",
                "127.0.0.1",
                "--port",
            ])
            .arg(port.to_string())
            .env("STORE_MODE", "memory")
            .env("AUTH_MODE", "full")
            .env("SHARED_KEY", MESH_KEY)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mesh-sandbox (pip install -r tools/requirements.txt)");
        let sandbox = MeshSandbox {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let until = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/health", sandbox.url)).await
                && r.status().is_success()
            {
                return sandbox;
            }
            assert!(
                std::time::Instant::now() < until,
                "mesh-sandbox did not start"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The gateway's `[mesh]` table for this sandbox's [`GATEWAY_MAILBOX`], its secrets written
    /// owner-only in `dir`; more keys of the table may follow it.
    pub fn gateway_config(&self, dir: &Path) -> String {
        let password = dir.join("mesh-password");
        let key = dir.join("mesh-shared-key");
        whg::secret_file::create(&password, MESH_PASSWORD.as_bytes()).unwrap();
        whg::secret_file::create(&key, MESH_KEY.as_bytes()).unwrap();
        format!(
            "[mesh]\nurl = \"{}\"\nmailbox = \"{GATEWAY_MAILBOX}\"\npassword_file = {:?}\nshared_key_file = {:?}\n",
            self.url,
            password.display().to_string(),
            key.display().to_string()
        )
    }

    /// The mailbox `id` on this sandbox, as its owner's system uses it.
    pub fn mailbox(&self, id: &'static str) -> GpMailbox {
        GpMailbox {
            http: reqwest::Client::new(),
            url: self.url.clone(),
            mailbox: id,
        }
    }
}

impl Drop for MeshSandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A system on the other side of MESH (a GP practice's, or anyone else with a mailbox): reads its
/// mailbox and sends, as a GP system taking GP Connect Send Document does.
pub struct GpMailbox {
    http: reqwest::Client,
    url: String,
    pub mailbox: &'static str,
}

/// One message as the practice's system downloads it.
pub struct Delivered {
    pub id: String,
    pub workflow: String,
    pub subject: String,
    pub body: Value,
}

impl GpMailbox {
    fn auth(&self) -> String {
        whg::delivery::mesh::authorization(
            self.mailbox,
            MESH_PASSWORD,
            MESH_KEY,
            &uuid::Uuid::new_v4().to_string(),
            chrono::Utc::now(),
        )
    }

    /// A request to this mailbox, authorised.
    pub fn request(&self, method: reqwest::Method, rest: &str) -> reqwest::RequestBuilder {
        self.http
            .request(
                method,
                format!("{}/messageexchange/{}{rest}", self.url, self.mailbox),
            )
            .header("authorization", self.auth())
            .header("accept", "application/vnd.mesh.v2+json")
    }

    /// The ids of the messages waiting in this mailbox's inbox (MESH lists at most 500).
    pub async fn inbox(&self) -> Vec<String> {
        let inbox: Value = self
            .request(reqwest::Method::GET, "/inbox")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        inbox["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("{inbox}"))
            .iter()
            .map(|m| m.as_str().unwrap().to_string())
            .collect()
    }

    /// Waits for the next message, downloads and acknowledges it to MESH.
    pub async fn next(&self) -> Delivered {
        let until = std::time::Instant::now() + Duration::from_secs(20);
        let id = loop {
            if let Some(id) = self.inbox().await.into_iter().next() {
                break id;
            }
            assert!(
                std::time::Instant::now() < until,
                "nothing reached the practice's mailbox"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let r = self
            .request(reqwest::Method::GET, &format!("/inbox/{id}"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let header = |n: &str| r.headers()[n].to_str().unwrap().to_string();
        let (workflow, subject) = (header("mex-workflowid"), header("mex-subject"));
        let body = r.json().await.unwrap();
        let acked = self
            .request(
                reqwest::Method::PUT,
                &format!("/inbox/{id}/status/acknowledged"),
            )
            .send()
            .await
            .unwrap();
        assert!(acked.status().is_success());
        Delivered {
            id,
            workflow,
            subject,
            body,
        }
    }

    /// Acknowledges a message both ways, as a practice system that files it: 20013, then 30001.
    pub async fn file(&self, message: &Delivered) {
        let original = message_header_id(message);
        self.respond(&original, "20013", "Success").await;
        self.respond(&original, "30001", "Success").await;
    }

    /// Sends the gateway an ITK3 response with `code` for the message whose MessageHeader id is
    /// `original`.
    pub async fn respond(&self, original: &str, code: &str, display: &str) {
        let response = itk_response(original, code, display, self.mailbox);
        self.send(
            GATEWAY_MAILBOX,
            "GPCONNECT_SEND_DOCUMENT_ACK",
            original,
            response.to_string().into_bytes(),
        )
        .await;
    }

    /// Sends `body` to the mailbox `to` on `workflow`; returns MESH's message id.
    pub async fn send(&self, to: &str, workflow: &str, local_id: &str, body: Vec<u8>) -> String {
        let r = self
            .request(reqwest::Method::POST, "/outbox")
            .header("content-type", "application/fhir+json")
            .header("mex-from", self.mailbox)
            .header("mex-to", to)
            .header("mex-workflowid", workflow)
            .header("mex-localid", local_id)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let answer: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 202, "{answer}");
        answer["message_id"].as_str().unwrap().to_string()
    }
}

/// An ITK3 response message, as the gateway's own library builds one for a practice system
/// (`whg mock-practice` answers with it too).
pub fn itk_response(original: &str, code: &str, display: &str, from: &str) -> Value {
    whg::delivery::mesh::itk_response(original, code, display, from)
}

/// The ITK MessageHeader id of a letter as delivered: what its acknowledgements answer.
pub fn message_header_id(d: &Delivered) -> String {
    d.body["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A message as a golden file holds it: every UUID named `<id-N>` by first appearance, every
/// instant `<instant>`, today's date `<today>`, the test server's base URL `<base>`, and an
/// attachment's bytes, with the `hash` and `size` that follow from them (or only its hash, as an
/// approval names what it approved), `<attachment>` (a PDF carries the day it was made; its
/// text is checked on its own). Everything else is
/// compared byte for byte.
pub fn golden_form(message: &Value, base: &str) -> Value {
    fn is_uuid(s: &str) -> bool {
        let parts: Vec<&str> = s.split('-').collect();
        parts.len() == 5
            && parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
            && parts
                .iter()
                .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
    }
    fn is_instant(s: &str) -> bool {
        s.len() >= 20
            && s.as_bytes()[4] == b'-'
            && s.as_bytes()[10] == b'T'
            && chrono::DateTime::parse_from_rfc3339(s).is_ok()
    }
    fn walk(v: &Value, ids: &mut Vec<String>, base: &str, today: &str) -> Value {
        match v {
            Value::Object(fields) => {
                // An attachment (R4 Attachment: contentType with data, hash, size).
                let attachment = fields.contains_key("contentType")
                    && ["data", "content", "hash"]
                        .iter()
                        .any(|k| fields.contains_key(*k));
                Value::Object(
                    fields
                        .iter()
                        .map(|(k, v)| {
                            if attachment
                                && matches!(k.as_str(), "data" | "content" | "hash" | "size")
                            {
                                (k.clone(), json!("<attachment>"))
                            } else {
                                (k.clone(), walk(v, ids, base, today))
                            }
                        })
                        .collect(),
                )
            }
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| walk(v, ids, base, today)).collect())
            }
            Value::String(s) => {
                if is_instant(s) {
                    return json!("<instant>");
                }
                if s == today {
                    return json!("<today>");
                }
                let mut out = s.replace(base, "<base>");
                // UUIDs anywhere in the string (ids, urn:uuid:, references).
                let mut i = 0;
                while i + 36 <= out.len() {
                    let candidate = &out[i..i + 36];
                    if out.is_char_boundary(i) && out.is_char_boundary(i + 36) && is_uuid(candidate)
                    {
                        let candidate = candidate.to_string();
                        let n = match ids.iter().position(|x| *x == candidate) {
                            Some(n) => n,
                            None => {
                                ids.push(candidate.clone());
                                ids.len() - 1
                            }
                        };
                        let name = format!("<id-{n}>");
                        out.replace_range(i..i + 36, &name);
                        i += name.len();
                    } else {
                        i += 1;
                    }
                }
                json!(out)
            }
            other => other.clone(),
        }
    }
    let today = chrono::Utc::now().date_naive().to_string();
    walk(message, &mut Vec::new(), base, &today)
}

/// Compares `actual` with the golden file at `path` (`UPDATE_EXPECTED=1` rewrites it).
pub fn check_golden(path: &Path, actual: &Value) {
    if std::env::var("UPDATE_EXPECTED").is_ok() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, serde_json::to_string_pretty(actual).unwrap() + "\n").unwrap();
        return;
    }
    let expected = read_json(path);
    assert!(
        expected == *actual,
        "{} differs from what the gateway now sends: run UPDATE_EXPECTED=1 and review the diff\n{}",
        path.display(),
        serde_json::to_string_pretty(actual).unwrap()
    );
}

/// A tool of ours in Python that serves on a port of its own (tools/otlp_receiver.py,
/// tools/smtp_receiver.py): started with the file it records to, ready once it prints
/// "listening on PORT"; killed when dropped.
pub struct RecordingServer {
    child: Child,
    pub port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl RecordingServer {
    pub fn start(script: &str) -> RecordingServer {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("recorded.jsonl");
        let mut child = Command::new(python())
            .arg(root().join(script))
            .arg(&out)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{script} starts (tools/requirements.txt installed?): {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{script} did not start: {line:?}"));
        RecordingServer {
            child,
            port,
            out,
            _dir: dir,
        }
    }

    /// Every record so far, one JSON value per line written.
    /// The e-mails an SMTP recorder (tools/smtp_receiver.py) took for `to`, once there are `n`
    /// of them or `secs` have passed.
    pub async fn mails_to(&self, to: &str, n: usize, secs: u64) -> Vec<Value> {
        let until = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let mails: Vec<Value> = self
                .records()
                .into_iter()
                .filter(|m| m["to"][0] == to)
                .collect();
            if mails.len() >= n || std::time::Instant::now() > until {
                return mails;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for RecordingServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where Chromium is, if this machine has it; CI installs it (`.ci/run`) and must not skip.
pub fn chromium() -> Option<String> {
    let path = std::env::var("WHG_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if std::path::Path::new(&path).exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run the browser tests: install Debian's chromium (scripts/test.sh does)"
    );
    eprintln!("skipped: no Chromium at {path} (apt-get install chromium)");
    None
}

/// playwright-core and axe-core for the browser tests (tools/browser): scripts/test.sh
/// installs them; a `cargo test` on its own may need to.
pub fn install_browser_tools() {
    let tools = root().join("tools/browser");
    if !tools.join("node_modules/playwright-core").exists() {
        let (ok, out) = run(Command::new("npm")
            .args([
                "ci",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
            ])
            .arg(&tools));
        assert!(ok, "{out}");
    }
}
