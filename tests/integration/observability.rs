//! The operator's observability artefacts in `dashboards/`: the Grafana dashboard is
//! provisionable as shipped, every metric it and the Prometheus alert rules query exists in a live
//! scrape of the daemon, and `promtool` accepts the scrape, the rules and the dashboard's queries.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::support::{client_with_key, enc, page, ready_shared, shared_funded, Daemon};

const ROWS: &[&str] = &[
    "Fleet overview",
    "Traffic",
    "Render fleet",
    "Ledger and money",
    "Errors",
    "Cache and storage",
];
const DATASOURCE: &str = "${datasource}";
const INSTANCE_FILTER: &str = "instance=~\"$instance\"";
/// Units a panel may use.
const UNITS: &[&str] = &["s", "bytes", "reqps", "percentunit", "short"];

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_file(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

fn dashboard() -> Value {
    serde_json::from_str(&read("dashboards/shotfarm.json"))
        .expect("dashboards/shotfarm.json is JSON")
}

/// Every panel, the panels of collapsed rows included (rows themselves too).
fn all_panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in panels.as_array().into_iter().flatten() {
            out.push(panel);
            if let Some(nested) = panel.get("panels") {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn is_row(panel: &Value) -> bool {
    panel["type"] == "row"
}

fn title(panel: &Value) -> String {
    panel["title"].as_str().unwrap_or("<untitled>").to_string()
}

/// `(panel title, expr)` of every query of every panel.
fn dashboard_exprs(dashboard: &Value) -> Vec<(String, String)> {
    all_panels(dashboard)
        .into_iter()
        .flat_map(|panel| {
            panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["expr"].as_str())
                .map(move |expr| (title(panel), expr.to_string()))
        })
        .collect()
}

/// `(alert, expr)` of every rule in a Prometheus rules file, read line by line (no YAML parser
/// among the dev-dependencies): `expr: <inline>` or a block scalar `expr: |` / `expr: >`, whose
/// lines are those indented deeper than the `expr:` key.
fn rule_exprs(yaml: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    let mut rule = String::from("<unnamed>");
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let key_value = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        if let Some(name) = key_value
            .strip_prefix("alert:")
            .or_else(|| key_value.strip_prefix("record:"))
        {
            rule = unquote(name.trim()).to_string();
        }
        if let Some(value) = key_value.strip_prefix("expr:") {
            let value = value.trim();
            if value.starts_with('|') || value.starts_with('>') {
                let mut block = Vec::new();
                while i + 1 < lines.len() {
                    let next = lines[i + 1];
                    let next_indent = next.len() - next.trim_start().len();
                    if !next.trim().is_empty() && next_indent <= indent {
                        break;
                    }
                    block.push(next.trim());
                    i += 1;
                }
                out.push((rule.clone(), block.join(" ").trim().to_string()));
            } else {
                out.push((rule.clone(), unquote(value).to_string()));
            }
        }
        i += 1;
    }
    out
}

fn unquote(value: &str) -> &str {
    let value = value.trim();
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

fn alert_exprs() -> Vec<(String, String)> {
    rule_exprs(&read("dashboards/alerts.yml"))
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Metric names an expression mentions: identifiers `shotfarm_[a-z0-9_]+` (not inside a longer
/// identifier), with where each ends in `expr`; plus `up` before a selector or alone.
fn metric_names(expr: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = expr[from..].find("shotfarm_").map(|i| i + from) {
        let starts_word = expr[..at].chars().next_back().is_none_or(|c| !is_ident(c));
        let len = expr[at..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(expr.len() - at);
        if starts_word {
            out.push((expr[at..at + len].to_string(), at + len));
        }
        from = at + len.max(1);
    }
    let mut from = 0;
    while let Some(at) = expr[from..].find("up").map(|i| i + from) {
        let before = expr[..at].chars().next_back();
        let after = expr[at + 2..].chars().next();
        if before.is_none_or(|c| !is_ident(c)) && after.is_none_or(|c| !is_ident(c) && c != '(') {
            out.push(("up".to_string(), at + 2));
        }
        from = at + 2;
    }
    out
}

/// A histogram's series name to its family: `_bucket`, `_sum`, `_count` stripped.
fn family(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

/// `# TYPE <name> <type>` lines of a scrape.
fn scrape_types(scrape: &str) -> BTreeMap<String, String> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect()
}

/// Captures on the shared daemon (every format, so each histogram and `format` label has
/// samples), then its scrape.
async fn scrape_after_captures() -> String {
    let daemon = ready_shared().await;
    let client = client_with_key(&shared_funded().key);
    let url = enc(&page("/plain"));
    for format in ["png", "jpeg", "webp", "png"] {
        let response = client
            .get(daemon.url(&format!(
                "/api/v1/screenshot?url={url}&format={format}&width=320&height=240"
            )))
            .send()
            .await
            .expect("capture request");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, 200, "a {format} capture failed: {body}");
    }
    // Browser memory is sampled by the liveness probe (every `farm.probe_interval_ms`, 5 s):
    // a daemon that just started has no sample yet. Wait for one, bounded.
    for _ in 0..150 {
        let text = daemon.metrics_text().await;
        if text.contains("shotfarm_browser_memory_bytes{") {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    daemon.metrics_text().await
}

/// `promtool`, or a failure that says how to get it: `make test` installs it.
fn promtool() -> PathBuf {
    let candidates = std::env::var_os("PROMTOOL")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            std::env::var_os("PATH")
                .map(|path| {
                    std::env::split_paths(&path)
                        .map(|dir| dir.join("promtool"))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        )
        .chain([PathBuf::from("/usr/bin/promtool")]);
    for candidate in candidates {
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "promtool is not installed (it comes with Debian's `prometheus` package): run `make test`, \
         which installs it through scripts/install-deps.sh, or `apt-get install -y \
         --no-install-recommends prometheus`; set PROMTOOL to use another binary"
    );
}

fn run_promtool(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(promtool())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("promtool stdin")
            .write_all(text.as_bytes())
            .expect("scrape written to promtool");
    }
    child.wait_with_output().expect("promtool finishes")
}

fn describe(args: &[&str], output: &Output) -> String {
    format!(
        "promtool {} exited with {}\n--- stdout\n{}\n--- stderr\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_grafana_dashboard_is_a_provisionable_dashboard() {
    let raw = read("dashboards/shotfarm.json");
    let d = dashboard();
    assert!(
        d.get("__inputs").is_none(),
        "an import placeholder section (__inputs) breaks provisioning"
    );
    assert!(
        !raw.contains("${DS_"),
        "a ${{DS_…}} import placeholder is left in the dashboard"
    );
    assert_eq!(d["uid"], "shotfarm-overview");
    assert_eq!(d["title"], "shotfarm");
    assert_eq!(d["schemaVersion"], 39);

    let variables = d["templating"]["list"].as_array().expect("templating.list");
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no `{name}` variable"))
    };
    let datasource = variable("datasource");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    let instance = variable("instance");
    assert_eq!(instance["type"], "query");
    assert_eq!(instance["datasource"]["uid"], DATASOURCE);
    assert_eq!(instance["multi"], true);
    assert_eq!(instance["includeAll"], true);
    let instance_query = instance["query"]["query"]
        .as_str()
        .or_else(|| instance["query"].as_str())
        .expect("instance variable query");
    assert_eq!(
        instance_query,
        "label_values(shotfarm_build_info, instance)"
    );

    let panels = all_panels(&d);
    let rows: Vec<String> = panels
        .iter()
        .filter(|p| is_row(p))
        .map(|p| title(p))
        .collect();
    assert_eq!(rows, ROWS, "the dashboard's rows");

    let mut ids = BTreeSet::new();
    let mut problems = Vec::new();
    let mut boxes: Vec<(String, [i64; 4])> = Vec::new();
    for panel in &panels {
        let name = title(panel);
        match panel["id"].as_i64() {
            Some(id) if ids.insert(id) => {}
            Some(id) => problems.push(format!("{name}: duplicate panel id {id}")),
            None => problems.push(format!("{name}: no numeric id")),
        }
        let grid = &panel["gridPos"];
        let pos: Vec<Option<i64>> = ["x", "y", "w", "h"]
            .iter()
            .map(|k| grid[*k].as_i64())
            .collect();
        match pos[..] {
            [Some(x), Some(y), Some(w), Some(h)] if w > 0 && h > 0 && x >= 0 && x + w <= 24 => {
                boxes.push((name.clone(), [x, y, w, h]))
            }
            _ => problems.push(format!("{name}: bad gridPos {grid}")),
        }
        if is_row(panel) {
            continue;
        }
        if panel["datasource"]["uid"] != DATASOURCE {
            problems.push(format!(
                "{name}: panel datasource is {}",
                panel["datasource"]
            ));
        }
        if panel["description"]
            .as_str()
            .is_none_or(|s| s.trim().is_empty())
        {
            problems.push(format!("{name}: no description"));
        }
        let unit = panel["fieldConfig"]["defaults"]["unit"]
            .as_str()
            .unwrap_or("");
        if !UNITS.contains(&unit) {
            problems.push(format!("{name}: unit `{unit}` is not one of {UNITS:?}"));
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if !targets
            .iter()
            .any(|t| t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()))
        {
            problems.push(format!("{name}: no query with an expression"));
        }
        for target in &targets {
            if target["datasource"]["uid"] != DATASOURCE {
                problems.push(format!(
                    "{name}: query {} has datasource {}",
                    target["refId"], target["datasource"]
                ));
            }
        }
    }
    // Rows (collapsed: false) and panels tile the grid without overlapping.
    for (i, (a, [ax, ay, aw, ah])) in boxes.iter().enumerate() {
        for (b, [bx, by, bw, bh]) in &boxes[i + 1..] {
            if ax < &(bx + bw) && bx < &(ax + aw) && ay < &(by + bh) && by < &(ay + ah) {
                problems.push(format!("{a} and {b} overlap"));
            }
        }
    }
    for row in panels.iter().filter(|p| is_row(p)) {
        if row["collapsed"] != false {
            problems.push(format!("row {} is collapsed", title(row)));
        }
    }

    // Every metric selector filters on the instance variable, and rates use $__rate_interval.
    for (panel, expr) in dashboard_exprs(&d) {
        for (name, end) in metric_names(&expr) {
            let selector = expr[end..]
                .strip_prefix('{')
                .and_then(|rest| rest.split('}').next());
            if !selector.is_some_and(|s| s.contains(INSTANCE_FILTER)) {
                problems.push(format!(
                    "{panel}: `{name}` is not filtered on {INSTANCE_FILTER} in `{expr}`"
                ));
            }
        }
        if expr.contains("rate(") && !expr.contains("[$__rate_interval]") {
            problems.push(format!(
                "{panel}: a rate without $__rate_interval: `{expr}`"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "dashboard problems:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_alert_rules_are_the_documented_ones() {
    let yaml = read("dashboards/alerts.yml");
    let alerts: Vec<String> = alert_exprs().into_iter().map(|(name, _)| name).collect();
    let expected = [
        "ShotfarmDown",
        "ShotfarmQueueSaturated",
        "ShotfarmCaptureErrorRatio",
        "ShotfarmBrowsersRestartingInALoop",
        "ShotfarmLedgerSlow",
        "ShotfarmHoldsExpiring",
        "ShotfarmRedisDown",
        "ShotfarmFleetUnhealthy",
        "ShotfarmWebhooksFailing",
        "ShotfarmAsyncJobsWaiting",
        "ShotfarmAsyncWebhooksGivingUp",
    ];
    let mut sorted_alerts = alerts.clone();
    sorted_alerts.sort();
    let mut sorted_expected = expected.map(String::from).to_vec();
    sorted_expected.sort();
    assert_eq!(
        sorted_alerts, sorted_expected,
        "the alerts in dashboards/alerts.yml"
    );
    let readme = read("dashboards/README.md");
    for alert in &alerts {
        assert!(
            readme.contains(&format!("`{alert}`")),
            "dashboards/README.md does not describe {alert}"
        );
    }
    // Each rule has a for, a severity and the three annotations (counted per rule block).
    for block in yaml.split("- alert:").skip(1) {
        let name = block.split_whitespace().next().unwrap_or("?");
        for key in ["for:", "severity:", "summary:", "description:", "runbook:"] {
            assert!(block.contains(key), "{name} has no `{key}`");
        }
    }
    let down = alert_exprs()
        .into_iter()
        .find(|(name, _)| name == "ShotfarmDown")
        .map(|(_, expr)| expr)
        .unwrap_or_default();
    assert!(
        down.contains("up{job=\"shotfarm\"}"),
        "ShotfarmDown must watch the documented scrape job: `{down}`"
    );
}

/// The families that the dashboard and the alert rules query and `scrape` lacks (a family
/// counts only with at least one sample), each with what queries it.
fn families_missing_from(scrape: &str) -> Vec<String> {
    let types = scrape_types(scrape);
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let queries = dashboard_exprs(&dashboard())
        .into_iter()
        .map(|(panel, expr)| (format!("panel {panel:?}"), expr))
        .chain(
            alert_exprs()
                .into_iter()
                .map(|(alert, expr)| (format!("alert {alert}"), expr)),
        );
    for (source, expr) in queries {
        for (name, _) in metric_names(&expr) {
            used.entry(name).or_default().insert(source.clone());
        }
    }
    assert!(
        used.len() > 20,
        "too few metrics found in the dashboard and alerts: {used:?}"
    );
    let has_sample = |series: &str| {
        scrape.lines().any(|l| {
            l.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
    };
    let mut missing = Vec::new();
    for (name, sources) in &used {
        if name == "up" {
            continue; // Prometheus' own, per scrape target.
        }
        let stripped = family(name);
        let found = if stripped != name {
            // A histogram series: its family must be a histogram.
            matches!(
                types.get(stripped).map(String::as_str),
                Some("histogram" | "summary")
            ) || types.contains_key(name.as_str())
        } else {
            types.contains_key(name.as_str())
        };
        if !found || !has_sample(name) {
            missing.push(format!(
                "{stripped} (as {name}, used by {})",
                sources.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    missing
}

#[tokio::test]
async fn every_metric_in_the_dashboard_and_the_alerts_exists_in_a_live_scrape() {
    let scrape = scrape_after_captures().await;
    let missing = families_missing_from(&scrape);
    assert!(
        missing.is_empty(),
        "metrics queried by dashboards/ but absent from the daemon's /metrics:\n{}\n\n\
         families in the scrape: {:?}",
        missing.join("\n"),
        scrape_types(&scrape).keys().collect::<Vec<_>>()
    );
}

/// Before any traffic: a dashboard or an alert over a series that does not exist yet shows
/// "No data", and `increase()` misses the first event.
#[tokio::test]
async fn a_fresh_daemons_first_scrape_has_every_family_the_dashboard_and_alerts_use() {
    let daemon = Daemon::start(|_| {});
    let scrape = daemon.metrics_text().await;
    let missing = families_missing_from(&scrape);
    daemon.stop();
    assert!(
        missing.is_empty(),
        "families queried by dashboards/ but absent from a fresh daemon's first scrape:\n{}",
        missing.join("\n")
    );
}

#[tokio::test]
async fn promtool_accepts_the_live_scrape_and_the_alert_rules() {
    let promtool = promtool();
    eprintln!("using {}", promtool.display());

    let scrape = scrape_after_captures().await;
    let args = ["check", "metrics"];
    let output = run_promtool(&args, Some(&scrape));
    eprintln!("{}", describe(&args, &output));
    assert!(
        output.status.success(),
        "{}\n--- scrape\n{scrape}",
        describe(&args, &output)
    );

    let rules = repo_file("dashboards/alerts.yml");
    let rules = rules.to_str().expect("utf-8 path");
    let args = ["check", "rules", rules];
    let output = run_promtool(&args, None);
    eprintln!("{}", describe(&args, &output));
    assert!(output.status.success(), "{}", describe(&args, &output));

    // The dashboard's queries are PromQL too: as recording rules, with Grafana's variables
    // given values, promtool parses them.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut file = String::from("groups:\n  - name: shotfarm_dashboard\n    rules:\n");
    for (n, (_, expr)) in dashboard_exprs(&dashboard()).into_iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "1m")
            .replace("$__interval", "1m")
            .replace("$__range", "1h")
            .replace("$instance", ".*");
        file.push_str(&format!(
            "      - record: shotfarm_dashboard:query_{n}\n        expr: {}\n",
            serde_json::to_string(&expr).expect("expr as a quoted scalar")
        ));
    }
    let path = dir.path().join("dashboard-queries.yml");
    std::fs::write(&path, &file).expect("write the dashboard's queries");
    let path = path.to_str().expect("utf-8 path");
    let args = ["check", "rules", path];
    let output = run_promtool(&args, None);
    assert!(
        output.status.success(),
        "{}\n--- queries\n{file}",
        describe(&args, &output)
    );
}

#[test]
fn metric_names_are_found_in_expressions() {
    let expr = "histogram_quantile(0.99, sum by (le) (rate(shotfarm_ledger_operation_seconds_bucket{instance=~\"$instance\"}[5m]))) / up{job=\"shotfarm\"} + max_shotfarm_x + shotfarm_queue_depth";
    let names: Vec<String> = metric_names(expr).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "shotfarm_ledger_operation_seconds_bucket",
            "shotfarm_queue_depth",
            "up"
        ]
    );
    assert_eq!(
        family("shotfarm_ledger_operation_seconds_bucket"),
        "shotfarm_ledger_operation_seconds"
    );
    let yaml = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: |\n          sum(x)\n            / sum(y)\n        for: 5m\n      - alert: B\n        expr: 'up == 0'\n";
    assert_eq!(
        rule_exprs(yaml),
        [
            ("A".to_string(), "sum(x) / sum(y)".to_string()),
            ("B".to_string(), "up == 0".to_string())
        ]
    );
}
