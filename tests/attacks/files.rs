//! Attack 12: another local user reads personal data or secrets off the disk. The database, its
//! `-wal` and `-shm` files, exports and keys must be owner-only whatever the umask the gateway
//! was started under, and a key file that others can already read is refused before anything
//! starts.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// The most permissive umask: whatever a program does not restrict itself is world-readable
/// and world-writable.
const OPEN_UMASK: u32 = 0o000;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Every file under `dir`, however deep.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// Runs `whg ARGS` under [`OPEN_UMASK`] and waits for it.
fn whg_open_umask(args: &[&str]) -> std::process::Output {
    whg_command(Some(OPEN_UMASK))
        .args(args)
        .output()
        .expect("run whg")
}

#[tokio::test(flavor = "multi_thread")]
async fn files_the_gateway_writes_are_owner_only_whatever_the_umask() {
    let server = Server::start_with_umask("", OPEN_UMASK);
    refer(&server, &referral_for(120, "sheffield-whs")).await;

    // While it runs, an SQLite database is in three files; SQLite made the -wal and -shm itself.
    // (On PostgreSQL the database is the server's, in its own data directory: the part about
    // these files is SQLite's only; the exports and keys below are the gateway's on both.)
    let database_files = if server.on_postgres() { 0 } else { 3 };
    if !server.on_postgres() {
        let db = server.dir.path().join("whg.db");
        let wal = server.dir.path().join("whg.db-wal");
        let shm = server.dir.path().join("whg.db-shm");
        for file in [&db, &wal, &shm] {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
    }

    // The export, and the pseudonym key it creates on first use, under the same umask; then an
    // export written over an older, world-readable one.
    let config = server.config_path();
    let database = server.database_url();
    let out = server.dir.path().join("evaluation.ndjson");
    let export = |out: &Path| {
        let done = whg_open_umask(&[
            "export",
            "--out",
            out.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--database-url",
            &database,
        ]);
        assert!(
            done.status.success(),
            "{}",
            String::from_utf8_lossy(&done.stderr)
        );
    };
    export(&out);
    assert_eq!(mode(&out), 0o600, "the export");
    assert_eq!(
        mode(&server.dir.path().join("pseudonym-key")),
        0o600,
        "the pseudonym key"
    );
    let older = server.dir.path().join("older-export.ndjson");
    std::fs::write(&older, "an older export\n").unwrap();
    std::fs::set_permissions(&older, std::fs::Permissions::from_mode(0o644)).unwrap();
    export(&older);
    assert_eq!(mode(&older), 0o600, "an export written over an older one");
    assert_ne!(
        std::fs::read_to_string(&older).unwrap(),
        "an older export\n"
    );

    // A signing key the gateway creates, in a directory it creates for it.
    let key_config = server.dir.path().join("new-key.toml");
    let new_key = server.dir.path().join("keys/new/signing-key.pem");
    std::fs::write(
        &key_config,
        format!(
            "[auth]\nsigning_key = {:?}\n",
            new_key.display().to_string()
        ),
    )
    .unwrap();
    let token = whg_open_umask(&[
        "token",
        "--role",
        "practice",
        "--org",
        DEFAULT_PRACTICE,
        "--config",
        key_config.to_str().unwrap(),
    ]);
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    assert_eq!(mode(&new_key), 0o600, "the signing key");
    assert_eq!(
        mode(&server.dir.path().join("keys/new")),
        0o700,
        "its directory"
    );

    // Nothing the gateway wrote lets anyone else in (the two configuration files are the test's).
    let written: Vec<(PathBuf, u32)> = files_under(server.dir.path())
        .into_iter()
        .filter(|f| *f != config && *f != key_config)
        .map(|f| {
            let m = mode(&f);
            (f, m)
        })
        .collect();
    assert!(written.len() >= 4 + database_files, "{written:?}");
    for (file, m) in &written {
        assert_eq!(m & 0o077, 0, "{} is {m:04o}", file.display());
    }
}

/// Runs `whg ARGS` with a time limit: a gateway that wrongly starts is killed and reported.
fn run_bounded(mut command: Command) -> (Option<i32>, String, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run whg");
    let until = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > until {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// On SQLite whichever backend the suite runs on: that no database file was created is part of
/// what it checks.
#[test]
fn a_key_file_others_can_read_is_refused_and_nothing_starts() {
    let dir = tempfile::tempdir().unwrap();
    let signing_key = dir.path().join("signing-key.pem");
    let pseudonym_key = dir.path().join("pseudonym-key");
    let db = dir.path().join("whg.db");
    whg::auth::SigningKey::generate()
        .save(&signing_key)
        .unwrap();
    std::fs::write(&pseudonym_key, "ab".repeat(32)).unwrap();
    let config = dir.path().join("whg.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nsigning_key = {:?}\n[consent]\npseudonym_key = {:?}\n",
            signing_key.display().to_string(),
            pseudonym_key.display().to_string()
        ),
    )
    .unwrap();
    let database_url = format!("sqlite://{}", db.display());

    // The signing key as a careless copy leaves it: readable by everyone.
    std::fs::set_permissions(&signing_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = std::fs::read(&signing_key).unwrap();
    let mut serve = whg_command(None);
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url"])
        .arg(&database_url)
        .arg("--config")
        .arg(&config);
    let (code, stdout, stderr) = run_bounded(serve);
    assert_eq!(code, Some(1), "refused, not killed: {stdout}{stderr}");
    assert!(!stdout.contains("listening"), "{stdout}");
    let fix = format!("chmod 600 {}", signing_key.display());
    assert!(
        stderr.contains(&fix) && stderr.contains("mode 0644"),
        "the error says what is wrong and how to fix it: {stderr}"
    );
    assert!(!db.exists(), "no database was created");
    assert_eq!(
        (mode(&signing_key), std::fs::read(&signing_key).unwrap()),
        (0o644, before),
        "the key is left for the operator to judge"
    );

    // The pseudonym key, group-readable: no export is written.
    std::fs::set_permissions(&signing_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&pseudonym_key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = dir.path().join("export.ndjson");
    let mut export = whg_command(None);
    export
        .args(["export", "--out"])
        .arg(&out)
        .arg("--config")
        .arg(&config)
        .arg("--database-url")
        .arg(&database_url);
    let (code, _, stderr) = run_bounded(export);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("chmod 600 {}", pseudonym_key.display())),
        "{stderr}"
    );
    assert!(!out.exists() && !db.exists(), "nothing exported or opened");

    // Once owner-only, the gateway starts with the same key.
    std::fs::set_permissions(&pseudonym_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut export = whg_command(None);
    export
        .args(["export", "--out"])
        .arg(&out)
        .arg("--config")
        .arg(&config)
        .arg("--database-url")
        .arg(&database_url);
    let (code, _, stderr) = run_bounded(export);
    assert_eq!(code, Some(0), "{stderr}");
}

/// Starts `whg serve` on `database_url` with `config`, its log going to `log`; returns once it
/// listens.
fn serve_until_listening(config: &Path, database_url: &str, log: &Path) -> std::process::Child {
    use std::io::BufRead;
    let mut child = whg_command(None)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            database_url,
        ])
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start whg");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.starts_with("whg listening on ") {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = child.kill();
        panic!(
            "whg did not start: {}",
            std::fs::read_to_string(log).unwrap()
        );
    }
    child
}

/// A database restored or copied by hand with a careless mode: the gateway closes it to others
/// at once and says so, rather than staying down until someone comes. About SQLite's files, so
/// on SQLite whichever backend the suite runs on.
#[test]
fn a_database_others_can_read_is_made_owner_only_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("whg.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nsigning_key = {:?}\n",
            dir.path().join("signing-key.pem").display().to_string()
        ),
    )
    .unwrap();
    let db = dir.path().join("restored.db");
    let database_url = format!("sqlite://{}", db.display());
    let log = dir.path().join("whg.log");

    // Killed, so that its -wal and -shm stay behind too; then all three opened to everyone.
    let mut first = serve_until_listening(&config, &database_url, &log);
    first.kill().unwrap();
    first.wait().unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let file = dir.path().join(format!("restored.db{suffix}"));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    let mut second = serve_until_listening(&config, &database_url, &log);
    let modes: Vec<u32> = ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| mode(&dir.path().join(format!("restored.db{suffix}"))))
        .collect();
    let _ = second.kill();
    let _ = second.wait();
    assert_eq!(modes, [0o600; 3], "the database, its -wal and -shm");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("database-permissions") && logged.contains("0644"),
        "the operator is told: {logged}"
    );
}
