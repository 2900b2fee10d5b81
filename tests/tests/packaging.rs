//! Packaging and conventions: contrib/ (the systemd unit, the Prometheus rules, the Kubernetes
//! manifests, the Dockerfile, the Grafana dashboard) checked by the tools that consume them and
//! against a live agent; shell completions, man pages, the exit statuses in `--help` and the
//! README; and `record --user`.
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use std::{
    collections::BTreeSet,
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpListener,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use common::{Fixture, cum, read_profile, timerscope};
use serde_yaml::Value as Yaml;
use timerscope_tests::{Variant, fixture_path, reference_go, workspace_root};

/// The capabilities timerscope needs, without the `CAP_` prefix: SYS_ADMIN for uprobe perf
/// events and BPF_ENABLE_STATS (covering CAP_BPF and CAP_PERFMON, which do not suffice alone),
/// SYS_PTRACE for other processes' memory. Both the DaemonSet and the unit grant exactly these;
/// `the_granted_capabilities_are_enough_and_each_is_needed` proves it.
const NEEDED_CAPABILITIES: [&str; 2] = ["SYS_ADMIN", "SYS_PTRACE"];

/// The user `cargo xtask setup` creates for `record --user`.
const TEST_USER: &str = "timerscope-test";

fn contrib(name: &str) -> PathBuf {
    workspace_root().join("contrib").join(name)
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------
// PromQL: the metric names an expression reads.

/// Aggregation operators, which may have their `by (...)` before the parenthesis.
const PROMQL_AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// PromQL words that are not metric names.
const PROMQL_KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
];

/// The metric names `expr` selects: identifiers outside label matchers, ranges and strings that
/// are not functions, aggregations or keywords, and not the label lists of by/on/... clauses.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut skip_label_list = false;
    while i < chars.len() {
        let c = chars[i];
        let skip_to = |close: char, from: usize| {
            let mut j = from + 1;
            while j < chars.len() && chars[j] != close {
                if chars[j] == '"' {
                    j += 1;
                    while j < chars.len() && chars[j] != '"' {
                        j += usize::from(chars[j] == '\\') + 1;
                    }
                }
                j += 1;
            }
            j + 1
        };
        match c {
            '{' => i = skip_to('}', i),
            '[' => i = skip_to(']', i),
            '"' => i = skip_to('"', i),
            '(' if skip_label_list => {
                skip_label_list = false;
                i = skip_to(')', i);
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                if PROMQL_KEYWORDS.contains(&word.as_str()) {
                    skip_label_list = matches!(
                        word.as_str(),
                        "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                    ) && next == Some(&'(');
                } else if next != Some(&'(') && !PROMQL_AGGREGATIONS.contains(&word.as_str()) {
                    names.insert(word);
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn metric_names_are_read_from_promql() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (instance, le) (rate(a_bucket{exe=~"$exe", x="}"}[5m]))) > on (pid) b and c offset 5m"#,
    );
    assert_eq!(
        names,
        ["a_bucket", "b", "c"]
            .map(String::from)
            .into_iter()
            .collect()
    );
}

/// The metric families of a Prometheus text page (its `# TYPE` lines), with `_bucket`, `_sum`
/// and `_count` for histograms.
fn exported_series(page: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in page.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        names.insert(name.to_owned());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

// ---------------------------------------------------------------------------------------------
// A live agent.

struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    /// `timerscope watch ARGS`, run through `prefix` (e.g. setpriv) when given.
    fn start(prefix: &[&str], args: &[&str]) -> Self {
        let mut command = match prefix.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(timerscope());
                c
            }
            None => Command::new(timerscope()),
        };
        let mut child = command
            .arg("watch")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (send, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                eprintln!("watch: {line}");
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Its stderr so far.
    fn stderr(&self) -> String {
        self.lines.try_iter().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

fn metrics_page(addr: &str) -> String {
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut page = String::new();
    let _ = stream.read_to_string(&mut page);
    page
}

/// Polls until the page has a `timerscope_live_timers` sample for `pid` with at least one live
/// timer (the page is re-rendered every 5 s), or the agent exits or 30 s pass.
fn live_timers_page(watch: &mut Watch, addr: &str, pid: u32) -> Result<String, String> {
    let prefix = format!("timerscope_live_timers{{pid=\"{pid}\"");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = metrics_page(addr);
        let live = page
            .lines()
            .find(|l| l.starts_with(&prefix))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
        if live.is_some_and(|n| n > 0.0) {
            return Ok(page);
        }
        if let Some(status) = watch.child.try_wait().unwrap() {
            return Err(format!("watch exited ({status}): {}", watch.stderr()));
        }
        if Instant::now() > deadline {
            return Err(format!("no live timers after 30 s:\n{page}"));
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// A fixture creating timers under `watch`; returns the live metrics page once it has them.
fn watch_live_page(prefix: &[&str]) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let mut fixture = Fixture::spawn(
        "timers",
        reference_go(),
        Variant::Normal,
        &["afterfunc-leak", "-n", "20", "-hold", "60s"],
    );
    let pid = fixture.pid();
    let mut watch = Watch::start(
        prefix,
        &[
            "--pid",
            &pid.to_string(),
            "--events",
            "all",
            "--interval",
            "1s",
            "--dir",
            dir.path().to_str().unwrap(),
            "--metrics-addr",
            &addr,
        ],
    );
    // Attached (the page lists the pid) before the timers are created.
    let listed = format!("timerscope_live_timers{{pid=\"{pid}\"");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !metrics_page(&addr).contains(&listed) {
        if let Some(status) = watch.child.try_wait().unwrap() {
            return Err(format!("watch exited ({status}): {}", watch.stderr()));
        }
        if Instant::now() > deadline {
            return Err(format!("never attached: {}", watch.stderr()));
        }
        thread::sleep(Duration::from_millis(100));
    }
    fixture.start_scenario();
    fixture.summary();
    live_timers_page(&mut watch, &addr, pid)
}

#[test]
fn the_granted_capabilities_are_enough_and_each_is_needed() {
    let bounding = |caps: &[&str]| {
        let list: Vec<String> = caps
            .iter()
            .map(|c| format!("+{}", c.to_lowercase()))
            .collect();
        format!("--bounding-set=-all,{}", list.join(","))
    };
    // uid 0 with exactly these capabilities (a root exec gets its bounding set), as the
    // DaemonSet's container and the unit's service run.
    let all = bounding(&NEEDED_CAPABILITIES);
    let setpriv = ["setpriv", all.as_str(), "--"];
    // CAP_BPF and CAP_PERFMON do not replace CAP_SYS_ADMIN (the uprobe perf event is refused).
    let narrow = bounding(&["BPF", "PERFMON", "SYS_PTRACE"]);
    assert!(
        watch_live_page(&["setpriv", &narrow, "--"]).is_err(),
        "CAP_BPF and CAP_PERFMON suffice now: grant them instead of CAP_SYS_ADMIN"
    );
    let page = watch_live_page(&setpriv)
        .unwrap_or_else(|e| panic!("watch with only {NEEDED_CAPABILITIES:?} does not work: {e}"));
    assert!(page.contains("timerscope_capture_tier{"), "{page}");
    for dropped in NEEDED_CAPABILITIES {
        let fewer: Vec<&str> = NEEDED_CAPABILITIES
            .into_iter()
            .filter(|c| *c != dropped)
            .collect();
        let set = bounding(&fewer);
        assert!(
            watch_live_page(&["setpriv", &set, "--"]).is_err(),
            "watch works without CAP_{dropped}: drop it from the manifests"
        );
    }
}

#[test]
fn contrib_queries_only_read_metrics_the_agent_exports() {
    let page = watch_live_page(&[]).unwrap();
    let exported = exported_series(&page);
    assert!(exported.contains("timerscope_live_timers"), "{page}");
    // Per-process series carry the `exe` label the dashboard's variable filters by.
    assert!(
        page.lines()
            .any(|l| l.starts_with("timerscope_live_timers{") && l.contains("exe=\"timers\"")),
        "{page}"
    );

    let mut queries: Vec<(String, String)> = Vec::new();
    let rules: Yaml = serde_yaml::from_str(&read(&contrib("prometheus-rules.yml"))).unwrap();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = rule["alert"].as_str().unwrap().to_owned();
            queries.push((name, rule["expr"].as_str().unwrap().to_owned()));
        }
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(&contrib("grafana-dashboard.json"))).unwrap();
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for variable in ["instance", "exe"] {
        assert!(
            variables.contains(&variable),
            "the dashboard has a ${variable} variable"
        );
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            let metric = query
                .strip_prefix("label_values(")
                .and_then(|q| q.split([',', '{']).next())
                .unwrap_or_else(|| panic!("variable query {query}"));
            queries.push((format!("variable {}", variable["name"]), metric.to_owned()));
        }
    }
    let mut panels = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            assert!(
                expr.contains("instance=~\"$instance\""),
                "panel {title} filters by $instance: {expr}"
            );
            let per_process = metric_names(expr)
                .iter()
                .any(|m| !m.starts_with("process_") && page.contains(&format!("{m}{{pid=")));
            if per_process {
                assert!(
                    expr.contains("exe=~\"$exe\""),
                    "panel {title} filters by $exe: {expr}"
                );
            }
            queries.push((format!("panel {title}"), expr.to_owned()));
        }
        panels += 1;
    }
    assert!(panels >= 8, "the dashboard has its panels");
    for (what, expr) in &queries {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{what} reads no metric: {expr}");
        for name in names {
            assert!(
                exported.contains(&name),
                "{what} reads {name}, which the agent does not export: {expr}"
            );
        }
    }

    // The dashboard's queries parse as PromQL (as recording rules, variables filled in).
    let dir = tempfile::tempdir().unwrap();
    let mut recording = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in queries.iter().enumerate() {
        let expr = expr.replace("$instance", ".*").replace("$exe", ".*");
        recording.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
    }
    let file = dir.path().join("dashboard-rules.yml");
    fs::write(&file, recording).unwrap();
    let check = run(Command::new("promtool").args(["check", "rules"]).arg(&file));
    assert!(
        check.status.success(),
        "promtool: {}{}",
        text(&check.stdout),
        text(&check.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Prometheus rules.

#[test]
fn the_alerting_rules_pass_promtool_and_each_fires_in_its_unit_test() {
    let check = run(Command::new("promtool")
        .args(["check", "rules"])
        .arg(contrib("prometheus-rules.yml")));
    assert!(
        check.status.success(),
        "promtool check rules: {}{}",
        text(&check.stdout),
        text(&check.stderr)
    );
    let test = run(Command::new("promtool")
        .current_dir(workspace_root().join("contrib"))
        .args(["test", "rules", "prometheus-rules.test.yml"]));
    assert!(
        test.status.success(),
        "promtool test rules: {}{}",
        text(&test.stdout),
        text(&test.stderr)
    );

    // Every alert is fired by some test case (and the issue's four concerns have alerts).
    let rules: Yaml = serde_yaml::from_str(&read(&contrib("prometheus-rules.yml"))).unwrap();
    let alerts: BTreeSet<String> = rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .map(|r| r["alert"].as_str().unwrap().to_owned())
        .collect();
    let tests: Yaml = serde_yaml::from_str(&read(&contrib("prometheus-rules.test.yml"))).unwrap();
    let fired: BTreeSet<String> = tests["tests"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_sequence().unwrap())
        .filter(|case| {
            case["exp_alerts"]
                .as_sequence()
                .is_some_and(|a| !a.is_empty())
        })
        .map(|case| case["alertname"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        alerts, fired,
        "every alert fires in prometheus-rules.test.yml"
    );
    let exprs: Vec<&str> = rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .map(|r| r["expr"].as_str().unwrap())
        .collect();
    for metric in [
        "timerscope_live_timers",
        "timerscope_dropped_total",
        "timerscope_push_failures_total",
        "timerscope_probe_overhead_ratio",
    ] {
        assert!(
            exprs.iter().any(|e| metric_names(e).contains(metric)),
            "an alert reads {metric}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// systemd.

/// The unit as installed: copied to `dir`, running the binary under test.
fn install_unit(dir: &Path, unit: &str) -> PathBuf {
    let unit = unit.replace("/usr/local/bin/timerscope", timerscope().to_str().unwrap());
    let path = dir.join("timerscope-watch@.service");
    fs::write(&path, unit).unwrap();
    path
}

fn systemd_escape(instance: &str) -> String {
    let out = run(Command::new("systemd-escape").arg(instance));
    assert!(out.status.success());
    text(&out.stdout).trim().to_owned()
}

/// `systemd-analyze verify` of one instance of the unit in `dir`, with the man pages on
/// MANPATH (for Documentation=): its complaints, if any.
fn verify(dir: &Path, manpath: &Path, instance: &str) -> Result<(), String> {
    let unit = dir.join(format!(
        "timerscope-watch@{}.service",
        systemd_escape(instance)
    ));
    let out = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .env("MANPATH", manpath));
    let complaints = format!("{}{}", text(&out.stdout), text(&out.stderr));
    if out.status.success() && complaints.trim().is_empty() {
        Ok(())
    } else {
        Err(complaints)
    }
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit = read(&contrib("timerscope-watch@.service"));
    let dir = tempfile::tempdir().unwrap();
    let manpath = dir.path().join("man");
    let man = run(Command::new(timerscope())
        .args(["man", "--dir"])
        .arg(manpath.join("man1")));
    assert!(man.status.success(), "{}", text(&man.stderr));
    install_unit(dir.path(), &unit);
    // An instance per executable, by name or by path.
    for instance in ["api", "/usr/local/bin/api"] {
        verify(dir.path(), &manpath, instance)
            .unwrap_or_else(|e| panic!("systemd-analyze verify ({instance}): {e}"));
    }
    // The check judges: a misspelled setting is a complaint.
    install_unit(
        dir.path(),
        &unit.replace("StateDirectory=", "StateDirectry="),
    );
    assert!(verify(dir.path(), &manpath, "api").is_err());

    assert!(unit.contains("--exe %I"), "the instance is the executable");
    let bounding: BTreeSet<&str> = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("CapabilityBoundingSet=")
        .split_whitespace()
        .collect();
    let needed: BTreeSet<String> = NEEDED_CAPABILITIES
        .iter()
        .map(|c| format!("CAP_{c}"))
        .collect();
    assert_eq!(
        bounding,
        needed.iter().map(String::as_str).collect(),
        "the unit grants exactly the needed capabilities"
    );
    for hardening in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
    ] {
        assert!(unit.contains(hardening), "{hardening}");
    }
}

// ---------------------------------------------------------------------------------------------
// Kubernetes and the container image.

fn kubernetes_objects() -> Vec<Yaml> {
    let manifests = read(&contrib("kubernetes.yaml"));
    manifests
        .split("\n---\n")
        .map(|document| serde_yaml::from_str(document).unwrap())
        .collect()
}

fn strings(value: &Yaml) -> Vec<&str> {
    value
        .as_sequence()
        .map(|s| s.iter().filter_map(Yaml::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn the_daemonset_and_service_claim_what_timerscope_needs() {
    let objects = kubernetes_objects();
    let kind = |k: &str| {
        objects
            .iter()
            .find(|o| o["kind"].as_str() == Some(k))
            .unwrap_or_else(|| panic!("kubernetes.yaml has a {k}"))
    };
    let daemonset = kind("DaemonSet");
    let service = kind("Service");
    let pod = &daemonset["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"].as_bool(), Some(true), "hostPID");
    assert!(
        pod["initContainers"].is_null(),
        "nothing else runs privileged"
    );
    let containers = pod["containers"].as_sequence().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];

    let security = &container["securityContext"];
    assert_ne!(
        security["privileged"].as_bool(),
        Some(true),
        "not privileged"
    );
    assert_eq!(
        security["runAsUser"].as_u64(),
        Some(0),
        "timerscope checks for uid 0"
    );
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    let added: BTreeSet<&str> = strings(&security["capabilities"]["add"])
        .into_iter()
        .collect();
    assert_eq!(
        added,
        NEEDED_CAPABILITIES.into_iter().collect(),
        "exactly the needed capabilities"
    );

    // tracefs and BTF from the host, at the same paths.
    let volumes = pod["volumes"].as_sequence().unwrap();
    let mounts = container["volumeMounts"].as_sequence().unwrap();
    let mounted_host_path = |path: &str| {
        mounts.iter().any(|m| {
            m["mountPath"].as_str() == Some(path)
                && volumes
                    .iter()
                    .any(|v| v["name"] == m["name"] && v["hostPath"]["path"].as_str() == Some(path))
        })
    };
    for path in ["/sys/kernel/tracing", "/sys/kernel/btf"] {
        assert!(mounted_host_path(path), "{path} is mounted from the host");
    }

    // The arguments are timerscope watch's, the profile directory is a volume, and the
    // metrics port is the container's and the Service's.
    let args = strings(&container["args"]);
    assert_eq!(args.first(), Some(&"watch"));
    let help = text(&run(Command::new(timerscope()).args(["watch", "--help"])).stdout);
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        assert!(help.contains(flag), "timerscope watch has no {flag}");
    }
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| *a == flag)
            .and_then(|i| args.get(i + 1))
            .copied()
            .unwrap_or_else(|| panic!("args have {flag}"))
    };
    let dir = value_of("--dir");
    assert!(
        mounts.iter().any(|m| m["mountPath"].as_str() == Some(dir)),
        "--dir {dir} is a volume"
    );
    let metrics_port: u64 = value_of("--metrics-addr")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let ports = container["ports"].as_sequence().unwrap();
    let container_port = ports
        .iter()
        .find(|p| p["containerPort"].as_u64() == Some(metrics_port))
        .unwrap_or_else(|| panic!("the container exposes {metrics_port}"));
    let service_ports = service["spec"]["ports"].as_sequence().unwrap();
    assert!(
        service_ports.iter().any(|p| {
            p["port"].as_u64() == Some(metrics_port)
                && (p["targetPort"] == container_port["name"]
                    || p["targetPort"].as_u64() == Some(metrics_port))
        }),
        "the Service serves the metrics port {metrics_port}"
    );
    let pod_labels = &daemonset["spec"]["template"]["metadata"]["labels"];
    let selector = service["spec"]["selector"].as_mapping().unwrap();
    assert!(!selector.is_empty());
    for (key, value) in selector {
        assert_eq!(
            &pod_labels[key], value,
            "the Service selects the DaemonSet's pods"
        );
    }
    assert_eq!(
        &daemonset["spec"]["selector"]["matchLabels"], pod_labels,
        "the DaemonSet selects its pods"
    );
}

/// A Dockerfile instruction: keyword and the rest of the line.
type Instruction = (String, String);

/// A build stage: its name, its base and its instructions.
type Stage = (String, String, Vec<Instruction>);

/// A Dockerfile's instructions, continuation lines joined and comments left out.
fn dockerfile_instructions(text: &str) -> Vec<Instruction> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => current.push_str(start),
            None => {
                current.push_str(line);
                let (keyword, rest) = current.split_once(' ').unwrap_or((&current, ""));
                instructions.push((keyword.to_uppercase(), rest.trim().to_owned()));
                current.clear();
            }
        }
    }
    instructions
}

#[test]
fn the_dockerfile_builds_in_stages_and_ships_only_the_binary() {
    let instructions = dockerfile_instructions(&read(&contrib("Dockerfile")));
    // Stages: (name, base, instructions).
    let mut stages: Vec<Stage> = Vec::new();
    for (keyword, rest) in instructions {
        if keyword == "FROM" {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => name.to_string(),
                _ => panic!("unnamed stage FROM {rest}"),
            };
            stages.push((name, words[0].to_owned(), Vec::new()));
        } else {
            stages
                .last_mut()
                .expect("FROM comes first")
                .2
                .push((keyword, rest));
        }
    }
    assert!(stages.len() >= 2, "a multi-stage build: {stages:?}");
    let names: Vec<&str> = stages.iter().map(|s| s.0.as_str()).collect();
    let builds = stages.iter().position(|(_, _, body)| {
        body.iter().any(|(k, r)| {
            k == "RUN" && r.contains("cargo build --release") && r.contains("-p timerscope")
        })
    });
    let builds = builds.expect("a stage builds timerscope");
    // The build stage's base chain ends in a Rust image and installs bpf-linker and rust-src.
    let chain: Vec<&Stage> = stages[..=builds].iter().collect();
    let runs: String = chain
        .iter()
        .flat_map(|s| s.2.iter())
        .filter(|(k, _)| k == "RUN")
        .map(|(_, r)| r.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    for needed in ["bpf-linker", "rust-src", "llvm-22-dev"] {
        assert!(runs.contains(needed), "the build installs {needed}");
    }

    let (final_name, final_base, body) = stages.last().unwrap();
    assert!(
        !names[..stages.len() - 1].contains(&final_base.as_str()),
        "the image ({final_name}) is a fresh base, not the toolchain"
    );
    let copy = body
        .iter()
        .find(|(k, r)| k == "COPY" && r.starts_with("--from="))
        .expect("the image copies the binary from the build");
    let from = copy.1["--from=".len()..].split_whitespace().next().unwrap();
    assert!(
        names[builds..stages.len() - 1].contains(&from),
        "copied from the build stage"
    );
    let installed = copy.1.split_whitespace().last().unwrap();
    let entrypoint = body
        .iter()
        .find(|(k, _)| k == "ENTRYPOINT")
        .expect("ENTRYPOINT");
    let entrypoint: Vec<String> = serde_json::from_str(&entrypoint.1).expect("exec form");
    assert_eq!(entrypoint, [installed]);
    // Root, which timerscope checks for: no USER, or USER root.
    assert!(
        body.iter()
            .filter(|(k, _)| k == "USER")
            .all(|(_, r)| r == "root" || r == "0"),
        "runs as root"
    );
    assert!(
        !body.iter().any(|(k, _)| k == "RUN"),
        "the image only copies the binary"
    );
}

// ---------------------------------------------------------------------------------------------
// Completions, man pages, exit statuses.

#[test]
fn bash_completion_loads_and_completes_subcommands_and_flags() {
    let script = format!(
        "source <('{}' completions bash) || exit 9\n\
         complete -p timerscope || exit 8\n\
         COMP_WORDS=(timerscope re); COMP_CWORD=1; _timerscope timerscope re timerscope\n\
         echo \"subcommands: ${{COMPREPLY[*]}}\"\n\
         COMP_WORDS=(timerscope record --us); COMP_CWORD=2; _timerscope timerscope --us record\n\
         echo \"flags: ${{COMPREPLY[*]}}\"\n",
        timerscope().display()
    );
    let out = run(Command::new("bash").arg("-c").arg(&script));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("-F _timerscope timerscope"), "{stdout}");
    let line = |prefix: &str| -> Vec<String> {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    assert_eq!(line("subcommands: "), ["record", "report"], "{stdout}");
    assert_eq!(line("flags: "), ["--user"], "{stdout}");
    for shell in ["zsh", "fish"] {
        let out = run(Command::new(timerscope()).args(["completions", shell]));
        assert!(out.status.success() && text(&out.stdout).contains("record"));
    }
}

#[test]
fn man_pages_render_and_list_the_exit_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(Command::new(timerscope())
        .args(["man", "--dir"])
        .arg(dir.path()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    for (page, expected) in [
        ("timerscope.1", "Exit statuses"),
        ("timerscope-record.1", "--user"),
        ("timerscope-watch.1", "--metrics-addr"),
    ] {
        let rendered = run(Command::new("man")
            .arg("-l")
            .arg(dir.path().join(page))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100"));
        let rendered_text = text(&rendered.stdout);
        assert!(
            rendered.status.success() && rendered_text.contains(expected),
            "{page}: {rendered_text}{}",
            text(&rendered.stderr)
        );
        // groff's own warnings about the source, if any, are errors here.
        let warnings = run(Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(dir.path().join(page)));
        assert_eq!(text(&warnings.stderr), "", "{page}");
    }
}

#[test]
fn help_and_readme_list_the_same_exit_statuses() {
    let help = text(&run(Command::new(timerscope()).arg("--help")).stdout);
    let listed: Vec<(u8, String)> = help
        .split_once("Exit statuses:")
        .expect("--help lists exit statuses")
        .1
        .lines()
        .filter_map(|l| {
            let (status, meaning) = l.trim().split_once("  ")?;
            Some((status.parse().ok()?, meaning.trim().to_owned()))
        })
        .collect();
    assert!(listed.len() >= 10, "{help}");
    let readme = read(&workspace_root().join("README.md"));
    let table: Vec<(u8, String)> = readme
        .split_once("Exit statuses")
        .expect("README lists exit statuses")
        .1
        .lines()
        .skip_while(|l| !l.trim_start().starts_with('|'))
        .take_while(|l| l.trim_start().starts_with('|'))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            Some((cells.get(1)?.parse().ok()?, cells.get(2)?.to_string()))
        })
        .collect();
    assert_eq!(listed, table, "--help and README.md's table agree");
}

// ---------------------------------------------------------------------------------------------
// record --user.

/// The `Name:\tvalues` fields of /proc/PID/status.
fn status_field(pid: u32, name: &str) -> Vec<u32> {
    let status = read(Path::new(&format!("/proc/{pid}/status")));
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("{name} in {status}"))
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect()
}

fn id(args: &[&str]) -> Vec<u32> {
    let out = run(Command::new("id").args(args).arg(TEST_USER));
    assert!(
        out.status.success(),
        "user {TEST_USER} missing: run cargo xtask setup"
    );
    text(&out.stdout)
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect()
}

#[test]
fn record_user_runs_the_command_as_that_user_and_still_records_it() {
    let uid = id(&["-u"])[0];
    let gid = id(&["-g"])[0];
    let groups: BTreeSet<u32> = id(&["-G"]).into_iter().collect();
    assert!(groups.len() >= 2, "{TEST_USER} has a supplementary group");
    // Where the user can run it (the fixture cache may be in root's home).
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let binary = dir.path().join("timers");
    fs::copy(
        fixture_path("timers", reference_go(), Variant::Normal).unwrap(),
        &binary,
    )
    .unwrap();
    let output = dir.path().join("user.pb.gz");
    let mut record = Command::new(timerscope())
        .args(["record", "--user", TEST_USER, "-o"])
        .arg(&output)
        .arg("--")
        .arg(&binary)
        .args(["afterfunc-leak", "-n", "25", "-hold", "3s"])
        .env("TIMERSCOPE_SECRET_OF_THE_CALLER", "x")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(record.stderr.take().unwrap());
    let mut line = String::new();
    let pid: u32 = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "no recording line"
        );
        if let Some(rest) = line.split("recording pid ").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    // While it holds its timers: who it runs as, and with what environment.
    let ids = status_field(pid, "Uid");
    let gids = status_field(pid, "Gid");
    let supplementary: BTreeSet<u32> = status_field(pid, "Groups").into_iter().collect();
    let environ = fs::read(format!("/proc/{pid}/environ")).unwrap();
    let env: Vec<String> = environ
        .split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(text)
        .collect();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let status = record.wait().unwrap();
    assert!(status.success(), "{line}{rest}");

    assert_eq!(ids, [uid; 4], "real, effective, saved and fs uid");
    assert_eq!(gids, [gid; 4], "real, effective, saved and fs gid");
    assert_eq!(supplementary, groups, "initgroups");
    let home = format!("HOME=/home/{TEST_USER}");
    for expected in [
        home.as_str(),
        &format!("USER={TEST_USER}"),
        &format!("LOGNAME={TEST_USER}"),
        "SHELL=/bin/sh",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ] {
        assert!(env.iter().any(|v| v == expected), "{expected} in {env:?}");
    }
    assert!(
        !env.iter().any(|v| v.starts_with("TIMERSCOPE_SECRET")),
        "the caller's environment is reset: {env:?}"
    );
    let profile = read_profile(&output);
    assert_eq!(
        cum(&profile, "timers_created", "main.leakAfterFuncs", None),
        25,
        "the command is recorded as usual"
    );
}

#[test]
fn started_through_sudo_without_user_says_the_command_runs_as_root() {
    let record = |args: &[&str], sudo_user: &str| {
        let out = run(Command::new(timerscope())
            .arg("record")
            .args(args)
            .args(["--", "/nonexistent-command"])
            .env("SUDO_USER", sudo_user));
        text(&out.stderr)
    };
    let stderr = record(&[], TEST_USER);
    assert!(
        stderr.contains("runs as root")
            && stderr.contains(&format!("--user {TEST_USER}"))
            && stderr.lines().count() >= 2,
        "{stderr}"
    );
    let quiet = record(&["--user", "root"], TEST_USER);
    assert!(!quiet.contains("runs as root"), "{quiet}");
    let root = record(&[], "root");
    assert!(!root.contains("runs as root"), "{root}");
    let unknown = record(&["--user", "no-such-user-here"], TEST_USER);
    assert!(
        unknown.contains("no such user: no-such-user-here") && unknown.lines().count() == 1,
        "{unknown}"
    );
}
