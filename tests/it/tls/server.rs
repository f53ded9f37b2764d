//! A PostgreSQL of the test binary's own with TLS on: a CA and a server certificate for
//! `localhost` and `127.0.0.1` made with rcgen, `initdb` and `postgres` into a temporary
//! directory on a free port (as the `postgres` OS user when the tests run as root), reachable
//! over TLS only (`hostssl` lines alone in `pg_hba.conf`), also on 127.0.0.2 (an address the
//! certificate does not name). One server serves every test of the binary; it stops when the
//! test process exits (its wrapper shell reads our end of a pipe and stops the server at EOF).

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose, SanType};

/// The running server and the files a client needs.
pub struct TlsServer {
    pub port: u16,
    /// The CA that signed the server's certificate (PEM).
    pub ca: PathBuf,
    /// Another CA, which signed nothing the server shows.
    pub other_ca: PathBuf,
    /// The server's certificate and key (for a pooler in front of it).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Where the files live.
    pub dir: PathBuf,
    /// Kept open: the wrapper stops the server when it closes (at process exit).
    _lifeline: Mutex<(Child, ChildStdin)>,
}

const INSTALL: &str = "the TLS tests start a PostgreSQL of their own and need its server \
     binaries (initdb, postgres, pg_isready): install them with `apt-get install postgresql-15` \
     (bash .ci/run does), or set TENANTRY_TEST_PG_BIN to the directory that holds them";

/// The directory of PostgreSQL's server binaries.
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("TENANTRY_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|bin| bin.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("no initdb under /usr/lib/postgresql/*/bin: {INSTALL}"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program args..`, as the `postgres` OS user when we are root (PostgreSQL refuses root).
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let runuser = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("runuser (util-linux), to run PostgreSQL as the postgres user");
        let mut cmd = Command::new(runuser);
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = KeyPair::generate().expect("CA key");
    (params.self_signed(&key).expect("CA certificate"), key)
}

fn write(path: &Path, contents: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The server of this test binary, started on first use.
pub fn server() -> &'static TlsServer {
    static SERVER: OnceLock<TlsServer> = OnceLock::new();
    SERVER.get_or_init(start)
}

fn start() -> TlsServer {
    let bin = bin_dir();
    for tool in ["initdb", "postgres", "pg_isready"] {
        assert!(
            bin.join(tool).exists(),
            "{} is missing: {INSTALL}",
            bin.join(tool).display()
        );
    }
    let dir = std::env::temp_dir().join(format!(
        "tenantry-tls-{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::create_dir_all(&dir).expect("the server's directory");

    let (ca_cert, ca_key) = ca("tenantry test CA");
    let (other_cert, _) = ca("another CA");
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("server params");
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let server_key = KeyPair::generate().expect("server key");
    let server_cert = params
        .signed_by(&server_key, &ca_cert, &ca_key)
        .expect("server certificate");
    let ca = dir.join("ca.pem");
    let other_ca = dir.join("other-ca.pem");
    let cert = dir.join("server.pem");
    let key = dir.join("server.key");
    write(&ca, &ca_cert.pem(), 0o644);
    write(&other_ca, &other_cert.pem(), 0o644);
    write(&cert, &server_cert.pem(), 0o644);
    // PostgreSQL wants its key private to its owner.
    write(&key, &server_key.serialize_pem(), 0o600);
    let data = dir.join("data");
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .expect("chown");
        assert!(status.success(), "chown of {} failed", dir.display());
    }

    let out = as_postgres(&bin.join("initdb"))
        .args([
            "--auth=trust",
            "--no-sync",
            "--username=postgres",
            "-E",
            "UTF8",
            "-D",
        ])
        .arg(&data)
        .output()
        .unwrap_or_else(|e| panic!("cannot run initdb: {e}: {INSTALL}"));
    assert!(
        out.status.success(),
        "initdb failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // TLS only, over TCP; no Unix socket of its own beside the main server's.
    let hba = "hostssl all all 127.0.0.1/32 trust\nhostssl all all 127.0.0.2/32 trust\n";
    write(&data.join("pg_hba.conf"), hba, 0o600);
    let port = free_port();
    let conf = format!(
        "listen_addresses = '127.0.0.1,127.0.0.2'\nport = {port}\nunix_socket_directories = ''\n\
         ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nfsync = off\n\
         max_connections = 100\nshared_buffers = 16MB\n",
        cert.display(),
        key.display()
    );
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .expect("postgresql.conf");
    file.write_all(conf.as_bytes()).expect("postgresql.conf");
    if is_root() {
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status();
    }

    // The wrapper runs the server and stops it (and removes its files) when its standard input
    // reaches EOF, which happens when this process exits, however it exits.
    let script =
        r#"postgres -D "$1" >"$2" 2>&1 & pid=$!; read _; kill -INT $pid; wait $pid; rm -rf "$3""#;
    let mut child = as_postgres(Path::new("/bin/sh"))
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .args(["-c", script, "sh"])
        .arg(&data)
        .arg(dir.join("server.log"))
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start postgres: {e}: {INSTALL}"));
    let stdin = child.stdin.take().expect("the wrapper's stdin");

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ready {
            break;
        }
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            panic!("the TLS test server did not start on port {port}:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    TlsServer {
        port,
        ca,
        other_ca,
        cert,
        key,
        dir,
        _lifeline: Mutex::new((child, stdin)),
    }
}

impl TlsServer {
    /// The URL of `database` as `role` on `host` (`127.0.0.1`, `localhost` or `127.0.0.2`), with
    /// `params` (`sslmode=..&sslrootcert=..`).
    pub fn url(&self, host: &str, role: &str, database: &str, params: &str) -> String {
        let sep = if params.is_empty() { "" } else { "?" };
        format!(
            "postgres://{role}@{host}:{}/{database}{sep}{params}",
            self.port
        )
    }

    /// `sslmode=verify-full&sslrootcert=<the CA>`.
    pub fn verify_full(&self) -> String {
        format!("sslmode=verify-full&sslrootcert={}", self.ca.display())
    }
}
