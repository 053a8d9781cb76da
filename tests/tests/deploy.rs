//! The deploy files, made real: the nginx, HAProxy and NATS configs pass
//! their tools' checks and the YAML files (Traefik, Kubernetes, compose)
//! parse and hold together; the stock client's suite runs through nginx in
//! front of three gateway processes on NATS, with clients hashed onto
//! different gateways talking through rooms; one gateway is killed and
//! only its own clients notice, reconnecting through nginx to the others.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sio_tests::NatsServer;
use sio_tests::harness::{connect, node_suite, npm_ci, python_suite, root};
use sio_tests::nginx::{Nginx, deploy, prefix as nginx_prefix, tool};
use sio_tests::process::{Process, free_addr, gateway_args, ready};
use sio_tests::raw::metric;

/// The committed local nginx config listening on `listen` in front of
/// `gateways`.
fn local_nginx(listen: SocketAddr, gateways: &[SocketAddr]) -> PathBuf {
    nginx_config("nginx/nginx.conf", listen, gateways)
}

fn nginx_config(file: &str, listen: SocketAddr, gateways: &[SocketAddr]) -> PathBuf {
    sio_tests::nginx::config(file, listen, gateways)
}

fn nginx_test(prefix: &Path) {
    let out = Command::new(tool("nginx"))
        .arg("-t")
        .arg("-p")
        .arg(prefix)
        .args(["-c", "nginx.conf"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(prefix);
}

/// Three `sio-gateway` processes on `nats`, ready; `None` once killed.
async fn three_gateways(nats: &str) -> ([SocketAddr; 3], Vec<Option<Process>>) {
    let addrs = [free_addr(), free_addr(), free_addr()];
    let gateways = addrs
        .iter()
        .map(|addr| {
            let args = gateway_args(nats, *addr);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Some(Process::start(env!("CARGO_BIN_EXE_gateway-process"), &args))
        })
        .collect();
    for addr in addrs {
        ready(addr).await;
    }
    (addrs, gateways)
}

/// Every document of a YAML file, as JSON (PyYAML does the parsing: the
/// same parser operators' tooling commonly uses).
fn yaml(file: &str) -> Vec<Value> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(deploy(file))
        .output()
        .expect("python3 with PyYAML (tests/python/requirements.txt)");
    assert!(
        out.status.success(),
        "{file} does not parse: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn nginx_haproxy_and_nats_configs_pass_their_checks() {
    nginx_test(&local_nginx(
        free_addr(),
        &[free_addr(), free_addr(), free_addr()],
    ));
    nginx_test(&nginx_config(
        "nginx/nginx-round-robin.conf",
        free_addr(),
        &[free_addr(), free_addr(), free_addr()],
    ));
    // The compose variant, with its service names made resolvable here.
    let mut replace = vec![("listen 3000".to_owned(), format!("listen {}", free_addr()))];
    for n in 1..=3 {
        replace.push((format!("gateway{n}:3000"), free_addr().to_string()));
    }
    nginx_test(&nginx_prefix(&deploy("compose/nginx.conf"), &replace));

    for config in ["haproxy/haproxy.cfg", "haproxy/haproxy-round-robin.cfg"] {
        let out = Command::new(tool("haproxy"))
            .args(["-c", "-f"])
            .arg(deploy(config))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "haproxy -c {config}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let env = NatsServer::cluster_env(0, &[4222, 4223, 4224], &[6222, 6223, 6224]);
    let out = Command::new(NatsServer::binary().unwrap())
        .arg("-t")
        .arg("-c")
        .arg(deploy("nats/cluster.conf"))
        .envs(env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nats-server -t: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn traefik_kubernetes_and_compose_files_hold_together() {
    // Traefik: the static part names the dynamic part, which is sticky,
    // health-checked and has the three gateways.
    let traefik = &yaml("traefik/traefik.yml")[0];
    let dynamic_file = traefik["providers"]["file"]["filename"].as_str().unwrap();
    assert!(root().join(dynamic_file).exists(), "{dynamic_file}");
    let lb = &yaml("traefik/dynamic.yml")[0]["http"]["services"]["gateways"]["loadBalancer"];
    assert!(lb["sticky"]["cookie"]["name"].is_string(), "{lb}");
    assert_eq!(lb["healthCheck"]["path"], "/health");
    assert_eq!(lb["servers"].as_array().unwrap().len(), 3);

    // Kubernetes, through the kustomization that ties it together.
    let kustomization = &yaml("kustomization.yaml")[0];
    let mut docs = Vec::new();
    for resource in kustomization["resources"].as_array().unwrap() {
        docs.extend(yaml(resource.as_str().unwrap()));
    }
    for doc in &docs {
        assert!(
            doc["apiVersion"].is_string() && doc["metadata"]["name"].is_string(),
            "{doc}"
        );
    }
    let generated = &kustomization["configMapGenerator"][0];
    for file in generated["files"].as_array().unwrap() {
        assert!(deploy(file.as_str().unwrap()).exists(), "{file}");
    }

    let gateway = &find(&docs, "Deployment", "sio-gateway")["spec"]["template"]["spec"];
    let container = &gateway["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/health");
    let env_names: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    // Every variable is one the gateway reads (its --help lists them).
    let help = Command::new(env!("CARGO_BIN_EXE_gateway-process"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for name in &env_names {
        assert!(
            help.contains(&format!("[env: {name}]")),
            "{name} is not a gateway variable"
        );
    }
    assert!(env_names.contains(&"SIO_NATS"));
    let service = &find(&docs, "Service", "sio-gateway")["spec"];
    assert_eq!(service["sessionAffinity"], "ClientIP");
    let any = &find(&docs, "Service", "sio-gateway-any")["spec"];
    assert!(any.get("sessionAffinity").is_none(), "{any}");
    assert_eq!(any["selector"], service["selector"]);
    let ingress = &find(&docs, "Ingress", "sio-gateway")["metadata"]["annotations"];
    assert_eq!(ingress["nginx.ingress.kubernetes.io/affinity"], "cookie");
    assert!(find(&docs, "Deployment", "sio-worker")["spec"]["replicas"].as_u64() >= Some(1));

    // The NATS nodes set every variable the cluster config reads, and
    // mount the ConfigMap the kustomization generates.
    let nats = &find(&docs, "StatefulSet", "nats")["spec"];
    assert_eq!(nats["replicas"], 3);
    let nats_env: Vec<&str> = nats["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    let conf = std::fs::read_to_string(deploy("nats/cluster.conf")).unwrap();
    let vars: Vec<&str> = conf
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split('$').skip(1))
        .filter_map(|v| {
            v.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
        })
        .collect();
    assert_eq!(vars.len(), 7, "{vars:?}");
    for var in vars {
        assert!(
            nats_env.contains(&var),
            "{var} unset in the NATS StatefulSet"
        );
    }
    assert_eq!(
        nats["template"]["spec"]["volumes"][0]["configMap"]["name"],
        generated["name"]
    );

    // Compose: NATS, three gateways, two workers, nginx with its config.
    let compose = &yaml("docker-compose.yml")[0]["services"];
    for service in [
        "nats", "gateway1", "gateway2", "gateway3", "worker1", "worker2", "nginx",
    ] {
        assert!(compose[service].is_object(), "compose has no {service}");
    }
    assert_eq!(
        compose["gateway1"]["environment"]["SIO_NATS"],
        "nats://nats:4222"
    );
    let volume = compose["nginx"]["volumes"][0].as_str().unwrap();
    let mounted = volume.split(':').next().unwrap();
    assert!(deploy(mounted).exists(), "{mounted}");
    let dockerfile = compose["gateway1"]["build"]["dockerfile"].as_str().unwrap();
    assert!(root().join(dockerfile).exists(), "{dockerfile}");
}

/// Client source addresses: nginx hashes them onto the gateways.
const SOURCES: &str = "127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,\
    127.0.0.7,127.0.0.8,127.0.0.9,127.0.0.10,127.0.0.11,127.0.0.12";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_behind_nginx() {
    npm_ci();
    let server = NatsServer::start().expect("nats-server");
    let (addrs, mut gateways) = three_gateways(&server.url()).await;
    let mut workers = Vec::new();
    for _ in 0..2 {
        workers.push(
            sio_demo::worker()
                .start(connect(&server).await)
                .await
                .unwrap(),
        );
    }
    let listen = free_addr();
    let _nginx = Nginx::start(local_nginx(listen, &addrs), listen).await;
    let url = format!("http://{listen}");
    node_suite("tests/js/", &url, &[]).await;

    // Clients from twelve addresses, hashed onto the gateways, talk
    // through one room.
    let mut clients = Process::start_with(
        "node",
        &["tests/js/cluster-clients.js"],
        &[
            ("SIO_URLS", &url),
            ("SIO_LOCAL_ADDRESSES", SOURCES),
            ("SIO_AWAIT_KILL", "1"),
        ],
    );
    clients.expect("round 1 ok");
    let mut held = Vec::new();
    for addr in addrs {
        held.push(metric(addr, "sio_gateway_sessions").await);
    }
    assert_eq!(held.iter().sum::<u64>(), 12, "{held:?}");
    // A gateway holding some of the clients, but not all, dies.
    let victim = (0..3)
        .filter(|&i| held[i] > 0 && held[i] < 12)
        .max_by_key(|&i| held[i])
        .unwrap_or_else(|| panic!("nginx put every client on one gateway: {held:?}"));
    drop(gateways[victim].take());
    clients.send(&format!("killed {}", held[victim]));
    clients.expect("round 2 ok");
    // Exactly its clients were ever disconnected.
    let line = clients.expect("disconnected");
    assert_eq!(line, format!("disconnected {}", held[victim]));
    assert!(clients.success());
    for w in workers {
        w.shutdown().await;
    }
}

/// Three gateways behind nginx round robin (no stickiness): polling
/// requests land on any gateway and are served by their session's owner
/// over NATS; an upgrade that lands on another gateway takes the session
/// there. Stock clients polling only, then with the default transports:
/// every message of a round reaches every client and nobody is
/// disconnected; the stock suite and python-socketio's pass through the
/// balancer; the gateways forwarded requests and took sessions over (so
/// routing luck cannot pass it). Then a gateway holding some of the
/// upgraded sessions dies: exactly its clients reconnect, and the
/// sessions it opened that live on elsewhere keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_through_round_robin_nginx() {
    npm_ci();
    let server = NatsServer::start().expect("nats-server");
    let (addrs, mut gateways) = three_gateways(&server.url()).await;
    let worker = sio_demo::worker()
        .start(connect(&server).await)
        .await
        .unwrap();
    let listen = free_addr();
    let config = nginx_config("nginx/nginx-round-robin.conf", listen, &addrs);
    let _nginx = Nginx::start(config, listen).await;
    let url = format!("http://{listen}");
    let clients = |transports: &str, await_kill: bool| {
        let mut env = vec![
            ("SIO_URLS", url.as_str()),
            ("SIO_CLIENTS", "200"),
            ("SIO_TRANSPORTS", transports),
        ];
        if await_kill {
            env.push(("SIO_AWAIT_KILL", "1"));
        }
        Process::start_with("node", &["tests/js/cluster-clients.js"], &env)
    };
    let mut polling = clients("polling", false);
    polling.expect("round 1 ok");
    assert_eq!(polling.expect("disconnected"), "disconnected 0");
    assert!(polling.success());
    // Its sessions gone before the suites start (their `left` notices
    // would reach the suites' clients in the lobby).
    for _ in 0..100 {
        let mut left = 0;
        for addr in addrs {
            left += metric(addr, "sio_gateway_sessions").await;
        }
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Other client implementations and the whole stock suite through the
    // same balancer.
    python_suite(&url).await;
    node_suite("tests/js/", &url, &[]).await;
    node_suite("tests/js/", &url, &[("SIO_TRANSPORTS", "polling")]).await;
    let (mut forwarded, mut taken) = (0, 0);
    for addr in addrs {
        forwarded += metric(addr, "sio_gateway_polls_forwarded_total").await;
        taken += metric(addr, "sio_gateway_sessions_taken_over_total").await;
    }
    assert!(forwarded > 0, "no request reached another gateway");
    assert!(taken > 0, "no upgrade reached another gateway");
    // Upgraded clients, and a gateway that dies under them.
    let mut upgraded = clients("polling,websocket", true);
    upgraded.expect("round 1 ok");
    let mut held = Vec::new();
    for _ in 0..50 {
        held.clear();
        for addr in addrs {
            held.push(metric(addr, "sio_gateway_sessions").await);
        }
        if held.iter().sum::<u64>() == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(held.iter().sum::<u64>(), 200, "{held:?}");
    let victim = (0..3)
        .filter(|&i| held[i] > 0)
        .max_by_key(|&i| held[i])
        .unwrap();
    let handed = metric(addrs[victim], "sio_gateway_sessions_handed_over_total").await;
    assert!(handed > 0, "none of the victim's sessions lives elsewhere");
    drop(gateways[victim].take());
    upgraded.send(&format!("killed {}", held[victim]));
    upgraded.expect("round 2 ok");
    assert_eq!(
        upgraded.expect("disconnected"),
        format!("disconnected {}", held[victim]),
        "exactly the victim's clients reconnected"
    );
    assert!(upgraded.success());
    worker.shutdown().await;
}
