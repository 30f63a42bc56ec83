//! The nats-server the benchmark starts, and the CPU time of a process.

use super::*;

/// The nats-server executable: `$PLUGHOST_NATS_SERVER`, else on `PATH`.
pub(crate) fn nats_server_executable() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PLUGHOST_NATS_SERVER").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

/// A `nats-server -js` on a free loopback port, its store in a temp dir;
/// killed on drop.
pub(crate) struct Server {
    pub(crate) child: Child,
    port: u16,
    /// The HTTP monitoring port (`/jsz`: what the server thinks of consumers).
    monitor: u16,
    _store: tempfile::TempDir,
}

impl Server {
    pub(crate) fn start(exe: &Path) -> Server {
        let store = tempfile::tempdir().expect("temp dir");
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port()
        };
        let (port, monitor) = (free(), free());
        let child = Command::new(exe)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", &monitor.to_string(), "-js", "-sd"])
            .arg(store.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", exe.display()));
        let server = Server {
            child,
            port,
            monitor,
            _store: store,
        };
        let deadline = Instant::now() + START_LIMIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server ({}) did not listen on port {port} within {START_LIMIT:?}",
                exe.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's view of the JetStream consumers (`GET /jsz`), for a
    /// failure's message: what each has delivered, and what waits for acks.
    pub(crate) fn consumers(&self) -> String {
        use std::io::{Read, Write};
        let ask = || -> std::io::Result<String> {
            let mut s = TcpStream::connect(("127.0.0.1", self.monitor))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(
                s,
                "GET /jsz?consumers=true HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
            )?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            Ok(text)
        };
        let text = match ask() {
            Ok(t) => t,
            Err(e) => return format!("GET /jsz failed: {e}"),
        };
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let Ok(jsz) = serde_json::from_str::<Value>(body) else {
            return format!("GET /jsz: {body}");
        };
        let mut out = Vec::new();
        for account in jsz["account_details"].as_array().into_iter().flatten() {
            for stream in account["stream_detail"].as_array().into_iter().flatten() {
                for c in stream["consumer_detail"].as_array().into_iter().flatten() {
                    out.push(format!(
                        "{}/{}: delivered {}, ack floor {}, ack pending {}, redelivered {}, \
                         pending {}, waiting pulls {}",
                        stream["name"].as_str().unwrap_or("?"),
                        c["name"].as_str().unwrap_or("?"),
                        c["delivered"]["consumer_seq"],
                        c["ack_floor"]["consumer_seq"],
                        c["num_ack_pending"],
                        c["num_redelivered"],
                        c["num_pending"],
                        c["num_waiting"],
                    ));
                }
            }
        }
        out.join("; ")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user and system) process `pid` has used so far, from
/// `/proc/PID/stat` (Linux; zero elsewhere), in clock ticks of 10 ms.
pub(crate) fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, from the third (`state`) on.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}
