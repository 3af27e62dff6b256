//! deploy/kubernetes/ (issue 10, item 7): the manifests parse as YAML and say what the
//! lifecycle needs (a headless Service publishing not-ready pods, with ports named
//! etcd-server and etcd-client; a Parallel StatefulSet whose entrypoint is
//! `muster-agent exec`; no preStop leave), and the agent command line they give, with
//! the environment Kubernetes would set, plans a bootstrap from a zone shaped like
//! Kubernetes cluster DNS, served by musterd (golden kubernetes-exec.argv).

mod agent_support;

use std::collections::BTreeMap;

use agent_support::{agent, output};
use muster_tests::{bin_path, workspace_root, Musterd, TempDir};
use serde_yaml::Value;

fn manifests() -> Vec<Value> {
    let path = workspace_root().join("deploy/kubernetes/etcd.yaml");
    let text = std::fs::read_to_string(&path).expect("read the manifests");
    // One document per `---` line (serde_yaml's from_str reads a single document).
    text.split("\n---\n")
        .map(|doc| {
            serde_yaml::from_str(doc)
                .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
        })
        .collect()
}

fn kind<'a>(docs: &'a [Value], k: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == k)
        .unwrap_or_else(|| panic!("no {k} in the manifests"))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

#[test]
fn the_manifests_say_what_the_lifecycle_needs() {
    let docs = manifests();
    let svc = kind(&docs, "Service");
    assert_eq!(svc["spec"]["clusterIP"], "None");
    assert_eq!(svc["spec"]["publishNotReadyAddresses"], true);
    let ports: Vec<&str> = svc["spec"]["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .map(|p| s(&p["name"]))
        .collect();
    assert_eq!(ports, ["etcd-server", "etcd-client"]);

    let sts = kind(&docs, "StatefulSet");
    assert_eq!(sts["spec"]["podManagementPolicy"], "Parallel");
    assert_eq!(sts["spec"]["serviceName"], svc["metadata"]["name"]);
    let c = &sts["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["command"][0], "muster-agent");
    assert_eq!(c["command"][1], "exec");
    assert!(
        c["lifecycle"]["preStop"].is_null(),
        "a preStop leave would remove the member on every restart"
    );
    let named: Vec<&str> = c["ports"]
        .as_sequence()
        .expect("container ports")
        .iter()
        .map(|p| s(&p["name"]))
        .collect();
    assert_eq!(named, ["etcd-server", "etcd-client"]);
}

/// The container's environment as the kubelet builds it for pod `pod` in namespace
/// `ns`: downward-API fields, then `$(VAR)` references to earlier variables.
fn pod_env(container: &Value, pod: &str, ns: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    for e in container["env"].as_sequence().expect("env") {
        let name = s(&e["name"]).to_string();
        let value = match &e["valueFrom"]["fieldRef"]["fieldPath"] {
            Value::String(f) if f == "metadata.name" => pod.to_string(),
            Value::String(f) if f == "metadata.namespace" => ns.to_string(),
            Value::Null => {
                let mut v = s(&e["value"]).to_string();
                for (k, val) in &env {
                    v = v.replace(&format!("$({k})"), val);
                }
                v
            }
            other => panic!("{name}: unexpected valueFrom {other:?}"),
        };
        env.push((name, value));
    }
    env
}

/// What Kubernetes cluster DNS answers for the headless Service `etcd` of a 3-replica
/// StatefulSet in namespace `ns` (every pod on 127.0.0.1 here: the plan only names them).
const ZONE: &str = "\
$ORIGIN cluster.local.
$TTL 30
@ IN SOA ns.dns hostmaster 1 7200 1800 86400 30
  IN NS ns.dns
ns.dns IN A 127.0.0.1
_etcd-server._tcp.etcd.ns.svc IN SRV 0 33 2380 etcd-0.etcd.ns.svc
                              IN SRV 0 33 2380 etcd-1.etcd.ns.svc
                              IN SRV 0 33 2380 etcd-2.etcd.ns.svc
_etcd-client._tcp.etcd.ns.svc IN SRV 0 33 2379 etcd-0.etcd.ns.svc
                              IN SRV 0 33 2379 etcd-1.etcd.ns.svc
                              IN SRV 0 33 2379 etcd-2.etcd.ns.svc
etcd-0.etcd.ns.svc IN A 127.0.0.1
etcd-1.etcd.ns.svc IN A 127.0.0.1
etcd-2.etcd.ns.svc IN A 127.0.0.1
";

#[test]
fn the_agent_command_line_of_the_statefulset_plans_the_bootstrap() {
    let docs = manifests();
    let c = &kind(&docs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0];
    let dir = TempDir::new();
    let zone = dir.write("cluster.local.zone", ZONE);
    let dns = Musterd::start(&[("cluster.local.", &zone)]);
    let data = dir.path().join("data");

    let command: Vec<String> = c["command"]
        .as_sequence()
        .expect("command")
        .iter()
        .chain(c["args"].as_sequence().expect("args"))
        .map(|v| s(v).to_string())
        .collect();
    assert_eq!(command[0], "muster-agent");
    let env: BTreeMap<String, String> = pod_env(c, "etcd-0", "ns").into_iter().collect();
    assert_eq!(env["MUSTER_DOMAIN"], "etcd.ns.svc.cluster.local");
    // The test's own flags go right after the subcommand, before any `--`: the data dir
    // (the manifest's /var/lib/etcd may hold a real member here), the nameserver (the
    // pod's would be cluster DNS from resolv.conf) and --dry-run.
    let mut cmd = agent();
    cmd.arg(&command[1])
        .args([
            "--dry-run",
            "--nameserver",
            &dns.addr.to_string(),
            "--data-dir",
            &data.display().to_string(),
        ])
        .args(&command[2..])
        .envs(&env);
    let (ok, out, err) = output(&mut cmd);
    assert!(ok, "{:?} failed: {err}", bin_path("muster-agent"));
    assert!(err.contains("muster-agent: decision: bootstrap ("), "{err}");
    muster_tests::golden::assert_golden(
        &workspace_root().join("tests/golden/agent/kubernetes-exec.argv"),
        &out.replace(&data.display().to_string(), "/DATA"),
    );
}
