//! TLS end to end: Tansu has no TLS listener, so stunnel terminates TLS in front of a Tansu
//! started here, which advertises stunnel's port. The certificates (a CA, a server
//! certificate it signed, and another CA that signed nothing) are made here with the openssl
//! command. `.ci/run` installs stunnel4 and openssl when missing; without them these tests
//! fail, saying what to install.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use kafka_integration_tests::*;

/// Certificates in a directory of their own.
struct Certificates {
    dir: PathBuf,
}

impl Certificates {
    fn make() -> Self {
        let dir = test_file(&unique("tls-certs"));
        std::fs::create_dir_all(&dir).expect("certificate directory");
        let certs = Self { dir };
        for ca in ["ca", "other-ca"] {
            certs.openssl(&format!(
                "req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-{ca} -keyout {ca}.key -out {ca}.pem"
            ));
        }
        certs.openssl("req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr");
        std::fs::write(certs.path("san.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
        certs.openssl(
            "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile san.cnf -out server.pem",
        );
        certs
    }

    /// Runs `openssl` with `args` (split at spaces) in the certificates' directory.
    fn openssl(&self, args: &str) {
        let output =
            Command::new("openssl").args(args.split(' ')).current_dir(&self.dir).output().unwrap_or_else(|err| {
                panic!("cannot run openssl ({err}): install the Debian package openssl (.ci/run does)")
            });
        assert!(output.status.success(), "openssl {args}: {}", String::from_utf8_lossy(&output.stderr));
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// stunnel accepting TLS on `address` and forwarding to `to`, stopped when dropped.
struct Stunnel {
    child: Child,
    address: String,
}

impl Stunnel {
    fn start(address: &str, to: &str, certs: &Certificates) -> Self {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let binary = ["stunnel4", "stunnel"]
            .iter()
            .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
            .find(|candidate| candidate.is_file())
            .unwrap_or_else(|| {
                panic!(
                    "stunnel is not installed: install the Debian package stunnel4 (.ci/run does) to run the TLS tests"
                )
            });
        let config = format!(
            "foreground = yes\npid =\ndebug = 4\n[kafka]\naccept = {address}\nconnect = {to}\ncert = {}\nkey = {}\n",
            certs.path("server.pem"),
            certs.path("server.key")
        );
        let config_path = certs.dir.join("stunnel.conf");
        std::fs::write(&config_path, config).unwrap();
        // Its log (every refused handshake) goes to a file beside the certificates.
        let log = std::fs::File::create(certs.dir.join("stunnel.log")).expect("stunnel log");
        let child = Command::new(binary)
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start stunnel");
        wait_listening(address, "stunnel");
        Self { child, address: address.to_owned() }
    }
}

impl Drop for Stunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Tansu reachable only through TLS: clients bootstrap at `tls.address`, and the broker
/// advertises that address.
struct TlsBroker {
    tls: Stunnel,
    _broker: OwnBroker,
    certs: Certificates,
}

impl TlsBroker {
    fn start() -> Self {
        let certs = Certificates::make();
        let tls_address = format!("127.0.0.1:{}", free_port());
        let broker = OwnBroker::start_advertising(&tls_address);
        let tls = Stunnel::start(&tls_address, &broker.bootstrap, &certs);
        Self { tls, _broker: broker, certs }
    }

    /// The client settings for TLS that trusts `ca` (`ca.pem` or `other-ca.pem`).
    fn settings(&self, ca: &str) -> serde_json::Value {
        serde_json::json!({"security.protocol": "ssl", "ssl.ca.location": self.certs.path(ca)})
    }

    /// A config.json with these TLS settings in `kafka.connection_settings`.
    fn config(&self, ca: &str, producer: serde_json::Value) -> String {
        let config = write_config(serde_json::json!({"kafka": {
            "connection_settings": self.settings(ca),
            "consumer_connection_settings": fast_settings(),
            "producer": producer,
        }}));
        config.display().to_string()
    }
}

const TOTAL: usize = 200;

/// The producer (`start-producer`) and a worker both reach the broker through TLS, with the
/// settings given once in `kafka.connection_settings`.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_consumes_what_start_producer_sent_through_tls() {
    let broker = TlsBroker::start();
    let topic = unique("tls");
    let ca = broker.certs.path("ca.pem");
    create_topics_with(&broker.tls.address, &[("security.protocol", "ssl"), ("ssl.ca.location", &ca)], &[&topic], 3)
        .await;
    let config = broker.config("ca.pem", serde_json::json!({"linger.ms": 5}));
    let lines: String = (0..TOTAL).map(|id| format!("id{id}\n")).collect();
    let brokers_arg = broker.tls.address.clone();
    let args = ["-c", &config, "--brokers", &brokers_arg, "start-producer", "--topic", &topic, "--serializer", "bytes"];
    let (code, out, err) = run_with_input(Binary::TestWorkers, &args, &[], Some(&lines));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("{TOTAL} lines read: {TOTAL} delivered")), "{out}");

    let group = unique("g-tls");
    let args = ["-c", &config, "start-consumer", "--consumer-worker", "it_per_message", "--topics", &topic];
    let running = InProcess::start_on(&broker.tls.address, &[&args[..], &["--consumer-group", &group]].concat());
    wait_distinct(&topic, TOTAL).await;
    running.stop().await.expect("clean stop");
    ledger(&topic, TOTAL);
}

/// A CA that did not sign the broker's certificate: the worker's log says the certificate
/// could not be verified, which broker, and what to check; SIGTERM still stops it cleanly.
/// The producer reports the same and `start-producer` exits 1.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_ca_is_an_error_naming_the_certificate_problem_and_the_broker() {
    let broker = TlsBroker::start();
    let config = broker.config("other-ca.pem", serde_json::json!({"message.timeout.ms": 3000}));
    let address = broker.tls.address.clone();
    let mut worker = Process::spawn_with_logs(
        Binary::TestWorkers,
        &[
            "-c",
            &config,
            "--brokers",
            &address,
            "start-consumer",
            "--consumer-worker",
            "it_per_message",
            "--topics",
            "t",
        ],
        &[("RUST_LOG", "error")],
    );
    let reported = worker.wait_lines(1, |l| l.contains("TLS with the broker failed")).await;
    let line = &reported[0];
    assert!(line.contains("certificate verify failed"), "{line}");
    assert!(line.contains(&address), "the broker's address is named: {line}");
    assert!(line.contains("check ssl.ca.location"), "{line}");
    worker.signal("TERM");
    assert_eq!(worker.wait_exit().await, Some(0));

    let args = ["-c", &config, "--brokers", &address, "start-producer", "--topic", "t", "--data", "1"];
    let (code, _, err) = run_to_end(Binary::TestWorkers, &args, &[("RUST_LOG", "error")]);
    assert_eq!(code, 1, "{err}");
    let line = err.lines().find(|l| l.contains("TLS with the broker failed")).unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("certificate verify failed") && line.contains(&address), "{line}");
    assert!(err.lines().last().unwrap_or("").starts_with("error: not delivered"), "{err}");
}
