//! The webhook's verdicts on real-shaped `AdmissionReview` requests
//! (`controller/tests/fixtures/admission/`): each patch is applied to its pod with the
//! `json-patch` crate (RFC 6902, as the API server applies it) and the resulting pod checked.

use std::path::Path;

use serde_json::{Value, json};

use super::config::InjectConfig;
use super::mutate::{self, Decision};
use super::review::{AdmissionRequest, AdmissionReview};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../tests/fixtures/admission/", $name))
    };
}

/// The config the chart renders by default, plus a TLS Secret and a mark.
const CONFIG: &str = "\
image: registry.example/faultline-agent:0.1.0
imagePullPolicy: IfNotPresent
adminListen: 127.0.0.1:8474
healthListen: 0.0.0.0:15020
capture: outbound
uid: 2102
mark: 2102
resources:
  requests: {cpu: 50m, memory: 32Mi}
  limits: {cpu: '1', memory: 128Mi}
initResources:
  requests: {cpu: 10m, memory: 16Mi}
  limits: {cpu: 100m, memory: 32Mi}
tls: {secretName: faultline-agent-tls}
env:
  - {name: FAULTLINE_CONTROLLER, value: 'https://faultline.faultline.svc:7070'}
  - {name: FAULTLINE_LOG_FORMAT, value: json}
";

fn config(text: &str) -> InjectConfig {
    InjectConfig::parse(text, Path::new("inject.yaml")).unwrap()
}

fn request(text: &str) -> AdmissionRequest {
    let review: AdmissionReview = serde_json::from_str(text).unwrap();
    review.request.unwrap()
}

/// The pod after the webhook's patch, applied as the API server does.
fn injected(text: &str, config: &InjectConfig) -> Value {
    let req = request(text);
    let Decision::Inject(ops) = mutate::decide(&req, config) else {
        panic!("not injected: {:?}", mutate::decide(&req, config));
    };
    let patch: json_patch::Patch = serde_json::from_value(serde_json::to_value(&ops).unwrap())
        .expect("the operations are an RFC 6902 patch");
    let mut pod = req.object;
    json_patch::patch(&mut pod, &patch).expect("the patch applies to its pod");
    pod
}

fn container<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {list}"))
}

/// `name=value` of each plain variable, `name<-fieldPath` of each Downward API one.
fn env(container: &Value) -> Vec<String> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| match e.get("value") {
            Some(v) => format!("{}={}", e["name"].as_str().unwrap(), v.as_str().unwrap()),
            None => format!(
                "{}<-{}",
                e["name"].as_str().unwrap(),
                e["valueFrom"]["fieldRef"]["fieldPath"].as_str().unwrap()
            ),
        })
        .collect()
}

fn args(container: &Value) -> Vec<&str> {
    container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect()
}

#[test]
fn a_deployment_pod_gets_the_agent_its_labels_and_both_captures() {
    let before = request(fixture!("deployment-pod.json")).object;
    let pod = injected(fixture!("deployment-pod.json"), &config(CONFIG));

    // The app's container is untouched; the agent comes after it.
    let containers = pod["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2);
    assert_eq!(containers[0], before["spec"]["containers"][0]);
    let agent = &containers[1];
    assert_eq!(agent["name"], "faultline-agent");
    assert_eq!(agent["image"], "registry.example/faultline-agent:0.1.0");
    assert_eq!(
        env(agent),
        [
            "FAULTLINE_POD_NAME<-metadata.name",
            "FAULTLINE_POD_NAMESPACE<-metadata.namespace",
            "FAULTLINE_AGENT_ID=$(FAULTLINE_POD_NAMESPACE)/$(FAULTLINE_POD_NAME)",
            "FAULTLINE_LABEL_0<-metadata.labels['app.kubernetes.io/name']",
            "FAULTLINE_LABEL_1<-metadata.labels['app.kubernetes.io/part-of']",
            "FAULTLINE_LABEL_2<-metadata.labels['pod-template-hash']",
            "FAULTLINE_LABEL_3<-metadata.labels['tier']",
            "FAULTLINE_LABELS=app.kubernetes.io/name=$(FAULTLINE_LABEL_0),\
             app.kubernetes.io/part-of=$(FAULTLINE_LABEL_1),\
             pod-template-hash=$(FAULTLINE_LABEL_2),tier=$(FAULTLINE_LABEL_3)",
            "FAULTLINE_ADMIN=127.0.0.1:8474",
            "FAULTLINE_HEALTH=0.0.0.0:15020",
            "FAULTLINE_CAPTURE_OUTBOUND=0.0.0.0:15001",
            "FAULTLINE_CAPTURE_INBOUND=0.0.0.0:15006",
            "FAULTLINE_MARK=2102",
            "FAULTLINE_CONTROLLER=https://faultline.faultline.svc:7070",
            "FAULTLINE_LOG_FORMAT=json",
        ]
    );
    assert_eq!(
        agent["resources"],
        json!({"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}})
    );
    assert_eq!(
        agent["securityContext"],
        json!({
            "runAsUser": 2102, "runAsGroup": 2102, "runAsNonRoot": true,
            "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]},
        })
    );
    // The kubelet probes the health listener; the admin API stays on loopback.
    assert_eq!(
        agent["readinessProbe"]["httpGet"],
        json!({"path": "/ready", "port": 15020})
    );
    assert_eq!(
        agent["livenessProbe"]["httpGet"],
        json!({"path": "/version", "port": 15020})
    );
    assert_eq!(
        agent["volumeMounts"],
        json!([{"name": "faultline-agent-tls", "mountPath": "/etc/faultline/tls", "readOnly": true}])
    );

    // No init containers before: the array is created with the one.
    let init = pod["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(init.len(), 1);
    assert_eq!(init[0]["name"], "faultline-init");
    assert_eq!(
        args(&init[0]),
        [
            "init-iptables",
            "--outbound-port",
            "15001",
            "--exclude-outbound-cidrs",
            "169.254.169.254/32,10.96.0.1/32",
            "--inbound-port",
            "15006",
            "--inbound-ports",
            "8080",
            "--exclude-inbound-ports",
            "8474,15020,15001,15006",
            "--uid",
            "2102",
            "--mark",
            "2102",
        ]
    );
    assert_eq!(
        init[0]["securityContext"]["capabilities"],
        json!({"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]})
    );
    assert_eq!(init[0]["securityContext"]["runAsUser"], 0);

    // The service account volume stays; the TLS Secret joins it.
    let volumes = pod["spec"]["volumes"].as_array().unwrap();
    assert_eq!(volumes[0], before["spec"]["volumes"][0]);
    assert_eq!(
        volumes[1],
        json!({"name": "faultline-agent-tls", "secret": {"secretName": "faultline-agent-tls", "defaultMode": 292}})
    );
    // The annotation, whose key holds a `/` (`~1` in the patch's path).
    assert_eq!(
        pod["metadata"]["annotations"]["faultline.dev/status"],
        "injected"
    );
    assert_eq!(
        pod["metadata"]["annotations"].as_object().unwrap().len(),
        before["metadata"]["annotations"].as_object().unwrap().len() + 1
    );
    // Nothing else moved.
    let mut rest = pod.clone();
    let mut rest_before = before.clone();
    for p in [&mut rest, &mut rest_before] {
        p["spec"]
            .as_object_mut()
            .unwrap()
            .retain(|k, _| !["containers", "initContainers", "volumes"].contains(&k.as_str()));
        p["metadata"]["annotations"]
            .as_object_mut()
            .unwrap()
            .remove("faultline.dev/status");
    }
    assert_eq!(rest, rest_before);
}

#[test]
fn init_containers_of_the_pod_run_first_and_annotations_tune_resources() {
    let before = request(fixture!("pod-with-init-containers.json")).object;
    let pod = injected(fixture!("pod-with-init-containers.json"), &config(CONFIG));
    let init = pod["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(init.len(), 2);
    assert_eq!(init[0], before["spec"]["initContainers"][0]);
    assert_eq!(
        args(&init[1]),
        [
            "init-iptables",
            "--outbound-port",
            "15001",
            "--exclude-outbound-ports",
            "5432,6379",
            "--uid",
            "2102",
            "--mark",
            "2102",
        ]
    );
    let agent = container(&pod["spec"]["containers"], "faultline-agent");
    assert_eq!(
        agent["resources"],
        json!({"requests": {"cpu": "50m", "memory": "48Mi"}, "limits": {"cpu": "250m", "memory": "128Mi"}})
    );
    let env = env(agent);
    assert!(
        env.contains(&"FAULTLINE_CAPTURE_OUTBOUND=0.0.0.0:15001".to_string()),
        "{env:?}"
    );
    assert!(
        !env.iter()
            .any(|e| e.starts_with("FAULTLINE_CAPTURE_INBOUND")),
        "{env:?}"
    );
    assert!(env.contains(
        &"FAULTLINE_LABELS=app=$(FAULTLINE_LABEL_0),statefulset.kubernetes.io/pod-name=$(FAULTLINE_LABEL_1)".to_string()
    ), "{env:?}");
    assert_eq!(pod["spec"]["volumes"].as_array().unwrap().len(), 3);
}

#[test]
fn a_pod_without_volumes_or_labels_gets_the_arrays_created() {
    let pod = injected(fixture!("pod-without-volumes.json"), &config(CONFIG));
    assert_eq!(
        pod["spec"]["volumes"],
        json!([{"name": "faultline-agent-tls", "secret": {"secretName": "faultline-agent-tls", "defaultMode": 292}}])
    );
    assert_eq!(pod["spec"]["initContainers"].as_array().unwrap().len(), 1);
    let env = env(container(&pod["spec"]["containers"], "faultline-agent"));
    // No labels: no FAULTLINE_LABELS at all (an empty one would be an empty label to the agent).
    assert!(
        !env.iter().any(|e| e.starts_with("FAULTLINE_LABEL")),
        "{env:?}"
    );
}

#[test]
fn capture_none_adds_only_the_agent() {
    let config = config("image: agent:dev\ncapture: none\nmark: 7\n");
    let pod = injected(fixture!("pod-without-volumes.json"), &config);
    assert!(pod["spec"].get("initContainers").is_none());
    assert!(pod["spec"].get("volumes").is_none());
    let agent = container(&pod["spec"]["containers"], "faultline-agent");
    assert_eq!(
        agent["securityContext"]["capabilities"],
        json!({"drop": ["ALL"]})
    );
    assert!(agent.get("volumeMounts").is_none());
    let env = env(agent);
    assert!(
        !env.iter()
            .any(|e| e.contains("CAPTURE") || e.contains("MARK")),
        "{env:?}"
    );
    assert!(agent["resources"] == json!({}));
}

#[test]
fn pods_not_asking_or_already_injected_are_left_alone() {
    let config = config(CONFIG);
    assert_eq!(
        mutate::decide(&request(fixture!("not-annotated.json")), &config),
        Decision::Skip("not annotated faultline.dev/inject: \"true\"")
    );
    assert_eq!(
        mutate::decide(&request(fixture!("already-injected.json")), &config),
        Decision::Skip("already injected")
    );
    let mut update: Value = serde_json::from_str(fixture!("deployment-pod.json")).unwrap();
    update["request"]["operation"] = json!("UPDATE");
    assert_eq!(
        mutate::decide(&request(&update.to_string()), &config),
        Decision::Skip("not a creation")
    );
    let mut service = update.clone();
    service["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Service"});
    assert_eq!(
        mutate::decide(&request(&service.to_string()), &config),
        Decision::Skip("not a pod")
    );
    // Injected is injected, whatever its annotations say now.
    let mut edited: Value = serde_json::from_str(fixture!("already-injected.json")).unwrap();
    edited["request"]["object"]["metadata"]["annotations"]["faultline.dev/capture"] = json!("all");
    assert_eq!(
        mutate::decide(&request(&edited.to_string()), &config),
        Decision::Skip("already injected")
    );
    let response = mutate::review(request(fixture!("already-injected.json")), &config);
    assert!(response.allowed && response.patch.is_none() && response.patch_type.is_none());
}

#[test]
fn bad_annotations_are_refused_naming_the_annotation() {
    let config = config(CONFIG);
    let cases = [
        (
            fixture!("bad-capture.json"),
            "faultline: annotation faultline.dev/capture: \"everything\" is not one of outbound, inbound, both, none",
        ),
        (
            fixture!("bad-exclude-inbound-ports.json"),
            "faultline: annotation faultline.dev/exclude-inbound-ports: \"metrics\" is not a port (1 to 65535)",
        ),
        (
            fixture!("bad-memory-limit.json"),
            "faultline: annotation faultline.dev/memory-request: the memory request 256Mi is above the limit 64Mi",
        ),
        (
            fixture!("bad-inject-value.json"),
            "faultline: annotation faultline.dev/inject: \"yes\" is not \"true\" or \"false\"",
        ),
    ];
    for (text, want) in cases {
        let req = request(text);
        let uid = req.uid.clone();
        assert_eq!(mutate::decide(&req, &config), Decision::Deny(want.into()));
        let response = mutate::review(req, &config);
        assert_eq!(response.uid, uid);
        assert!(!response.allowed);
        assert_eq!(response.status.unwrap().message, want);
    }
}

#[test]
fn annotation_combinations_that_cannot_work_are_refused() {
    let config = config(CONFIG);
    let with = |annotations: Value| {
        let mut review: Value = serde_json::from_str(fixture!("deployment-pod.json")).unwrap();
        review["request"]["object"]["metadata"]["annotations"] = annotations;
        mutate::decide(&request(&review.to_string()), &config)
    };
    let denied = |annotations: Value| match with(annotations) {
        Decision::Deny(m) => m,
        other => panic!("not refused: {other:?}"),
    };
    let m = denied(json!({"faultline.dev/inject": "true", "faultline.dev/inbound-ports": "80"}));
    assert!(m.contains("faultline.dev/inbound-ports: has no effect unless faultline.dev/capture is inbound or both (it is outbound)"), "{m}");
    let m = denied(
        json!({"faultline.dev/inject": "true", "faultline.dev/capture": "both", "faultline.dev/inbound-ports": "80,8474"}),
    );
    assert!(
        m.contains("faultline.dev/inbound-ports: 8474 is one of the agent's own ports"),
        "{m}"
    );
    let m = denied(
        json!({"faultline.dev/inject": "true", "faultline.dev/capture": "inbound", "faultline.dev/inbound-ports": "15020"}),
    );
    assert!(
        m.contains("faultline.dev/inbound-ports: 15020 is one of the agent's own ports (8474,15020,15001,15006)"),
        "{m}"
    );
    let m = denied(
        json!({"faultline.dev/inject": "true", "faultline.dev/exclude-outbound-port": "80"}),
    );
    assert!(
        m.contains("faultline.dev/exclude-outbound-port: is not a faultline annotation"),
        "{m}"
    );
    let m = denied(json!({"faultline.dev/inject": "true", "faultline.dev/capture": ""}));
    assert!(m.contains("faultline.dev/capture: is empty"), "{m}");
    let m = denied(
        json!({"faultline.dev/inject": "true", "faultline.dev/exclude-outbound-cidrs": "10.0.0.0/33"}),
    );
    assert!(
        m.contains("faultline.dev/exclude-outbound-cidrs: \"10.0.0.0/33\" is not a CIDR"),
        "{m}"
    );
    let m = denied(json!({"faultline.dev/inject": "true", "faultline.dev/cpu-limit": "1 core"}));
    assert!(
        m.contains("faultline.dev/cpu-limit: \"1 core\" is not a Kubernetes quantity"),
        "{m}"
    );

    let mut host: Value = serde_json::from_str(fixture!("deployment-pod.json")).unwrap();
    host["request"]["object"]["spec"]["hostNetwork"] = json!(true);
    let Decision::Deny(m) = mutate::decide(&request(&host.to_string()), &config) else {
        panic!("hostNetwork pod injected");
    };
    assert!(m.contains("hostNetwork"), "{m}");
    host["request"]["object"]["metadata"]["annotations"] =
        json!({"faultline.dev/inject": "true", "faultline.dev/capture": "none"});
    assert!(matches!(
        mutate::decide(&request(&host.to_string()), &config),
        Decision::Inject(_)
    ));

    assert_eq!(
        with(json!({"faultline.dev/inject": "false"})),
        Decision::Skip("not annotated faultline.dev/inject: \"true\"")
    );
}

#[test]
fn the_response_carries_the_uid_and_a_base64_json_patch() {
    use base64::Engine as _;
    let req = request(fixture!("deployment-pod.json"));
    let response = mutate::review(req, &config(CONFIG)).into_review();
    let json = serde_json::to_value(&response).unwrap();
    assert_eq!(json["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(json["kind"], "AdmissionReview");
    assert_eq!(
        json["response"]["uid"],
        "3b2c7c1e-8f5a-4f7e-9d5e-2a0c6b1e4d01"
    );
    assert_eq!(json["response"]["allowed"], true);
    assert_eq!(json["response"]["patchType"], "JSONPatch");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(json["response"]["patch"].as_str().unwrap())
        .unwrap();
    let ops: Value = serde_json::from_slice(&patch).unwrap();
    let paths: Vec<&str> = ops
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/metadata/annotations/faultline.dev~1status",
            "/spec/initContainers",
            "/spec/containers/-",
            "/spec/volumes/-",
        ]
    );
    assert!(ops.as_array().unwrap().iter().all(|o| o["op"] == "add"));
}

#[test]
fn a_native_sidecar_agent_is_an_init_container_that_restarts_always_after_faultline_init() {
    // Per pod, by annotation, over a config that says otherwise.
    let mut review: Value =
        serde_json::from_str(fixture!("pod-with-init-containers.json")).unwrap();
    review["request"]["object"]["metadata"]["annotations"]["faultline.dev/native-sidecar"] =
        json!("true");
    let before = request(&review.to_string()).object;
    let pod = injected(&review.to_string(), &config(CONFIG));
    let init = pod["spec"]["initContainers"].as_array().unwrap();
    let names: Vec<&str> = init.iter().map(|c| c["name"].as_str().unwrap()).collect();
    let own = before["spec"]["initContainers"][0]["name"]
        .as_str()
        .unwrap();
    assert_eq!(names, [own, "faultline-init", "faultline-agent"]);
    let agent = &init[2];
    assert_eq!(agent["restartPolicy"], "Always");
    assert_eq!(
        agent["startupProbe"]["httpGet"],
        json!({"path": "/ready", "port": 15020})
    );
    assert_eq!(agent["readinessProbe"]["httpGet"]["path"], "/ready");
    assert!(
        pod["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["name"] != "faultline-agent"),
        "not among the containers too"
    );
    // A native sidecar is injected already, and is not patched again.
    let again = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u2", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "operation": "CREATE", "namespace": "shop", "object": pod}});
    assert_eq!(
        mutate::decide(&request(&again.to_string()), &config(CONFIG)),
        Decision::Skip("already injected")
    );

    // For every pod, from the config; a pod may say no; capture none adds only the agent.
    let native = config("image: agent:dev\ncapture: none\nnativeSidecar: true\n");
    let pod = injected(fixture!("pod-without-volumes.json"), &native);
    assert_eq!(pod["spec"]["initContainers"][0]["name"], "faultline-agent");
    assert_eq!(pod["spec"]["initContainers"][0]["restartPolicy"], "Always");
    let mut review: Value = serde_json::from_str(fixture!("pod-without-volumes.json")).unwrap();
    review["request"]["object"]["metadata"]["annotations"]["faultline.dev/native-sidecar"] =
        json!("false");
    let pod = injected(&review.to_string(), &native);
    assert!(pod["spec"].get("initContainers").is_none());
    let agent = container(&pod["spec"]["containers"], "faultline-agent");
    assert!(agent.get("restartPolicy").is_none() && agent.get("startupProbe").is_none());

    review["request"]["object"]["metadata"]["annotations"]["faultline.dev/native-sidecar"] =
        json!("yes");
    assert_eq!(
        mutate::decide(&request(&review.to_string()), &native),
        Decision::Deny(
            "faultline: annotation faultline.dev/native-sidecar: \"yes\" is not \"true\" or \"false\""
                .into()
        )
    );
}

#[test]
fn an_ipv6_pod_gets_ip6tables_rules_and_dual_stack_listeners() {
    // By annotation, over the default config.
    let mut review: Value =
        serde_json::from_str(fixture!("pod-with-init-containers.json")).unwrap();
    review["request"]["object"]["metadata"]["annotations"]["faultline.dev/ipv6"] = json!("true");
    let pod = injected(&review.to_string(), &config(CONFIG));
    let init = pod["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(args(&init[1]).last(), Some(&"--ipv6"));
    let vars = env(container(&pod["spec"]["containers"], "faultline-agent"));
    for want in [
        "FAULTLINE_CAPTURE_OUTBOUND=[::]:15001",
        "FAULTLINE_HEALTH=[::]:15020",
    ] {
        assert!(vars.contains(&want.to_string()), "{want} in {vars:?}");
    }

    // From the config, capturing both ways; an explicit health address is kept as it is.
    let both =
        config("image: agent:dev\ncapture: both\nipv6: true\nhealthListen: '[fd00::1]:15020'\n");
    let pod = injected(fixture!("pod-without-volumes.json"), &both);
    assert!(args(&pod["spec"]["initContainers"][0]).contains(&"--ipv6"));
    let vars = env(container(&pod["spec"]["containers"], "faultline-agent"));
    for want in [
        "FAULTLINE_CAPTURE_OUTBOUND=[::]:15001",
        "FAULTLINE_CAPTURE_INBOUND=[::]:15006",
        "FAULTLINE_HEALTH=[fd00::1]:15020",
    ] {
        assert!(vars.contains(&want.to_string()), "{want} in {vars:?}");
    }

    // A pod may say no; a value that is not a boolean is refused, naming the annotation.
    let mut review: Value = serde_json::from_str(fixture!("pod-without-volumes.json")).unwrap();
    review["request"]["object"]["metadata"]["annotations"]["faultline.dev/ipv6"] = json!("false");
    let pod = injected(&review.to_string(), &both);
    assert!(!args(&pod["spec"]["initContainers"][0]).contains(&"--ipv6"));
    let vars = env(container(&pod["spec"]["containers"], "faultline-agent"));
    assert!(vars.contains(&"FAULTLINE_CAPTURE_OUTBOUND=0.0.0.0:15001".to_string()));
    review["request"]["object"]["metadata"]["annotations"]["faultline.dev/ipv6"] = json!("v6");
    assert_eq!(
        mutate::decide(&request(&review.to_string()), &both),
        Decision::Deny(
            "faultline: annotation faultline.dev/ipv6: \"v6\" is not \"true\" or \"false\"".into()
        )
    );
}
