//! The injection webhook end to end: the controller serves it over real HTTPS (a certificate
//! made by rcgen, read from PEM files as in a pod), and a TLS client posts the
//! `AdmissionReview` fixtures over HTTP/1.1 and HTTP/2, as the API server would.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

use faultline_controller::webhook::Webhook;
use support::{TempDir, eventually};

const CONTROLLER: &str = env!("CARGO_BIN_EXE_faultline-controller");

const INJECT_CONFIG: &str = "\
image: registry.example/faultline-agent:0.1.0
capture: outbound
resources: {requests: {cpu: 50m, memory: 32Mi}, limits: {cpu: '1', memory: 128Mi}}
env: [{name: FAULTLINE_CONTROLLER, value: 'http://faultline.faultline.svc:7070'}]
";

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/admission")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A self-signed certificate for `localhost` and 127.0.0.1, its key and the inject config as
/// files in `dir`; answers the certificate (what the client trusts).
fn write_files(dir: &Path) -> CertificateDer<'static> {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(dir.join("tls.crt"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), cert.signing_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("inject.yaml"), INJECT_CONFIG).unwrap();
    cert.cert.der().clone()
}

fn load(dir: &Path) -> Webhook {
    Webhook::load(
        &dir.join("tls.crt"),
        &dir.join("tls.key"),
        &dir.join("inject.yaml"),
    )
    .expect("the webhook's files load")
}

#[derive(Clone, Copy, Debug)]
enum Version {
    H1,
    H2,
}

/// One request over a new TLS connection that trusts only `root`; (status, body).
async fn call(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
    version: Version,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, Bytes) {
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let mut tls = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = match version {
        Version::H1 => vec![b"http/1.1".to_vec()],
        Version::H2 => vec![b"h2".to_vec()],
    };
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = TlsConnector::from(Arc::new(tls))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with the webhook's certificate");
    let negotiated = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let req = Request::builder()
        .method(method)
        .uri(format!("https://localhost:{}{path}", addr.port()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let io = TokioIo::new(stream);
    let res = match version {
        Version::H1 => {
            assert_eq!(negotiated.as_deref(), Some(&b"http/1.1"[..]));
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            send.send_request(req).await.unwrap()
        }
        Version::H2 => {
            assert_eq!(negotiated.as_deref(), Some(&b"h2"[..]));
            let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            tokio::spawn(conn);
            send.send_request(req).await.unwrap()
        }
    };
    let status = res.status();
    (status, res.into_body().collect().await.unwrap().to_bytes())
}

/// Posts a fixture to `/mutate`; answers the review's `response`, after checking the envelope
/// and that the uid is the request's.
async fn review(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
    version: Version,
    name: &str,
) -> Value {
    let text = fixture(name);
    let sent: Value = serde_json::from_str(&text).unwrap();
    let (status, body) = call(
        addr,
        root,
        version,
        Method::POST,
        "/mutate",
        text.into_bytes(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{name}: {}",
        String::from_utf8_lossy(&body)
    );
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1", "{name}");
    assert_eq!(answer["kind"], "AdmissionReview", "{name}");
    assert_eq!(
        answer["response"]["uid"], sent["request"]["uid"],
        "{name}: uid echoed"
    );
    answer["response"].clone()
}

/// The pod of fixture `name` with the response's patch applied.
fn patched(name: &str, response: &Value) -> Value {
    assert_eq!(response["patchType"], "JSONPatch");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().expect("a base64 patch"))
        .expect("standard base64");
    let patch: json_patch::Patch = serde_json::from_slice(&patch).expect("an RFC 6902 patch");
    let sent: Value = serde_json::from_str(&fixture(name)).unwrap();
    let mut pod = sent["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch).expect("the patch applies");
    pod
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn fixtures_get_their_verdicts_over_https_h1_and_h2() {
    let files = TempDir::new("webhook");
    let root = write_files(files.path());
    let dir = TempDir::new("webhook-store");
    let mut server =
        faultline_controller::server::Server::bind(faultline_controller::config::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.0.clone(),
            caps: Default::default(),
        })
        .await
        .unwrap();
    let addr = server
        .bind_webhook("127.0.0.1:0".parse().unwrap(), load(files.path()))
        .await
        .unwrap();
    assert_eq!(server.webhook_addr(), Some(addr));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    for version in [Version::H1, Version::H2] {
        let (status, body) = call(addr, &root, version, Method::GET, "/healthz", vec![]).await;
        assert_eq!(
            (status, &body[..]),
            (StatusCode::OK, &b"ok\n"[..]),
            "{version:?}"
        );

        // A Deployment's pod: the agent after the app, the init container created, both
        // containers from the image the config names.
        let response = review(addr, &root, version, "deployment-pod.json").await;
        assert_eq!(response["allowed"], true);
        let pod = patched("deployment-pod.json", &response);
        assert_eq!(
            names(&pod["spec"]["containers"]),
            ["checkout", "faultline-agent"]
        );
        assert_eq!(names(&pod["spec"]["initContainers"]), ["faultline-init"]);
        assert_eq!(
            pod["spec"]["containers"][1]["image"],
            "registry.example/faultline-agent:0.1.0"
        );
        assert_eq!(
            pod["metadata"]["annotations"]["faultline.dev/status"],
            "injected"
        );
        let env = &pod["spec"]["containers"][1]["env"];
        assert!(
            env.as_array().unwrap().contains(&json!({
                "name": "FAULTLINE_LABEL_0",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels['app.kubernetes.io/name']"}},
            })),
            "{env}"
        );
        // The admin API stays on loopback (the agent refuses anything else without a token);
        // the kubelet probes the health listener on the pod's address.
        for var in [
            json!({"name": "FAULTLINE_ADMIN", "value": "127.0.0.1:8474"}),
            json!({"name": "FAULTLINE_HEALTH", "value": "0.0.0.0:15020"}),
        ] {
            assert!(env.as_array().unwrap().contains(&var), "{var}: {env}");
        }
        let agent = &pod["spec"]["containers"][1];
        assert_eq!(
            agent["readinessProbe"]["httpGet"],
            json!({"path": "/ready", "port": 15020})
        );
        assert_eq!(
            agent["livenessProbe"]["httpGet"],
            json!({"path": "/version", "port": 15020})
        );

        let response = review(addr, &root, version, "pod-with-init-containers.json").await;
        let pod = patched("pod-with-init-containers.json", &response);
        assert_eq!(
            names(&pod["spec"]["initContainers"]),
            ["migrate", "faultline-init"]
        );

        let response = review(addr, &root, version, "pod-without-volumes.json").await;
        let pod = patched("pod-without-volumes.json", &response);
        assert_eq!(
            names(&pod["spec"]["containers"]),
            ["report", "faultline-agent"]
        );
        assert!(
            pod["spec"].get("volumes").is_none(),
            "no TLS Secret configured"
        );

        for name in ["not-annotated.json", "already-injected.json"] {
            let response = review(addr, &root, version, name).await;
            assert_eq!(response["allowed"], true, "{name}");
            assert!(
                response.get("patch").is_none() && response.get("patchType").is_none(),
                "{name}: {response}"
            );
        }

        for (name, annotation) in [
            ("bad-capture.json", "faultline.dev/capture"),
            (
                "bad-exclude-inbound-ports.json",
                "faultline.dev/exclude-inbound-ports",
            ),
            ("bad-memory-limit.json", "faultline.dev/memory-request"),
            ("bad-inject-value.json", "faultline.dev/inject"),
        ] {
            let response = review(addr, &root, version, name).await;
            assert_eq!(response["allowed"], false, "{name}");
            assert_eq!(response["status"]["code"], 400, "{name}");
            let message = response["status"]["message"].as_str().unwrap();
            assert!(
                message.starts_with(&format!("faultline: annotation {annotation}: ")),
                "{name}: {message}"
            );
            assert!(response.get("patch").is_none(), "{name}");
        }

        // What is not a review is a 400 (the API server then applies the failurePolicy), and
        // the server keeps serving.
        for (body, want) in [
            (b"{not json".to_vec(), "not an AdmissionReview"),
            (
                br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}"#.to_vec(),
                "expected apiVersion admission.k8s.io/v1",
            ),
            (
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
                "has no request",
            ),
        ] {
            let (status, answer) = call(addr, &root, version, Method::POST, "/mutate", body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            let answer = String::from_utf8_lossy(&answer);
            assert!(answer.contains(want), "{answer}");
        }
        let big = vec![b' '; faultline_controller::webhook::server::MAX_BODY + 1];
        let (status, _) = call(addr, &root, version, Method::POST, "/mutate", big).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = call(addr, &root, version, Method::GET, "/mutate", vec![]).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        let (status, _) = call(addr, &root, version, Method::GET, "/", vec![]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    // The controller's shutdown stops the webhook too.
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the controller stops within 10 s")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the webhook still listens"
    );
}

/// The interpreter with kubernetes-validate: `$FAULTLINE_TEST_PYTHON` or the workspace's
/// `target/test-venv` (scripts/helm-check.sh, run by scripts/test.sh, installs it there). A test
/// that needs it fails without it; it never skips.
fn validator_python() -> std::path::PathBuf {
    let python = std::env::var_os("FAULTLINE_TEST_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-venv/bin/python")
        });
    let ok = std::process::Command::new(&python)
        .args(["-c", "import kubernetes_validate"])
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        ok,
        "{} cannot import kubernetes_validate; run scripts/helm-check.sh (or scripts/test.sh) \
         once to install it",
        python.display()
    );
    python
}

#[tokio::test]
async fn injected_pods_are_valid_pods_for_the_kubernetes_schema() {
    let files = TempDir::new("webhook-schema");
    let root = write_files(files.path());
    let webhook = load(files.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(faultline_controller::webhook::server::serve(
        listener,
        webhook,
        async {
            let _ = stopped.await;
        },
    ));
    // Each pod with the Kubernetes versions it must be valid for. Strict: an unknown or
    // misspelt field anywhere in the pod is an error. The oldest Kubernetes the chart supports
    // and the newest the validator knows; a native sidecar (`restartPolicy` on an init
    // container) needs 1.29 or later.
    let mut written = Vec::new();
    for (name, versions) in [
        ("deployment-pod.json", ["1.25.0", "1.37.0"]),
        ("pod-with-init-containers.json", ["1.25.0", "1.37.0"]),
        ("pod-without-volumes.json", ["1.25.0", "1.37.0"]),
        ("job-pod-native-sidecar.json", ["1.29.0", "1.37.0"]),
    ] {
        let response = review(addr, &root, Version::H1, name).await;
        let pod = patched(name, &response);
        if name.contains("native") {
            assert_eq!(pod["spec"]["initContainers"][1]["name"], "faultline-agent");
        }
        let path = files.path().join(format!("injected-{name}"));
        std::fs::write(&path, serde_json::to_vec_pretty(&pod).unwrap()).unwrap();
        written.push((path, versions));
    }
    let _ = stop.send(());
    server.await.unwrap();

    for (path, versions) in &written {
        for version in versions {
            let out = std::process::Command::new(validator_python())
                .args([
                    "-m",
                    "kubernetes_validate",
                    "--strict",
                    "--quiet",
                    "-k",
                    version,
                ])
                .arg(path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{} on Kubernetes {version}: {}{}",
                path.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn the_binary_serves_the_webhook_its_flags_describe() {
    let files = TempDir::new("webhook-bin");
    let root = write_files(files.path());
    let data = TempDir::new("webhook-bin-store");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut child = tokio::process::Command::new(CONTROLLER)
        .args(["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data.path())
        .env("FAULTLINE_WEBHOOK_LISTEN", addr.to_string())
        .env("FAULTLINE_WEBHOOK_CERT", files.path().join("tls.crt"))
        .env("FAULTLINE_WEBHOOK_KEY", files.path().join("tls.key"))
        .arg("--inject-config")
        .arg(files.path().join("inject.yaml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(10), "the webhook listens", || async {
        TcpStream::connect(addr).await.ok()
    })
    .await;
    let response = review(addr, &root, Version::H1, "deployment-pod.json").await;
    assert_eq!(
        names(&patched("deployment-pod.json", &response)["spec"]["containers"]),
        ["checkout", "faultline-agent"]
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the controller exits on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn bad_webhook_settings_exit_64_naming_the_setting() {
    let files = TempDir::new("webhook-bad");
    write_files(files.path());
    std::fs::write(
        files.path().join("bad.yaml"),
        "image: a\ncapture: sometimes\n",
    )
    .unwrap();
    std::fs::write(
        files.path().join("open-admin.yaml"),
        "image: a\nadminListen: 0.0.0.0:8474\n",
    )
    .unwrap();
    std::fs::write(files.path().join("empty.pem"), "").unwrap();
    let dir = files.path();
    let path = |name: &str| dir.join(name).display().to_string();
    let good = [
        ("--webhook-cert", path("tls.crt")),
        ("--webhook-key", path("tls.key")),
        ("--inject-config", path("inject.yaml")),
    ];
    let cases = [
        (
            "--inject-config",
            path("bad.yaml"),
            "--inject-config / FAULTLINE_INJECT_CONFIG: ",
        ),
        (
            "--inject-config",
            path("open-admin.yaml"),
            "open-admin.yaml: adminListen: 0.0.0.0:8474 is not a loopback address",
        ),
        (
            "--inject-config",
            path("missing.yaml"),
            "--inject-config / FAULTLINE_INJECT_CONFIG: cannot read",
        ),
        (
            "--webhook-cert",
            path("empty.pem"),
            "--webhook-cert / FAULTLINE_WEBHOOK_CERT: ",
        ),
        (
            "--webhook-key",
            path("tls.crt"),
            "--webhook-key / FAULTLINE_WEBHOOK_KEY: ",
        ),
    ];
    for (flag, value, want) in cases {
        let mut args = vec!["--webhook-listen".to_string(), "127.0.0.1:0".into()];
        for (f, v) in &good {
            args.push(f.to_string());
            args.push(if *f == flag { value.clone() } else { v.clone() });
        }
        let out = std::process::Command::new(CONTROLLER)
            .args(&args)
            .arg("--data-dir")
            .arg(dir.join("store"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
    // The listen address alone is not enough.
    let out = std::process::Command::new(CONTROLLER)
        .args(["--webhook-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--webhook-cert"));
}
