//! Trust end to end: a controller serving mTLS with operator tokens, in-process on
//! 127.0.0.1:0, with certificates made by rcgen. Agents need a certificate of the controller's
//! client CA with the agent role; operator calls need a token or an operator certificate, and
//! every operator call, allowed or denied, lands in the audit log with who, what and where from.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use faultline_agent::app::Agent;
use faultline_agent::config::{AgentConfig, ClientTls, ControllerConfig};
use faultline_agent::route::{RouteSpec, Upstream};
use faultline_controller::auth::{ServerTls, Tokens, Trust};
use faultline_controller::config::Leases;
use faultline_controller::store::{AuditEntry, AuditOutcome, Store};
use faultline_proto::v1::agent_registry_client::AgentRegistryClient;
use faultline_proto::v1::agent_service_client::AgentServiceClient;
use faultline_proto::v1::experiment_service_client::ExperimentServiceClient;
use faultline_proto::v1::{
    self, AgentMessage, CreateExperimentRequest, ListAgentsRequest, ListExperimentsRequest,
    create_experiment_request,
};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};

use support::{InProcess, TempDir, eventually};

const TOKEN: &str = "ci-token-0123456789abcdef";

// === certificates ===

/// A CA and the certificates it issues.
struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key, PEM.
#[derive(Clone)]
struct Pair {
    cert: String,
    key: String,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Pki {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `role`/`name`: the controller's serves 127.0.0.1, the others are
    /// client certificates.
    fn issue(&self, role: &str, name: &str) -> Pair {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.use_authority_key_identifier_extension = true;
        let uri = format!("spiffe://faultline/{role}/{name}");
        params.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
        if role == "controller" {
            params
                .subject_alt_names
                .push(SanType::IpAddress([127, 0, 0, 1].into()));
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        } else {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

// === the controller ===

/// A controller serving TLS (its CA: `pki`) with the token `ci` = [`TOKEN`].
struct Secured(InProcess);

impl Secured {
    async fn start(tag: &str, pki: &Pki) -> Secured {
        let own = pki.issue("controller", "controller");
        let trust = Trust {
            tls: Some(ServerTls::from_pem(&own.cert, &own.key, &pki.ca_pem)),
            tokens: Some(Arc::new(
                Tokens::parse(&format!("# operators\nci {TOKEN}\n")).unwrap(),
            )),
            insecure: false,
        };
        Secured(InProcess::start_with_trust(tag, Leases::default(), false, trust).await)
    }

    fn url(&self) -> String {
        format!("https://{}", self.0.addr)
    }

    /// A TLS channel trusting `ca`, presenting `identity` if given.
    async fn channel(&self, ca: &str, identity: Option<&Pair>) -> Channel {
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let Some(p) = identity {
            tls = tls.identity(Identity::from_pem(&p.cert, &p.key));
        }
        Endpoint::from_shared(self.url())
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect_lazy()
    }

    /// The audit log, read from the store's file.
    fn audit(&self) -> Vec<AuditEntry> {
        Store::open(self.0.data_dir())
            .unwrap()
            .audit_log(1000)
            .unwrap()
    }

    async fn stop(self) {
        self.0.stop().await;
    }
}

/// Adds `authorization: Bearer TOKEN` when there is a token.
#[derive(Clone)]
struct Bearer(Option<String>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(t) = &self.0 {
            let value = format!("Bearer {t}").parse().unwrap();
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

fn experiments(
    channel: Channel,
    token: Option<&str>,
) -> ExperimentServiceClient<InterceptedService<Channel, Bearer>> {
    ExperimentServiceClient::with_interceptor(channel, Bearer(token.map(str::to_owned)))
}

fn registry(
    channel: Channel,
    token: Option<&str>,
) -> AgentRegistryClient<InterceptedService<Channel, Bearer>> {
    AgentRegistryClient::with_interceptor(channel, Bearer(token.map(str::to_owned)))
}

fn create(name: &str) -> CreateExperimentRequest {
    let yaml = format!(
        "apiVersion: faultline.dev/v1alpha1\nkind: Experiment\nmetadata: {{name: {name}}}\n\
         spec:\n  targets: {{all: true}}\n  faults: [{{route: r, type: down}}]\n  duration: 5m\n"
    );
    CreateExperimentRequest {
        spec: Some(create_experiment_request::Spec::SpecYaml(yaml)),
    }
}

/// The names of the experiments stored, asked with the valid token.
async fn names(c: &Secured, ca: &str) -> Vec<String> {
    let mut client = experiments(c.channel(ca, None).await, Some(TOKEN));
    let list = client
        .list(ListExperimentsRequest::default())
        .await
        .expect("list with the token")
        .into_inner();
    list.experiments.into_iter().map(|e| e.name).collect()
}

/// An agent dialling `c` with `tls`, as `id`, with one TCP route `r`.
async fn agent(c: &Secured, id: &str, tls: ClientTls) -> Agent {
    let route = RouteSpec::tcp(
        "r",
        "127.0.0.1:0",
        Upstream::Addr("127.0.0.1:9".parse().unwrap()),
    );
    Agent::start(&AgentConfig {
        routes: vec![route],
        controller: Some(ControllerConfig::with_tls(&c.url(), id, BTreeMap::new(), tls).unwrap()),
        ..AgentConfig::embedded()
    })
    .await
    .expect("the agent starts")
}

/// The agents the registry lists, once each of `running` runs the controller's lease.
async fn registered(c: &Secured, pki: &Pki, running: &[&Agent]) -> Vec<v1::Agent> {
    for a in running {
        eventually(
            Duration::from_secs(10),
            "the agent runs the controller's lease",
            || async { a.table.lease().map(|_| ()) },
        )
        .await;
    }
    registry(c.channel(&pki.ca_pem, None).await, Some(TOKEN))
        .list(ListAgentsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .agents
}

fn hello() -> AgentMessage {
    hello_as("intruder")
}

fn hello_as(id: &str) -> AgentMessage {
    AgentMessage {
        body: Some(v1::agent_message::Body::Hello(v1::Hello {
            agent_id: id.into(),
            ..Default::default()
        })),
    }
}

// === tests ===

#[tokio::test]
async fn only_agents_with_an_agent_certificate_of_the_client_ca_are_registered() {
    let pki = Pki::new();
    let other = Pki::new();
    let c = Secured::start("trust-agents", &pki).await;

    // Dialling first, so they have had their attempts by the time the good agent is in.
    let foreign = other.issue("agent", "foreign");
    let _foreign = agent(
        &c,
        "foreign",
        ClientTls::from_pem(&pki.ca_pem, Some((&foreign.cert, &foreign.key))),
    )
    .await;
    let _anonymous = agent(&c, "anonymous", ClientTls::from_pem(&pki.ca_pem, None)).await;
    let operator = pki.issue("operator", "alice");
    let _posing = agent(
        &c,
        "posing",
        ClientTls::from_pem(&pki.ca_pem, Some((&operator.cert, &operator.key))),
    )
    .await;
    let good = pki.issue("agent", "good");
    let good_agent = agent(
        &c,
        "good",
        ClientTls::from_pem(&pki.ca_pem, Some((&good.cert, &good.key))),
    )
    .await;
    let agents = registered(&c, &pki, &[&good_agent]).await;
    let ids: Vec<(&str, bool)> = agents
        .iter()
        .map(|a| (a.id.as_str(), a.connected))
        .collect();
    assert_eq!(
        ids,
        [("good", true)],
        "only the agent certificate of this CA"
    );

    // The same refusals, each seen from the client's side.
    let mut foreign_client = AgentServiceClient::new(c.channel(&pki.ca_pem, Some(&foreign)).await);
    let e = foreign_client
        .connect(tokio_stream::iter(vec![hello()]))
        .await
        .expect_err("a certificate of another CA fails the handshake");
    assert_ne!(e.code(), Code::Ok);
    let mut anonymous = AgentServiceClient::new(c.channel(&pki.ca_pem, None).await);
    let e = anonymous
        .connect(tokio_stream::iter(vec![hello()]))
        .await
        .expect_err("no certificate");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let mut posing = AgentServiceClient::new(c.channel(&pki.ca_pem, Some(&operator)).await);
    let e = posing
        .connect(tokio_stream::iter(vec![hello()]))
        .await
        .expect_err("an operator certificate is not an agent's");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    c.stop().await;
}

#[tokio::test]
async fn an_agent_certificate_registers_only_the_agent_ids_under_its_name() {
    let pki = Pki::new();
    let c = Secured::start("trust-agent-ids", &pki).await;
    let shop = pki.issue("agent", "shop");
    let tls = || ClientTls::from_pem(&pki.ca_pem, Some((&shop.cert, &shop.key)));
    assert_eq!(tls().agent_name().as_deref(), Some("shop"));

    // Another namespace's pod, or a name that only starts the same: refused, and not stored.
    for id in ["other/web-1", "shopping/web-1", "sho"] {
        let mut client = AgentServiceClient::new(c.channel(&pki.ca_pem, Some(&shop)).await);
        let e = client
            .connect(tokio_stream::iter(vec![hello_as(id)]))
            .await
            .expect_err("an id the certificate does not cover");
        assert_eq!(e.code(), Code::PermissionDenied, "{id}: {e:?}");
        assert!(
            e.message()
                .contains(&format!("agent:shop may not register as agent {id:?}")),
            "{e:?}"
        );
    }
    // The name itself and the ids under it: registered.
    let pod = agent(&c, "shop/web-1", tls()).await;
    let host = agent(&c, "shop", tls()).await;
    let agents = registered(&c, &pki, &[&pod, &host]).await;
    let ids: Vec<&str> = agents.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["shop", "shop/web-1"]);
    // A certificate without an agent URI SAN names nothing; none at all, likewise.
    let operator = pki.issue("operator", "alice");
    let posing = ClientTls::from_pem(&pki.ca_pem, Some((&operator.cert, &operator.key)));
    assert_eq!(posing.agent_name(), None);
    assert_eq!(ClientTls::from_pem(&pki.ca_pem, None).agent_name(), None);
    c.stop().await;
}

#[tokio::test]
async fn plaintext_is_refused_on_a_tls_port() {
    let pki = Pki::new();
    let c = Secured::start("trust-plaintext", &pki).await;
    let plain = Endpoint::from_shared(format!("http://{}", c.0.addr))
        .unwrap()
        .connect_lazy();
    let e = experiments(plain, Some(TOKEN))
        .list(ListExperimentsRequest::default())
        .await
        .expect_err("plaintext gRPC on the TLS port");
    assert_ne!(e.code(), Code::Ok);
    // A TLS client that does not trust the controller's CA gets nowhere either.
    let other = Pki::new();
    let e = experiments(c.channel(&other.ca_pem, None).await, Some(TOKEN))
        .list(ListExperimentsRequest::default())
        .await
        .expect_err("a controller certificate of an unknown CA");
    assert_ne!(e.code(), Code::Ok);
    assert!(
        c.audit().is_empty(),
        "nothing reached the API: {:?}",
        c.audit()
    );
    c.stop().await;
}

#[tokio::test]
async fn operator_calls_need_a_token_or_an_operator_certificate_and_are_audited() {
    let pki = Pki::new();
    let c = Secured::start("trust-operators", &pki).await;
    let ca = pki.ca_pem.as_str();

    let e = experiments(c.channel(ca, None).await, None)
        .create(create("no-token"))
        .await
        .expect_err("no token");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("token"), "{e:?}");
    let e = experiments(c.channel(ca, None).await, Some("wrong-token-0123456789"))
        .create(create("wrong-token"))
        .await
        .expect_err("a wrong token");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(
        names(&c, ca).await.is_empty(),
        "refused calls created nothing"
    );

    let created = experiments(c.channel(ca, None).await, Some(TOKEN))
        .create(create("with-token"))
        .await
        .expect("the valid token creates")
        .into_inner();
    assert_eq!(created.name, "with-token");

    let agent_cert = pki.issue("agent", "a1");
    let e = experiments(c.channel(ca, Some(&agent_cert)).await, None)
        .create(create("by-agent"))
        .await
        .expect_err("an agent certificate cannot drive experiments");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let alice = pki.issue("operator", "alice");
    experiments(c.channel(ca, Some(&alice)).await, None)
        .create(create("by-alice"))
        .await
        .expect("an operator certificate creates");
    assert_eq!(names(&c, ca).await, ["by-alice", "with-token"]);

    let creates: Vec<AuditEntry> = c
        .audit()
        .into_iter()
        .filter(|e| e.action == "ExperimentService/Create")
        .collect();
    let rows: Vec<(&str, AuditOutcome, Option<&str>)> = creates
        .iter()
        .map(|e| (e.principal.as_str(), e.outcome, e.target.as_deref()))
        .collect();
    assert_eq!(
        rows,
        [
            ("unauthenticated", AuditOutcome::Denied, None),
            ("invalid-token", AuditOutcome::Denied, None),
            ("token:ci", AuditOutcome::Ok, Some("with-token")),
            ("agent:a1", AuditOutcome::Denied, None),
            ("operator:alice", AuditOutcome::Ok, Some("by-alice")),
        ]
    );
    for row in &creates {
        let peer = row.peer.as_deref().unwrap_or_default();
        assert!(peer.starts_with("127.0.0.1:"), "from where: {row:?}");
    }
    assert!(
        creates[0]
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("no credentials")
    );
    // The reads are audited too, with who made them.
    let lists = c
        .audit()
        .into_iter()
        .filter(|e| e.action == "ExperimentService/List")
        .count();
    assert_eq!(lists, 2);
    c.stop().await;
}

#[test]
fn the_binary_refuses_bad_trust_settings_before_binding_anything() {
    const CONTROLLER: &str = env!("CARGO_BIN_EXE_faultline-controller");
    let dir = TempDir::new("trust-flags");
    let data = dir.0.join("data");
    let missing = dir.0.join("missing.pem");
    let tokens = dir.0.join("tokens");
    std::fs::write(&tokens, "ci short\n").unwrap();
    let (data, missing, tokens) = (
        data.to_str().unwrap(),
        missing.to_str().unwrap(),
        tokens.to_str().unwrap(),
    );
    let cases: &[(&[&str], &[&str])] = &[
        // Open on every address: refused, naming the way out.
        (
            &["--listen", "0.0.0.0:0"],
            &["0.0.0.0:0", "--insecure", "--tokens-file"],
        ),
        (
            &["--tls-cert", missing],
            &["--tls-key is needed with --tls-cert"],
        ),
        (
            &[
                "--tls-cert",
                missing,
                "--tls-key",
                missing,
                "--tls-client-ca",
                missing,
            ],
            &["--tls-cert", "missing.pem"],
        ),
        (
            &["--tokens-file", tokens],
            &["--tokens-file", "tokens:1", "16"],
        ),
    ];
    for (args, needles) in cases {
        let out = std::process::Command::new(CONTROLLER)
            .args(["--data-dir", data, "--metrics", "127.0.0.1:0"])
            .args(*args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        for needle in *needles {
            assert!(stderr.contains(needle), "{args:?}: {needle}: {stderr}");
        }
    }
    assert!(
        !std::path::Path::new(data).exists(),
        "refused before the store was opened"
    );
}

#[tokio::test]
async fn a_flood_of_denied_calls_writes_a_bounded_number_of_rows_and_then_a_count() {
    use faultline_controller::auth::denied::{BURST, PER_SECOND};
    use faultline_controller::auth::gate::DENIED_SUPPRESSED;
    let pki = Pki::new();
    let c = Secured::start("trust-flood", &pki).await;
    let mut api = experiments(
        c.channel(&pki.ca_pem, None).await,
        Some("wrong-token-0123456789"),
    );
    let flood = std::time::Instant::now();
    for _ in 0..200 {
        let e = api
            .list(ListExperimentsRequest::default())
            .await
            .expect_err("a wrong token");
        assert_eq!(e.code(), Code::Unauthenticated);
    }
    let took = flood.elapsed();
    let denied = c.audit().len();
    // The burst, plus what refilled while the flood ran (PER_SECOND a second).
    let refilled = (took.as_secs_f64() * f64::from(PER_SECOND)).ceil() as usize;
    assert!(
        (BURST as usize..=BURST as usize + refilled).contains(&denied),
        "{denied} rows for 200 denied calls in {took:?}"
    );
    // Once the budget refills, the next denied call's row comes after one counting the rest.
    let summary = eventually(
        Duration::from_secs(10),
        "a row counting the calls left out",
        || {
            let mut api = api.clone();
            let c = &c;
            async move {
                let _ = api.list(ListExperimentsRequest::default()).await;
                c.audit()
                    .into_iter()
                    .find(|e| e.action == DENIED_SUPPRESSED)
            }
        },
    )
    .await;
    assert_eq!(summary.outcome, AuditOutcome::Denied);
    let detail = summary.detail.unwrap_or_default();
    assert!(
        detail.contains("denied calls since ") && detail.contains(" were not recorded"),
        "{detail}"
    );
    // Every call of the flood is a row or counted (calls made while waiting may add to it).
    let left_out: usize = detail.split(' ').next().unwrap().parse().unwrap();
    assert!(
        denied + left_out >= 200,
        "{denied} rows + {left_out} counted"
    );
    c.stop().await;
}
