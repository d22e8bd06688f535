//! Readable tables for `placement-ctl`, from the JSON of PD's HTTP API. Pure: JSON in,
//! text out.

use serde_json::Value;

/// Left-aligned columns separated by two spaces, with a header row.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = vec![line(headers.to_vec())];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out.join("\n") + "\n"
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn labels(v: &Value) -> String {
    let list: Vec<String> = (v.as_array().into_iter().flatten())
        .map(|l| format!("{}={}", text(&l["key"]), text(&l["value"])))
        .collect();
    list.join(",")
}

/// `/pd/api/v1/stores`.
pub fn stores(v: &Value) -> String {
    let rows: Vec<Vec<String>> = (v["stores"].as_array().into_iter().flatten())
        .map(|s| {
            let (m, st) = (&s["store"], &s["status"]);
            vec![
                text(&m["id"]),
                text(&m["address"]),
                text(&m["state_name"]),
                labels(&m["labels"]),
                text(&st["leader_count"]),
                text(&st["region_count"]),
                text(&st["capacity"]),
                text(&st["available"]),
                text(&st["used_size"]),
            ]
        })
        .collect();
    let headers = [
        "ID",
        "ADDRESS",
        "STATE",
        "LABELS",
        "LEADERS",
        "REGIONS",
        "CAPACITY",
        "AVAILABLE",
        "USED",
    ];
    table(&headers, &rows)
}

/// `/pd/api/v1/regions`.
pub fn regions(v: &Value) -> String {
    let rows: Vec<Vec<String>> = (v["regions"].as_array().into_iter().flatten())
        .map(|r| {
            let peers = |learner: bool| {
                let ids: Vec<String> = (r["peers"].as_array().into_iter().flatten())
                    .filter(|p| p["is_learner"].as_bool().unwrap_or(false) == learner)
                    .map(|p| text(&p["store_id"]))
                    .collect();
                ids.join(",")
            };
            vec![
                text(&r["id"]),
                text(&r["start_key"]),
                text(&r["end_key"]),
                text(&r["leader"]["store_id"]),
                peers(false),
                peers(true),
                format!("{}MiB", text(&r["approximate_size"])),
            ]
        })
        .collect();
    let headers = ["ID", "START", "END", "LEADER", "VOTERS", "LEARNERS", "SIZE"];
    table(&headers, &rows)
}

/// `/pd/api/v1/schedulers`: one name a line.
pub fn schedulers(v: &Value) -> String {
    let rows: Vec<Vec<String>> = (v.as_array().into_iter().flatten())
        .map(|n| vec![text(n)])
        .collect();
    table(&["SCHEDULER"], &rows)
}

/// `/pd/api/v1/config`: one `section.key value` a line, sorted.
pub fn config(v: &Value) -> String {
    let mut rows = Vec::new();
    for (section, fields) in v.as_object().into_iter().flatten() {
        for (key, value) in fields.as_object().into_iter().flatten() {
            rows.push(vec![format!("{section}.{key}"), text(value)]);
        }
    }
    rows.sort();
    table(&["KEY", "VALUE"], &rows)
}

/// `/pd/api/v1/fault-tolerance`.
pub fn fault_tolerance(v: &Value) -> String {
    let rows: Vec<Vec<String>> = (v["levels"].as_array().into_iter().flatten())
        .map(|l| {
            let ids: Vec<String> = (l["limiting_regions"].as_array().into_iter().flatten())
                .map(text)
                .collect();
            let count = l["limiting_region_count"].as_u64().unwrap_or(0) as usize;
            let more = count.saturating_sub(ids.len());
            let mut limiting = ids.join(",");
            if more > 0 {
                limiting.push_str(&format!(" (+{more} more)"));
            }
            vec![
                text(&l["level"]),
                text(&l["domains"]),
                text(&l["tolerable_failures"]),
                limiting,
            ]
        })
        .collect();
    let headers = ["LEVEL", "DOMAINS", "CAN-LOSE", "LIMITING-REGIONS"];
    table(&headers, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables() {
        let v = json!({"count": 1, "stores": [{
            "store": {"id": 1, "address": "127.0.0.1:20160", "state_name": "Up",
                      "labels": [{"key": "zone", "value": "z1"}]},
            "status": {"leader_count": 2, "region_count": 3, "capacity": "10GiB",
                       "available": "5GiB", "used_size": "4.5GiB"},
        }]});
        assert_eq!(
            stores(&v),
            "ID  ADDRESS          STATE  LABELS   LEADERS  REGIONS  CAPACITY  AVAILABLE  USED\n\
             1   127.0.0.1:20160  Up     zone=z1  2        3        10GiB     5GiB       4.5GiB\n"
        );
        let v = json!({"regions": [{"id": 2, "start_key": "", "end_key": "7A",
            "leader": {"store_id": 1}, "approximate_size": 1, "peers": [
                {"store_id": 1, "is_learner": false}, {"store_id": 4, "is_learner": true}]}]});
        assert_eq!(
            regions(&v),
            "ID  START  END  LEADER  VOTERS  LEARNERS  SIZE\n2          7A   1       1       4         1MiB\n"
        );
        let v = json!(["balance-leader-scheduler", "evict-leader-scheduler-1"]);
        assert_eq!(
            schedulers(&v),
            "SCHEDULER\nbalance-leader-scheduler\nevict-leader-scheduler-1\n"
        );
        let v = json!({"schedule": {"max-store-down-time": "30m0s"},
                       "replication": {"max-replicas": 3}});
        assert_eq!(
            config(&v),
            "KEY                           VALUE\n\
             replication.max-replicas      3\n\
             schedule.max-store-down-time  30m0s\n"
        );
        let v = json!({"levels": [{"level": "zone", "domains": 3, "tolerable_failures": 1,
            "limiting_region_count": 3, "limiting_regions": [1, 2]}]});
        assert_eq!(
            fault_tolerance(&v),
            "LEVEL  DOMAINS  CAN-LOSE  LIMITING-REGIONS\nzone   3        1         1,2 (+1 more)\n"
        );
    }
}

/// `/pd/api/v1/members` with the health of each from `/pd/api/v1/health`.
pub fn members(members: &Value, health: &Value) -> String {
    let leader = text(&members["leader"]["name"]);
    let healthy = |name: &str| {
        (health.as_array().into_iter().flatten())
            .find(|h| text(&h["name"]) == name)
            .map_or("unknown", |h| {
                if h["health"] == Value::Bool(true) {
                    "up"
                } else {
                    "down"
                }
            })
            .to_owned()
    };
    let rows: Vec<Vec<String>> = (members["members"].as_array().into_iter().flatten())
        .map(|m| {
            let name = text(&m["name"]);
            let urls: Vec<String> = (m["client_urls"].as_array().into_iter().flatten())
                .map(text)
                .collect();
            vec![
                name.clone(),
                text(&m["member_id"]),
                urls.join(","),
                if name == leader { "leader" } else { "follower" }.to_owned(),
                healthy(&name),
            ]
        })
        .collect();
    table(&["NAME", "ID", "CLIENT URLS", "ROLE", "HEALTH"], &rows)
}

#[cfg(test)]
mod member_tests {
    use serde_json::json;

    #[test]
    fn members_table_marks_the_leader_and_health() {
        let members = json!({
            "members": [
                {"name": "pd1", "member_id": 11, "client_urls": ["http://a:2379"]},
                {"name": "pd2", "member_id": 22, "client_urls": ["http://b:2379"]}
            ],
            "leader": {"name": "pd2"}
        });
        let health = json!([{"name": "pd1", "health": false}, {"name": "pd2", "health": true}]);
        let out = super::members(&members, &health);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("NAME"), "{out}");
        assert!(
            lines[1].contains("follower") && lines[1].ends_with("down"),
            "{out}"
        );
        assert!(
            lines[2].contains("leader") && lines[2].ends_with("up"),
            "{out}"
        );
    }
}
