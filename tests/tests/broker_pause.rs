//! The broker stops answering for 10 s mid-stream (SIGSTOP, then SIGCONT): the worker
//! recovers by itself and finishes, nothing lost. The test starts a Tansu broker of its own,
//! so the shared one is never paused.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kafka_integration_tests::*;

const TOTAL: usize = 4000;

/// A Tansu broker for this test alone, stopped when dropped.
struct OwnBroker {
    child: Child,
    bootstrap: String,
}

impl OwnBroker {
    fn start() -> Self {
        // scripts/test.sh installs Tansu and exports its path as TANSU.
        let binary = std::env::var_os("TANSU")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/tansu/tansu"));
        assert!(binary.exists(), "no tansu binary at {}: run the tests with scripts/test.sh", binary.display());
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&binary)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let bootstrap = format!("127.0.0.1:{port}");
        let started = Instant::now();
        while TcpStream::connect(&bootstrap).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "tansu did not listen on {bootstrap}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, bootstrap }
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-s", signal, &pid]).status().unwrap().success());
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.signal("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_paused_for_10_s_mid_stream_loses_nothing() {
    let broker = OwnBroker::start();
    let topic = unique("paused");
    create_topics_on(&broker.bootstrap, &[&topic], 3).await;
    produce_ids(&broker.bootstrap, &topic, 0..TOTAL).await;
    let config = write_config(serde_json::json!({
        "handler_delay_ms": 1,
        "kafka": {"consumer_connection_settings": fast_settings()}
    }));
    let config = config.display().to_string();
    let args = ["-c", &config, "start-consumer", "--consumer-worker", "it_paced", "--topics", &topic];
    let running = InProcess::start_on(&broker.bootstrap, &args);

    wait_handled(500, |h| h.topic == topic).await;
    broker.signal("STOP");
    // The pause is the fault itself: its length is the point, not a guess at an event.
    tokio::time::sleep(Duration::from_secs(10)).await;
    broker.signal("CONT");
    wait_distinct(&topic, TOTAL).await;
    running.stop().await.expect("clean stop");
    ledger(&topic, TOTAL);
}
