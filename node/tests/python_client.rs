//! The official Python client (`elasticsearch` 8.19 from PyPI) drives cross-cluster
//! replication between two real `tandem` processes, used as shipped:
//! `tests/python/ccr_with_official_client.py` creates, indexes, follows, reads the stats,
//! pauses, unfollows and searches, and asserts on every answer;
//! `tests/python/secure_ccr_with_official_client.py` does it with TLS and security on (users,
//! roles, API keys, a cross-cluster API key in the follower's keystore).
//!
//! The client is installed with pip into a virtual environment under the cargo target
//! directory, created once and reused while it holds the right version. A marker file written
//! after a verified install tells a complete environment from a half-installed one (which is
//! removed and redone); an exclusive `flock` keeps two test runs sharing the target directory
//! from installing into the same place at once. A failed install fails the test: the client
//! is a requirement here, never a reason to skip.

mod common;

use std::fs::{self, File};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::TandemProcess;

/// The client release line the test pins (`pip install elasticsearch==8.19.*`).
const CLIENT_REQUIREMENT: &str = "elasticsearch==8.19.*";
/// What `elasticsearch.__versionstr__` must start with.
const CLIENT_VERSION_PREFIX: &str = "8.19.";
/// Longest the creation of the virtual environment and the pip install may take together.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Longest wait for another test run holding the install lock.
const LOCK_TIMEOUT: Duration = Duration::from_secs(6 * 60);
/// Longest the script may run (it bounds each of its own waits at 90 seconds).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Written into the virtual environment once the client is installed and imports.
const READY_MARKER: &str = "tandem-client-ready";

/// The Python that creates the virtual environment: `TANDEM_TEST_PYTHON`, or `python3`.
fn base_python() -> String {
    std::env::var("TANDEM_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Where the virtual environment lives: next to the other test scratch of the target
/// directory, so `cargo clean` removes it.
fn venv_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-elasticsearch-8.19")
}

fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

/// A finished child process: how it ended and everything it printed.
struct Finished {
    status: Option<ExitStatus>,
    output: String,
}

impl Finished {
    fn success(&self) -> bool {
        self.status.is_some_and(|status| status.success())
    }

    fn describe(&self) -> String {
        match self.status {
            Some(status) => format!("{status}"),
            None => "killed after its time limit".to_string(),
        }
    }
}

fn drain(mut stream: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Runs `command` to completion, or kills it at `deadline`; collects stdout then stderr.
fn run_until(mut command: Command, deadline: Instant) -> Finished {
    let description = format!("{command:?}");
    let mut child: Child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {description}: {error}"));
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = format!(
        "$ {description}\n{}{}",
        stdout.join().unwrap(),
        stderr.join().unwrap()
    );
    Finished { status, output }
}

/// The installed client's version, if the environment's Python can import it.
fn installed_client_version(venv: &Path) -> Option<String> {
    let python = venv_python(venv);
    if !python.exists() {
        return None;
    }
    let output = Command::new(python)
        .args([
            "-c",
            "import elasticsearch; print(elasticsearch.__versionstr__)",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (output.status.success() && version.starts_with(CLIENT_VERSION_PREFIX)).then_some(version)
}

/// Holds an exclusive `flock` on a file next to the environment until dropped (closing the
/// file releases it).
struct InstallLock {
    _file: File,
}

impl InstallLock {
    fn acquire(path: &Path) -> InstallLock {
        let file = File::create(path).unwrap();
        let started = Instant::now();
        loop {
            // SAFETY: flock(2) on a descriptor this function owns.
            let locked =
                unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
            if locked {
                return InstallLock { _file: file };
            }
            assert!(
                started.elapsed() < LOCK_TIMEOUT,
                "another test run held {} for over {LOCK_TIMEOUT:?}",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The virtual environment with the client, created (or redone) when missing, half-installed
/// or of another version.
fn client_venv() -> PathBuf {
    let venv = venv_dir();
    fs::create_dir_all(venv.parent().unwrap()).unwrap();
    let _lock = InstallLock::acquire(&venv.parent().unwrap().join("python-elasticsearch.lock"));
    let marker = venv.join(READY_MARKER);
    if marker.exists() {
        if let Some(version) = installed_client_version(&venv) {
            if fs::read_to_string(&marker).unwrap_or_default().trim() == version {
                return venv;
            }
        }
    }
    if venv.exists() {
        fs::remove_dir_all(&venv).unwrap();
    }
    let deadline = Instant::now() + INSTALL_TIMEOUT;
    let mut create = Command::new(base_python());
    create.args(["-m", "venv"]).arg(&venv);
    let created = run_until(create, deadline);
    assert!(
        created.success(),
        "cannot create a Python virtual environment ({}; set TANDEM_TEST_PYTHON to another \
         python3):\n{}",
        created.describe(),
        created.output
    );
    let mut install = Command::new(venv_python(&venv));
    install
        .args([
            "-m",
            "pip",
            "install",
            "--no-input",
            "--disable-pip-version-check",
        ])
        .arg(CLIENT_REQUIREMENT)
        .env("PIP_NO_INPUT", "1");
    let installed = run_until(install, deadline);
    assert!(
        installed.success(),
        "cannot install {CLIENT_REQUIREMENT} from PyPI within {INSTALL_TIMEOUT:?} ({}):\n{}",
        installed.describe(),
        installed.output
    );
    let version = installed_client_version(&venv).unwrap_or_else(|| {
        panic!(
            "pip installed {CLIENT_REQUIREMENT} but it does not import as {CLIENT_VERSION_PREFIX}x:\n{}",
            installed.output
        )
    });
    fs::write(&marker, &version).unwrap();
    venv
}

#[test]
fn the_official_python_client_drives_cross_cluster_replication() {
    let venv = client_venv();
    let dir = tempfile::tempdir().unwrap();
    let leader = TandemProcess::start("leader", &dir.path().join("leader"));
    let follower = TandemProcess::start("follower", &dir.path().join("follower"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("python")
        .join("ccr_with_official_client.py");
    let mut run = Command::new(venv_python(&venv));
    run.arg(&script)
        .arg(&leader.url)
        .arg(&follower.url)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let finished = run_until(run, Instant::now() + SCRIPT_TIMEOUT);
    assert!(
        finished.success(),
        "the Python client script failed ({}):\n{}",
        finished.describe(),
        finished.output
    );
    println!("{}", finished.output);
}

#[test]
fn the_official_python_client_drives_secure_cross_cluster_replication() {
    let venv = client_venv();
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let made = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["certs", "--node", "leader", "--node", "follower", "--out"])
        .arg(&certs)
        .output()
        .expect("run tandem certs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let start = |name: &str| {
        let file = |suffix: &str| certs.join(format!("{name}.{suffix}")).display().to_string();
        let ca = certs.join("ca.crt").display().to_string();
        let args = [
            "--security".to_string(),
            "--tls-cert".to_string(),
            file("crt"),
            "--tls-key".to_string(),
            file("key"),
            "--tls-ca".to_string(),
            ca,
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        TandemProcess::start_with(name, &dir.path().join(name), "127.0.0.1:0", &args)
    };
    let leader = start("leader");
    let follower = start("follower");
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("python")
        .join("secure_ccr_with_official_client.py");
    let mut run = Command::new(venv_python(&venv));
    run.arg(&script)
        .arg(&leader.url)
        .arg(&follower.url)
        .arg(certs.join("ca.crt"))
        .arg(leader.elastic_password())
        .arg(follower.elastic_password())
        .arg(env!("CARGO_BIN_EXE_tandem"))
        .arg(dir.path().join("follower"))
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let finished = run_until(run, Instant::now() + SCRIPT_TIMEOUT);
    assert!(
        finished.success(),
        "the secure Python client script failed ({}):\n{}",
        finished.describe(),
        finished.output
    );
    println!("{}", finished.output);
}
